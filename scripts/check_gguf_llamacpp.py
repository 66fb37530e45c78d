"""Checks that llama.cpp reads a GGUF written by alignscope (e.g. `finetune --gguf q8_0`) as
our runtime does: for each prompt, the greedy answer of both and the log-probabilities of
its tokens. Needs `pip install llama-cpp-python` and a built alignscope.

    python3 scripts/check_gguf_llamacpp.py MODEL.gguf [--bin target/release/alignscope]
"""
import argparse
import json
import math
import subprocess

from llama_cpp import Llama

PROMPTS = [
    "What is the capital of Kenya?",
    "Which continent is Peru in?",
    "Give me one tip for sleeping well.",
]

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--bin", default="target/release/alignscope")
parser.add_argument("--tokens", type=int, default=24)
args = parser.parse_args()

llm = Llama(model_path=args.model, n_ctx=512, n_threads=2, logits_all=True, verbose=False)
worst = 0.0
same = 0
for prompt in PROMPTS:
    ours = json.loads(subprocess.run(
        [args.bin, "generate", "--model", args.model, "--prompt", prompt, "--temperature", "0",
         "--max-tokens", str(args.tokens), "--json"],
        check=True, capture_output=True, text=True).stdout)
    ids = [t["id"] for t in ours["tokens"]]
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": prompt}], temperature=0.0,
        max_tokens=args.tokens, logprobs=True, top_logprobs=1)
    theirs = out["choices"][0]["message"]["content"]
    match = theirs.strip() == ours["text"].strip()
    same += match
    lp = [c["logprob"] for c in out["choices"][0]["logprobs"]["content"]]
    for a, b in zip(lp, [t["logprob"] for t in ours["tokens"]]):
        if match:
            worst = max(worst, abs(a - b))
    print(f"{prompt}\n  llama.cpp: {theirs!r}\n  ours:      {ours['text']!r}  ({len(ids)} tokens)")
print(f"same greedy answer: {same}/{len(PROMPTS)}; max |Δ log p| of the answer tokens "
      f"(where the answers agree): {worst:.3f}")
