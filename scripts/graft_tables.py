"""Markdown tables for docs/graft.md from the JSON files scripts/graft_evidence.sh writes.
Usage: python3 scripts/graft_tables.py OUT"""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
tasks = ["sentiment", "continent", "intensity", "size"]


def pct(s):
    return f"{s * 100:g}%"


def cell(x):
    return "–" if x is None or x != x else f"{x:.3f}"


def sweep_table(title, d):
    print(f"\n**{title}** ({d['eligible_parameters']:,} block parameters)\n")
    print("| model | start k | kept (final) | test acc | recovered | ECE | OOD acc |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ft = next(r for r in d["rows"] if r["label"] == "fine-tuned")["test"]["accuracy"]
    floor = next(r for r in d["rows"] if r["label"] == "no graft")["test"]["accuracy"]
    for r in d["rows"]:
        acc = r["test"]["accuracy"]
        rec = (acc - floor) / (ft - floor) if ft != floor else None
        start = "–" if r["method"] is None else pct(r["sparsity"])
        kept = f"{r['kept']:,} ({r['kept'] / d['eligible_parameters'] * 100:.3g}%)"
        ood = r["ood"]["accuracy"] if r["ood"] else None
        rec_s = "–" if r["method"] is None else f"{rec * 100:.0f}%"
        ece = r["test"]["ece"]
        print(f"| {r['label']} | {start} | {kept} | {acc:.3f} | {rec_s} | {cell(ece)} | {cell(ood)} |")


for t in tasks:
    sweep_table(f"minilm-{t}", json.loads((out / f"sweep-{t}.json").read_text()))

print("\n**minilm-all** (multi-task), learned masks at 0.01% per task\n")
print("| task | fine-tuned | no graft | learned | kept (final) | ECE ft → graft |")
print("|---|---:|---:|---:|---:|---:|")
for t in tasks:
    d = json.loads((out / f"multi-{t}.json").read_text())
    rows = {r["label"]: r for r in d["rows"]}
    ft, ng, le = rows["fine-tuned"], rows["no graft"], rows["learned"]
    print(f"| {t} | {ft['test']['accuracy']:.3f} | {ng['test']['accuracy']:.3f} | {le['test']['accuracy']:.3f} | {le['kept']:,} | {ft['test']['ece']:.3f} → {le['test']['ece']:.3f} |")

o = json.loads((out / "overlap.json").read_text())
names = [f"{'all/' if i >= 4 else ''}{tasks[i % 4]}" for i in range(len(o["overlap"]))]
print("\n**Overlap** |γi ∩ γj| / |γj| of the learned masks (row i, column j)\n")
print("| | " + " | ".join(names) + " |")
print("|---|" + "---:|" * len(names))
for n, row in zip(names, o["overlap"]):
    print(f"| {n} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
print("\nkept: " + ", ".join(f"{n} {k:,}" for n, k in zip(names, o["kept"])))

for m in ["tiny-add", "tiny-add-adamr", "tiny-sentiment", "tiny-sentiment-adamr"]:
    f = out / f"dec-{m}.json"
    if f.exists():
        sweep_table(f"{m} (exact match)", json.loads(f.read_text()))
