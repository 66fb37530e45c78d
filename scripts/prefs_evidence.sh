#!/usr/bin/env bash
# The preference lab's evidence, with the defaults: build the preference sets (shipped as
# assets/prefs/sets.jsonl), score the base model, then train each method (LoRA on SmolLM2,
# same questions, steps and learning rate) and score it on the test split into
# assets/prefs/results/ (shipped, with each method's training curve; the weights are rebuilt
# by this script). Wall times on 2 cores are in docs/prefs.md. STAGES picks a subset;
# METHODS the methods.
set -euo pipefail
bin=${ALIGNSCOPE:-target/debug/alignscope}
stages=${STAGES:-build base train lambda}
methods=${METHODS:-knowpat sft dpo knowpat-no-knowledge knowpat-no-style}
has() { [[ " $stages " == *" $1 "* ]]; }
has build && "$bin" prefs build
has base && "$bin" prefs eval
if has train; then
  for m in $methods; do
    "$bin" prefs train --method "$m"
    "$bin" prefs eval --method "$m"
  done
fi
# KnowPAT one step down the paper's λ grid.
if has lambda; then
  "$bin" prefs train --method knowpat --lambda 0.1 --out assets/prefs/models/knowpat-lambda-0.1
  "$bin" prefs eval --trained assets/prefs/models/knowpat-lambda-0.1 --label knowpat-lambda-0.1
fi
