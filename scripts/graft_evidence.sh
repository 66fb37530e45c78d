#!/usr/bin/env bash
# The Graft lab's evidence (docs/graft.md): for each single-task MiniLM fine-tune, every method
# at 0.001% … 1%; learned masks at 0.01% of every fine-tune and of the multi-task model per task;
# the decoder fine-tunes (plain and AdamR) at 0.01% … 10%; the masks' overlap matrix.
# Usage: scripts/graft_evidence.sh OUT [BINARY]   (about an hour on 2 cores with a dev build)
set -euo pipefail
out=${1:?output folder}
bin=${2:-target/release/alignscope}
mkdir -p "$out"
for m in sentiment continent intensity size; do
  "$bin" graft --finetuned minilm-$m --method learned,topk,random,dare \
    --sparsity 1e-5,1e-4,1e-3,1e-2 --eval --json > "$out/sweep-$m.json"
  "$bin" graft --finetuned minilm-$m --method learned --sparsity 1e-4 --json \
    --out "$out/masks/$m" > "$out/mask-$m.json"
done
for t in sentiment continent intensity size; do
  "$bin" graft --finetuned minilm-all --task $t --method learned --sparsity 1e-4 --eval --json \
    --out "$out/masks/all-$t" > "$out/multi-$t.json"
done
for m in tiny-add tiny-add-adamr tiny-sentiment tiny-sentiment-adamr; do
  "$bin" graft --finetuned $m --method learned,topk,random,dare \
    --sparsity 1e-4,1e-3,1e-2,1e-1 --eval --json > "$out/dec-$m.json"
done
masks=()
for m in sentiment continent intensity size; do masks+=("$out/masks/$m/learned-0.01%/mask.safetensors"); done
for t in sentiment continent intensity size; do masks+=("$out/masks/all-$t/learned-0.01%/mask.safetensors"); done
"$bin" graft-overlap "${masks[@]}" --json > "$out/overlap.json"
"$bin" graft-overlap "${masks[@]}"
python3 "$(dirname "$0")/graft_tables.py" "$out"
