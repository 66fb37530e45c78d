#!/usr/bin/env bash
# The ProMoT lab's evidence: every method on both fine-tuning tasks, with the defaults, into
# assets/promot/TASK/METHOD/ (result.json and soft prompts are shipped; models are not).
# Wall time on 2 cores: about 40 minutes per task (the prompt run's soft prompt is reused by
# ProMoT's first stage).
set -euo pipefail
bin=${ALIGNSCOPE:-target/debug/alignscope}
for task in ${TASKS:-sentiment continent}; do
  for method in base finetune prompt promot; do
    echo "== $task / $method"
    "$bin" promot --task "$task" --method "$method"
  done
done
