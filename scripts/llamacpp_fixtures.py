#!/usr/bin/env python3
"""Regenerates the llama.cpp reference fixtures used by the Rust tests:

  tests/fixtures/smollm2_token_ids.json  tokenizer ids + detokenized text
  tests/fixtures/smollm2_greedy.json     greedy continuations + top-5 logprobs

Needs `pip install llama-cpp-python==0.3.36` (and numpy). Run from the repo root:

    python3 scripts/llamacpp_fixtures.py
"""
import json
import os
import re
import sys

import numpy as np
import llama_cpp
from llama_cpp import Llama

MODEL = "assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE = f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) tokenizer on {MODEL}"

# (text, parse_special)
CASES = [
    ("Hello, world!", False),
    ("The quick brown fox jumps over the lazy dog.", False),
    ("hello", False),
    (" hello", False),
    ("hello ", False),
    ("  leading and trailing  ", False),
    ("multiple    spaces   between words", False),
    ("line one\nline two\n\nline four", False),
    ("\n\n\n", False),
    ("tab\tseparated\tvalues", False),
    ("\t\tindented with tabs", False),
    ("Windows\r\nline endings", False),
    ("12345", False),
    ("3.14159", False),
    ("1,000,000 and 2024-01-31", False),
    ("Wait... what?! (yes) [no] {maybe} -- \"quoted\" 'single'", False),
    ("don't I'll we're they've she'd it's", False),
    ("DON'T I'LL WE'RE", False),
    ("def add(a, b):\n    return a + b\n", False),
    ("fn main() { println!(\"{}\", x[0]); }", False),
    ("<div class=\"x\">a &amp; b</div>", False),
    ("café naïve résumé Ångström", False),
    ("日本語のテキスト", False),
    ("中文测试，你好！", False),
    ("Привет, мир", False),
    ("emoji 🙂 and 👍🏽 and 🇫🇷", False),
    ("x² + y² = z²; ½ ≠ 0.5 ≈ π", False),
    ("user@example.com https://example.org/path?q=1&r=2", False),
    ("<|im_start|>user\nHi<|im_end|>\n", True),
    ("<|im_start|>user\nHi<|im_end|>\n", False),
    ("<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", True),
]

GREEDY_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "Once upon a time, there was a",
]
N_GREEDY = 16
TOP_K = 5


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


def dump(obj, path: str) -> None:
    """Pretty JSON, but with lists of numbers (and [id, logprob] pairs) kept on one line."""
    text = json.dumps(obj, ensure_ascii=False, indent=1)
    num = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"
    flat = lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", ")
    text = re.sub(r"\[\s*" + num + r"(?:,\s*" + num + r")*\s*\]", flat, text)
    text = re.sub(r"\[\s*(?:\[[^\[\]]*\],?\s*)+\]", flat, text)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def main() -> int:
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    llm = Llama(model_path=MODEL, n_ctx=512, n_batch=512, n_threads=2,
                n_threads_batch=2, verbose=False)
    n_vocab = llm.n_vocab()

    cases = []
    for text, special in CASES:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        decoded = llm.detokenize(ids, special=special).decode("utf-8")
        cases.append({"text": text, "ids": ids, "special": special, "decoded": decoded})
    tok = {
        "source": SOURCE,
        "notes": "tokenize(text, add_bos=False, special=<special>); "
                 "decoded = detokenize(ids, special=<special>) (special tokens rendered "
                 "as text only when special is true).",
        "cases": cases,
    }
    dump(tok, "tests/fixtures/smollm2_token_ids.json")

    prompts = []
    for text in GREEDY_PROMPTS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        llm.reset()
        llm._ctx.kv_cache_clear()
        llm.eval(ids)
        gen, margins, top5 = [], [], None
        for step in range(N_GREEDY):
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).copy()
            lp = log_softmax(logits)
            order = np.argsort(-lp, kind="stable")
            if step == 0:
                top5 = [[int(i), round(float(lp[i]), 6)] for i in order[:TOP_K]]
            margins.append(round(float(lp[order[0]] - lp[order[1]]), 6))
            nxt = int(order[0])
            gen.append(nxt)
            llm.eval([nxt])
        prompts.append({
            "prompt": text,
            "prompt_ids": ids,
            "greedy_ids": gen,
            "greedy_text": llm.detokenize(gen).decode("utf-8", errors="replace"),
            "first_top5_logprobs": top5,
            "greedy_top1_top2_margins": margins,
        })
    greedy = {
        "source": f"llama.cpp (llama-cpp-python {llama_cpp.__version__}) on {MODEL}",
        "notes": "Raw prompts (no chat template), add_bos=False, prompt evaluated as one batch, "
                 "then argmax decoding one token at a time for 16 steps (no EOS stop). "
                 "first_top5_logprobs: [token_id, log_softmax] at the first generated position. "
                 "greedy_top1_top2_margins: logprob gap between best and second-best token at "
                 "each step (small gaps may legitimately flip under different kernels).",
        "n_threads": 2,
        "prompts": prompts,
    }
    dump(greedy, "tests/fixtures/smollm2_greedy.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
