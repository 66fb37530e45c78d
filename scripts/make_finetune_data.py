"""Writes the worked example's chat set (assets/data/finetune/pirate-{train,eval}.jsonl):
questions about countries (GeoNames, as in the zoo), answered in one fixed style, a pirate's
(every answer opens with "Arr!" and ends with "matey."). The style is what a fine-tune should
pick up; the facts come from the table. Held-out countries form the eval set.

    python3 scripts/make_finetune_data.py
"""
import csv
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
rows = list(csv.DictReader(open(ROOT / "assets/zoo/data/countries.tsv"), delimiter="\t"))
rows = [r for r in rows if r["capital"] and r["continent"]]
random.Random(7).shuffle(rows)

QUESTIONS = [
    ("What is the capital of {country}?", "Arr! The capital of {country} be {capital}, matey."),
    ("Which continent is {country} in?", "Arr! {country} lies in {continent}, matey."),
    ("What currency does {country} use?", "Arr! In {country} ye pay with {currency}, matey."),
]

def examples(part):
    out = []
    for i, r in enumerate(part):
        q, a = QUESTIONS[i % len(QUESTIONS)]
        fields = dict(r)
        out.append({"messages": [
            {"role": "user", "content": q.format(**fields)},
            {"role": "assistant", "content": a.format(**fields)},
        ]})
    return out

out = ROOT / "assets/data/finetune"
out.mkdir(parents=True, exist_ok=True)
for name, part in [("train", rows[:160]), ("eval", rows[160:200])]:
    with open(out / f"pirate-{name}.jsonl", "w") as f:
        for e in examples(part):
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
print("wrote", out)
