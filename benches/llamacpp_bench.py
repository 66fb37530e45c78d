#!/usr/bin/env python3
"""Reference CPU throughput of llama.cpp (via llama-cpp-python) on a GGUF model.

Measures, on the same model file the Rust runtime loads:
  * prompt processing: a P-token prompt evaluated in one batch from an empty
    KV cache (n_batch >= P), reported as P / seconds;
  * decode: G tokens generated one at a time with greedy (argmax) selection,
    each token fed back through a single-token eval, reported as G / seconds.

Each measurement is repeated R times (after one untimed warm-up) and the best
(highest tok/s) run is reported. Output is ONE JSON line on stdout.

    pip install llama-cpp-python==0.3.36
    python3 benches/llamacpp_bench.py --model assets/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --threads 2 --prompt-tokens 128 --gen-tokens 64 --repeats 5
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
from llama_cpp import Llama

# Fixed English text; tokenized, repeated and truncated so prompts are deterministic.
PARAGRAPH = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, "
    "carrying a lantern, a notebook and a flask of tea. From the gallery he could "
    "see the fishing boats returning to the harbour, the gulls circling above the "
    "breakwater, and the long grey line of the coast fading into the mist. He wrote "
    "down the wind, the state of the sea and the names of the ships that passed, "
    "because the old keeper had done so before him, and the one before that. "
)


def prompt_tokens(llm: Llama, n: int) -> list:
    base = llm.tokenize(PARAGRAPH.encode("utf-8"), add_bos=False, special=False)
    toks = []
    while len(toks) < n:
        toks.extend(base)
    return toks[:n]


def clear(llm: Llama) -> None:
    """Empty the KV cache and the Python-side token history (fresh context state)."""
    llm.reset()
    # Llama.eval also truncates the cache at n_tokens, but clear it explicitly.
    ctx = llm._ctx
    if hasattr(ctx, "memory_clear"):
        ctx.memory_clear(True)
    elif hasattr(ctx, "kv_cache_clear"):
        ctx.kv_cache_clear()


def run_prompt(llm: Llama, toks: list) -> float:
    clear(llm)
    t0 = time.perf_counter()
    llm.eval(toks)  # one llama_decode call: n_batch >= len(toks)
    t1 = time.perf_counter()
    return t1 - t0


def run_decode(llm: Llama, first_prompt: list, g: int) -> float:
    """Greedy-generate g tokens one at a time after a short primed prompt."""
    clear(llm)
    llm.eval(first_prompt)  # untimed: prime the cache, get first logits
    n_vocab = llm.n_vocab()
    t0 = time.perf_counter()
    for _ in range(g):
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
        tok = int(np.argmax(logits))
        llm.eval([tok])
    t1 = time.perf_counter()
    return t1 - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stat", choices=["best", "median"], default="best",
                    help="how to summarise the R repeats (default: best)")
    args = ap.parse_args()

    p, g, n = args.prompt_tokens, args.gen_tokens, args.threads
    decode_prefix = 8
    llm = Llama(
        model_path=args.model,
        n_ctx=max(p, decode_prefix + g) + 16,
        n_batch=max(p, decode_prefix + 1, 512),
        n_ubatch=max(p, decode_prefix + 1, 512),
        n_threads=n,
        n_threads_batch=n,
        logits_all=False,
        verbose=False,
    )
    toks = prompt_tokens(llm, p)
    prefix = toks[:decode_prefix]

    # Warm-up (page in weights, allocate compute buffers); not timed.
    run_prompt(llm, toks)
    run_decode(llm, prefix, min(g, 4))

    pp = [run_prompt(llm, toks) for _ in range(args.repeats)]
    tg = [run_decode(llm, prefix, g) for _ in range(args.repeats)]

    summ = min if args.stat == "best" else statistics.median
    out = {
        "engine": "llama.cpp",
        "threads": n,
        "prompt_tokens": p,
        "gen_tokens": g,
        "prompt_tok_s": round(p / summ(pp), 2),
        "decode_tok_s": round(g / summ(tg), 2),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
