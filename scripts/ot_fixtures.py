"""Writes tests/fixtures/ot/*.json: optimal-transport problems solved by POT (the library the
transformer-fusion paper uses), so the solvers in src/fusion/ot.rs are checked against it.

    pip install pot==0.9.7.post1 numpy
    python scripts/ot_fixtures.py

Each file holds the marginals a (rows) and b (columns), the cost matrix (row-major, normalised
by its maximum as the fusion code does), the exact cost from ot.emd2, and for each regulariser
the plan of ot.sinkhorn(method="sinkhorn_log", numItermax=1000, stopThr=1e-9).
"""
import json
import os

import numpy as np
import ot

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "ot")
REGS = [0.05, 0.1, 1.0]


def problem(name, n, m, seed, uniform):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    y = rng.normal(size=(m, 8)) + 0.5
    cost = ot.dist(x, y, metric="euclidean")
    cost /= cost.max()
    if uniform:
        a, b = np.full(n, 1.0 / n), np.full(m, 1.0 / m)
    else:
        a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
        a /= a.sum()
        b /= b.sum()
    sinkhorn = {}
    for reg in REGS:
        plan = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log", numItermax=1000, stopThr=1e-9)
        sinkhorn[str(reg)] = plan.ravel().tolist()
    fixture = {
        "rows": n,
        "cols": m,
        "a": a.tolist(),
        "b": b.tolist(),
        "cost": cost.ravel().tolist(),
        "emd_cost": float(ot.emd2(a, b, cost, numItermax=10_000_000)),
        "sinkhorn": sinkhorn,
        "pot": ot.__version__,
    }
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(fixture, f)


os.makedirs(OUT, exist_ok=True)
problem("square_uniform_16", 16, 16, 1, True)
problem("rect_uniform_12x20", 12, 20, 2, True)
problem("rect_random_30x17", 30, 17, 3, False)
problem("square_random_48", 48, 48, 4, False)
