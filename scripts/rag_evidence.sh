#!/usr/bin/env bash
# The RAG lab's evidence, with the defaults: mine the shipped reader's preferences, train the
# reranker and its three loss ablations, fine-tune the pre-aligned reader, and score every
# pipeline on the test split into assets/rag/results/ (shipped, with mined.jsonl and the
# training histories; the weights are rebuilt by this script).
# Wall time on 2 cores: about 15 min mining, 2 min per reranker, 35 min for the reader,
# 2 min per evaluation — about 75 minutes in all. STAGES picks a subset.
set -euo pipefail
bin=${ALIGNSCOPE:-target/debug/alignscope}
stages=${STAGES:-mine reranker ablations reader eval}
has() { [[ " $stages " == *" $1 "* ]]; }
has mine && "$bin" rag mine
has reranker && "$bin" rag train-reranker
if has ablations; then
  "$bin" rag train-reranker --losses pairwise,contrastive
  "$bin" rag train-reranker --losses pointwise,contrastive
  "$bin" rag train-reranker --losses pointwise,pairwise
  "$bin" rag train-reranker --equal-weights --out assets/rag/reranker-equal-weights
fi
has reader && "$bin" rag train-reader
if has eval; then
  for c in none dense bm25 reranked; do "$bin" rag eval --condition "$c"; done
  for off in pointwise pairwise contrastive; do
    "$bin" rag eval --condition reranked --reranker "assets/rag/reranker-no-$off" \
      --label "reranked-no-$off"
  done
  "$bin" rag eval --condition reranked --reranker assets/rag/reranker-equal-weights \
    --label reranked-equal-weights
  reader=assets/rag/reader/model-q8_0.gguf
  "$bin" rag eval --condition dense --reader "$reader" --label aligned-reader-dense
  "$bin" rag eval --condition reranked --reader "$reader" --label dpa-rag
fi
