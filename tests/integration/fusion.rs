//! The OT solvers against POT (fixtures from scripts/ot_fixtures.py).

use alignscope::fusion::emd::emd;
use alignscope::fusion::ot::{sinkhorn_log, SinkhornOptions};

#[derive(serde::Deserialize)]
struct Fixture {
    rows: usize,
    cols: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    cost: Vec<f64>,
    emd_cost: f64,
    sinkhorn: std::collections::BTreeMap<String, Vec<f64>>,
}

fn fixtures() -> Vec<(String, Fixture)> {
    let dir = crate::common::fixture("ot");
    let mut out: Vec<(String, Fixture)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let f = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), f)
        })
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(out.len(), 4, "fixtures in {}", dir.display());
    out
}

#[test]
fn log_sinkhorn_plans_equal_pots() {
    for (name, f) in fixtures() {
        for (reg, want) in &f.sinkhorn {
            let reg: f64 = reg.parse().unwrap();
            let got = sinkhorn_log(&f.a, &f.b, &f.cost, reg, SinkhornOptions::default()).unwrap();
            assert_eq!((got.plan.rows, got.plan.cols), (f.rows, f.cols));
            let diff = got
                .plan
                .t
                .iter()
                .zip(want)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(diff < 1e-6, "{name} reg {reg}: max |ΔT| = {diff:e}");
        }
    }
}

#[test]
fn exact_costs_equal_pots_and_plans_are_feasible() {
    for (name, f) in fixtures() {
        let r = emd(&f.a, &f.b, &f.cost, 1_000_000).unwrap();
        let rel = (r.cost - f.emd_cost).abs() / f.emd_cost;
        assert!(
            rel < 1e-9,
            "{name}: cost {} against POT's {} ({rel:e})",
            r.cost,
            f.emd_cost
        );
        for (x, y) in r.plan.row_sums().iter().zip(&f.a) {
            assert!((x - y).abs() < 1e-12, "{name}: row sums");
        }
        for (x, y) in r.plan.col_sums().iter().zip(&f.b) {
            assert!((x - y).abs() < 1e-12, "{name}: column sums");
        }
        assert!(
            r.plan.t.iter().all(|x| *x >= -1e-15),
            "{name}: negative flow"
        );
        // A basic solution: at most n + m − 1 non-zero entries.
        let support = r.plan.t.iter().filter(|x| **x > 1e-15).count();
        assert!(support < f.rows + f.cols, "{name}: support {support}");
    }
    // With uniform square marginals the optimum is a permutation (scaled by 1/n).
    let n = 7;
    let cost: Vec<f64> = (0..n * n)
        .map(|k| ((k * 37 % 11) as f64).sin().abs())
        .collect();
    let u = vec![1.0 / n as f64; n];
    let r = emd(&u, &u, &cost, 10_000).unwrap();
    for row in r.plan.t.chunks(n) {
        assert_eq!(row.iter().filter(|x| **x > 1e-12).count(), 1);
    }
}
