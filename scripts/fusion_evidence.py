#!/usr/bin/env python3
"""Runs `alignscope fuse` over the zoo pairs and prints the evidence tables of docs/fusion.md
as markdown.

    cargo build --release && python3 scripts/fusion_evidence.py [--steps 200 1000]
        [--sections main regs options seeds decoders three gap]

ALIGNSCOPE_BIN picks another build (e.g. target/debug/alignscope from `cargo build --profile
test`).
"""
import argparse
import json
import os
import statistics
import subprocess

BIN = os.environ.get("ALIGNSCOPE_BIN", "target/release/alignscope")
PAIRS = [("vit-a", "vit-b"), ("vit-a", "vit-narrow"), ("vit-b", "vit-narrow")]


def fuse(a, b, *extra):
    extra = [str(e) for e in extra]
    if "--finetune" not in extra:
        extra += ["--finetune", "0"]
    cmd = [BIN, "fuse", "--model-a", a, "--model-b", b, "--json", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def rows(report):
    return {r["model"]: r for r in report["rows"]}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, nargs="*", default=[200, 1000])
    p.add_argument("--sections", nargs="*",
                   default=["main", "regs", "options", "seeds", "decoders", "three", "gap"])
    p.add_argument("--gap-pairs", nargs="*",
                   default=["vit-a+vit-b", "vit-long-a+vit-long-b", "bert-a+bert-b"])
    args = p.parse_args()
    if "main" in args.sections:
        main_table(args.steps)
    if "regs" in args.sections:
        reg_table()
    if "options" in args.sections:
        option_table()
    if "seeds" in args.sections:
        seed_table()
    if "decoders" in args.sections:
        decoder_table()
    if "three" in args.sections:
        three_table()
    if "gap" in args.sections:
        gap_table([tuple(pair.split("+")) for pair in args.gap_pairs])


def main_table(steps_list):
    print("## Main table (paper defaults: activations, separate Q-K, mean residual, ε 0.08)\n")
    for steps in steps_list:
        print(f"### Fine-tune {steps} steps\n")
        print("| A + B (width) | parent A | parent B | vanilla | OT hard | OT soft "
              "| anchor + FT | vanilla + FT | OT hard + FT | OT soft + FT |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for a, b in PAIRS:
            rep = fuse(a, b, "--solver", "both", "--finetune", steps)
            r = rows(rep)
            soft = next(k for k in r if k.startswith("OT soft") and "steps" not in k)

            def cell(name):
                x = r.get(name)
                return f"{x['score']:.3f} / {x['loss']:.2f}" if x else "–"

            w = rep["widths"]
            print(f"| {a} + {b} ({w[0]}→{w[1] if rep['anchor'] == 'B' else w[0]}) | "
                  + " | ".join(cell(n) for n in [
                      "parent A", "parent B", "vanilla average", "OT hard (exact)", soft,
                      f"parent B + {steps} steps", f"vanilla average + {steps} steps",
                      f"OT hard (exact) + {steps} steps", f"{soft} + {steps} steps"]) + " |")
        print()


def reg_table():
    print("## One-shot accuracy by regulariser (activations; ε = 0 is exact OT)\n")
    regs = [0.005, 0.01, 0.02, 0.05, 0.08, 0.2]
    print("| A + B | exact | " + " | ".join(f"ε {e}" for e in regs) + " |")
    print("|---|---:|" + "---:|" * len(regs))
    for a, b in PAIRS:
        cells = []
        exact = rows(fuse(a, b, "--solver", "emd"))["OT hard (exact)"]["score"]
        for e in regs:
            r = rows(fuse(a, b, "--solver", "sinkhorn", "--reg", e))
            cells.append(f"{r[f'OT soft (Sinkhorn ε={e})']['score']:.3f}")
        print(f"| {a} + {b} | {exact:.3f} | " + " | ".join(cells) + " |")
    print()


def option_table():
    print("## One-shot accuracy by option (hard / soft at ε 0.08 acts, 0.06 weights)\n")
    variants = [
        ("paper defaults", []),
        ("weights cost", ["--cost", "weights"]),
        ("joint Q-K", ["--qk", "joint"]),
        ("residual: weighted", ["--residual", "weighted"]),
        ("residual: skip", ["--residual", "skip"]),
        ("residual: branch", ["--residual", "branch"]),
        ("residual: shared + branch output on the stream map",
         ["--residual", "shared", "--branch-map", "stream"]),
    ]
    print("| option | " + " | ".join(f"{a} + {b}" for a, b in PAIRS) + " |")
    print("|---|" + "---:|" * len(PAIRS))
    for name, extra in variants:
        cells = []
        for a, b in PAIRS:
            r = fuse(a, b, "--solver", "both", *extra)
            hard = r["rows"][-2]["score"]
            soft = r["rows"][-1]["score"]
            cells.append(f"{hard:.3f} / {soft:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def seed_table(steps=1000, seeds=(20, 21, 22)):
    print(f"## {steps}-step fine-tunes over fine-tune seeds {', '.join(map(str, seeds))} "
          "(mean ± standard deviation)\n")
    labels = ["anchor + FT", "OT hard + FT", "OT soft + FT"]
    print("| A + B | " + " | ".join(labels) + " | soft − anchor per seed |")
    print("|---|" + "---:|" * (len(labels) + 1))
    for a, b in PAIRS[:2]:
        runs = [rows(fuse(a, b, "--solver", "both", "--finetune", steps, "--seed", seed))
                for seed in seeds]
        soft = next(k for k in runs[0] if k.startswith("OT soft") and "steps" not in k)
        names = [f"parent B + {steps} steps", f"OT hard (exact) + {steps} steps",
                 f"{soft} + {steps} steps"]
        acc = [[r[n]["score"] for r in runs] for n in names]
        cells = [f"{statistics.mean(x):.3f} ± {statistics.stdev(x):.3f}" for x in acc]
        diffs = ", ".join(f"{s - an:+.3f}" for s, an in zip(acc[2], acc[0]))
        print(f"| {a} + {b} | " + " | ".join(cells) + f" | {diffs} |")


def decoder_table(steps=100, seeds=(20, 21, 22)):
    """The two base decoders (tiny-base-b onto tiny-base): perplexity / loss, both costs one-shot,
    then the fine-tunes over three seeds."""
    print("## Decoders: tiny-base-b + tiny-base (perplexity / loss on 600 held-out rows)\n")
    print("| cost | parent A | parent B | vanilla | OT hard | OT soft |")
    print("|---|---:|---:|---:|---:|---:|")
    for cost in ["acts", "weights"]:
        r = rows(fuse("tiny-base-b", "tiny-base", "--cost", cost))
        soft = next(k for k in r if k.startswith("OT soft"))
        print(f"| {cost} | " + " | ".join(
            f"{r[n]['score']:.2f} / {r[n]['loss']:.3f}" for n in
            ["parent A", "parent B", "vanilla average", "OT hard (exact)", soft]) + " |")
    print(f"\n{steps}-step fine-tunes, seeds {', '.join(map(str, seeds))} (perplexity):\n")
    runs = [rows(fuse("tiny-base-b", "tiny-base", "--finetune", steps, "--seed", seed))
            for seed in seeds]
    soft = next(k for k in runs[0] if k.startswith("OT soft") and "steps" not in k)
    names = ["parent B", "vanilla average", "OT hard (exact)", soft]
    print("| model | one-shot | + FT, per seed | + FT, mean ± sd |")
    print("|---|---:|---:|---:|")
    for n in names:
        tuned = [r[f"{n} + {steps} steps"]["score"] for r in runs]
        print(f"| {n} | {runs[0][n]['score']:.2f} | " + ", ".join(f"{t:.3f}" for t in tuned)
              + f" | {statistics.mean(tuned):.3f} ± {statistics.stdev(tuned):.3f} |")
    print()


def three_table():
    """vit-a and vit-c fused into vit-b: the pair and all three, one-shot."""
    print("## Three ViTs into vit-b (accuracy, one-shot)\n")
    print("| cost | vanilla pair | vanilla 3 | OT hard pair | OT hard 3 | OT soft pair | OT soft 3 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for cost in ["acts", "weights"]:
        r = rows(fuse("vit-a", "vit-b", "--more", "vit-c", "--cost", cost))
        soft = next(k for k in r if k.startswith("OT soft") and "models" not in k)
        print(f"| {cost} | " + " | ".join(f"{r[n]['score']:.3f}" for n in [
            "vanilla average", "vanilla average · 3 models", "OT hard (exact)",
            "OT hard (exact) · 3 models", soft, f"{soft} · 3 models"]) + " |")
    print()


def layer_ratios(run):
    """⟨T,C⟩ ÷ mean C of each map, averaged per layer ("embeddings", "0", "1", …, "pooler")."""
    groups = {}
    for m in run["maps"]:
        if m["transport_cost"] is None or not m["mean_cost"]:
            continue  # blended stream maps have no cost of their own
        name = m["name"]
        key = name.split(" · ")[0].replace("layer ", "") if name.startswith("layer ") else name
        groups.setdefault(key, []).append(m["transport_cost"] / m["mean_cost"])
    return {k: statistics.mean(v) for k, v in groups.items()}


def gap_table(pairs, steps=200, seeds=(20, 21, 22)):
    """The one-shot gap on the short- and long-trained ViT pairs and the encoder pair: one-shot
    scores, fine-tunes over three seeds, and how well the neurons match per layer."""
    print("## The one-shot gap (accuracy; hard OT, soft OT at ε 0.08)\n")
    print("| A + B | parent A | parent B | vanilla | OT hard | OT soft |")
    print("|---|---:|---:|---:|---:|---:|")
    ratios = {}
    tuned = {}
    for a, b in pairs:
        runs = [fuse(a, b, "--finetune", steps, "--seed", seed) for seed in seeds]
        r = rows(runs[0])
        soft = next(k for k in r if k.startswith("OT soft") and "steps" not in k)
        names = ["parent A", "parent B", "vanilla average", "OT hard (exact)", soft]
        print(f"| {a} + {b} | " + " | ".join(f"{r[n]['score']:.3f}" for n in names) + " |")
        ratios[(a, b)] = layer_ratios(runs[0]["runs"][0])
        tuned[(a, b)] = {
            n: [rows(run)[f"{n} + {steps} steps"]["score"] for run in runs]
            for n in ["parent B", "vanilla average", "OT hard (exact)", soft]}
    print(f"\n+ {steps} fine-tune steps, seeds {', '.join(map(str, seeds))} (mean ± sd):\n")
    print("| A + B | anchor | vanilla | OT hard | OT soft |")
    print("|---|---:|---:|---:|---:|")
    for (a, b), t in tuned.items():
        print(f"| {a} + {b} | " + " | ".join(
            f"{statistics.mean(x):.3f} ± {statistics.stdev(x):.3f}" for x in t.values()) + " |")
    print("\nMatched cost ÷ mean cost per layer (hard maps, acts; 1 = no better than chance):\n")
    for (a, b), per in ratios.items():
        print(f"- {a} + {b}: " + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))
    print()


if __name__ == "__main__":
    main()
