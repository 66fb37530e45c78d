#!/usr/bin/env python3
"""Generates tiny random-weight GGUF models plus llama.cpp reference outputs.

Writes, under tests/fixtures/tiny/:

  tiny-llama-spm.gguf  arch `llama`,  SentencePiece ("llama") vocab, tied embeddings
  tiny-qwen2.gguf      arch `qwen2`,  GPT-2 byte-level BPE vocab, q/k/v biases, separate output.weight
  tiny-gemma3.gguf     arch `gemma3`, SentencePiece vocab without space prefix, 6 layers
                       (layers 0-4 sliding-window, layer 5 global), tied embeddings
  expected.json        llama.cpp logits (+ tokenizations) for the three files

All weights are F32 (no quantisation involved). Everything is derived from a
fixed numpy seed, so rerunning the script reproduces byte-identical GGUFs.

llama.cpp is run through llama-cpp-python with an F32 KV cache and flash
attention off, so the reference numbers carry no f16 rounding of K/V.

The script also contains a plain numpy forward pass for each architecture
(`reference_logits`) and checks llama.cpp's logits against it; the numpy code
is a readable statement of what llama.cpp computes for these files.

Needs `pip install llama-cpp-python==0.3.36 gguf numpy`. Run from anywhere:

    python3 scripts/tiny_gguf_fixtures.py
"""
import json
import math
import os
import re
import sys
from collections import Counter

import numpy as np
import gguf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_REL = os.path.join("tests", "fixtures", "tiny")
OUT_DIR = os.path.join(REPO, OUT_REL)

SEED = 20240607
SP = "\u2581"  # SentencePiece whitespace marker

# --------------------------------------------------------------------------
# tokenizer training corpus (tiny, English)
# --------------------------------------------------------------------------
CORPUS = """
hello world. hello world! the world says hello. hello there, world.
The thing is that the other thing is nothing at all. the the the
this is the thing that they think is there. then the three of them went
there and then they came back with the things. thin things, thick things.
a cat and a hat and a man with a plan. a big thing, a small thing.
she is singing and he is thinking. we are going, you are coming, they are
being nothing but sitting and waiting. ring the bell, bring the string.
in the morning the king is walking in the garden. nothing is working.
What is this? This is a test. It is only a test of the tokenizer.
one two three four five six seven eight nine ten. the end.
hello world hello world hello world the thing the thing the thing
another brother and mother together with the other father, whether or not the weather
is rather nice, bathe in the lathe of the other theme. hello helpful world worldly.
quick brown foxes jump over lazy dogs; people keep reading books during winter nights.
"""

REQUIRED_SPM_PIECES = [
    SP, SP + "the", SP + "a", "th", "he", SP + "t", "ing",
    SP + "hello", SP + "world", "the",
]

SINGLE_CHARS = (
    [SP]
    + list("abcdefghijklmnopqrstuvwxyz")
    + list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    + list("0123456789")
    + list(".,!?'\"-:;()")
)

N_SPM_MERGES = 280
N_BPE_MERGES = 60

# token types (llama.cpp / gguf)
T_NORMAL, T_UNKNOWN, T_CONTROL, T_USER, T_UNUSED, T_BYTE = 1, 2, 3, 4, 5, 6


def train_bpe(words, n_merges, min_count=1):
    """Plain BPE on a Counter of words (tuples of symbols). Returns merges in order.

    Ties are broken deterministically (highest count, then lexicographically
    smallest pair)."""
    words = {tuple(w): c for w, c in words.items()}
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < min_count:
            break
        (a, b), _ = best
        merges.append((a, b))
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    return merges


def build_spm_vocab():
    """SentencePiece-BPE style vocab: <unk>,<s>,</s>, 256 byte tokens, merged
    pieces (in merge order, decreasing score), then single characters."""
    words = Counter()
    for w in CORPUS.split():
        for seg in re.findall(SP + r"?[A-Za-z]+|" + SP + r"?[^A-Za-z" + SP + r"]", SP + w):
            words[tuple(seg)] += 1
    merges = train_bpe(words, N_SPM_MERGES)
    pieces = []
    seen = set()
    for a, b in merges:
        p = a + b
        if p not in seen:
            pieces.append(p)
            seen.add(p)
    for ch in SINGLE_CHARS:
        if ch not in seen:
            pieces.append(ch)
            seen.add(ch)
    for ch in "abcdefghijklmnopqrstuvwxyz":  # `▁x` for every letter (= ▁ + x)
        if SP + ch not in seen:
            pieces.append(SP + ch)
            seen.add(SP + ch)
    for req in REQUIRED_SPM_PIECES:
        assert req in seen, f"required piece {req!r} missing from trained vocab"
    # every multi-character piece is the merge of two smaller pieces in the vocab
    for a, b in merges:
        assert a in seen and b in seen

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + pieces
    types = [T_UNKNOWN, T_CONTROL, T_CONTROL] + [T_BYTE] * 256 + [T_NORMAL] * len(pieces)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, types


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, [chr(c) for c in cs]


def build_gpt2_vocab():
    """GPT-2 byte-level BPE vocab: the 256 byte characters (in GPT-2 order),
    merged tokens, then <|endoftext|> (CONTROL)."""
    bs, cs = bytes_to_unicode()
    b2u = dict(zip(bs, cs))
    pat = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
    words = Counter()
    for chunk in pat.findall(CORPUS):
        words[tuple(b2u[b] for b in chunk.encode("utf-8"))] += 1
    merges = train_bpe(words, N_BPE_MERGES)
    tokens = list(cs)
    seen = set(tokens)
    for a, b in merges:
        assert a in seen and b in seen
        if a + b not in seen:
            tokens.append(a + b)
            seen.add(a + b)
    eot = len(tokens)
    tokens.append("<|endoftext|>")
    types = [T_NORMAL] * eot + [T_CONTROL]
    merges_txt = [f"{a} {b}" for a, b in merges]
    return tokens, types, merges_txt, eot


# --------------------------------------------------------------------------
# model specs and weights
# --------------------------------------------------------------------------
COMMON = dict(n_embd=64, n_ff=128, n_head=4, n_head_kv=2, n_ctx=256)

SPECS = {
    "tiny-llama-spm.gguf": dict(COMMON, arch="llama", n_layer=2, head_dim=16, rope_base=10000.0,
                                eps=1e-5, tokenizer="spm", add_space_prefix=True, tied=True),
    "tiny-qwen2.gguf": dict(COMMON, arch="qwen2", n_layer=2, head_dim=16, rope_base=1000000.0,
                            eps=1e-6, tokenizer="gpt2", tied=False),
    "tiny-gemma3.gguf": dict(COMMON, arch="gemma3", n_layer=6, head_dim=32, rope_base=1000000.0,
                             rope_base_swa=10000.0, eps=1e-6, sliding_window=8, swa_pattern=6,
                             tokenizer="spm", add_space_prefix=False, tied=True),
}


def make_weights(spec, n_vocab, rng):
    E, F, H, KV, D = spec["n_embd"], spec["n_ff"], spec["n_head"], spec["n_head_kv"], spec["head_dim"]

    def lin(out_dim, in_dim):  # PyTorch layout [out, in]
        return (rng.standard_normal((out_dim, in_dim)) / math.sqrt(in_dim)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w = {"token_embd.weight": rng.standard_normal((n_vocab, E)).astype(np.float32)}
    for il in range(spec["n_layer"]):
        p = f"blk.{il}."
        w[p + "attn_norm.weight"] = norm(E)
        w[p + "attn_q.weight"] = lin(H * D, E)
        w[p + "attn_k.weight"] = lin(KV * D, E)
        w[p + "attn_v.weight"] = lin(KV * D, E)
        if spec["arch"] == "qwen2":
            w[p + "attn_q.bias"] = (0.1 * rng.standard_normal(H * D)).astype(np.float32)
            w[p + "attn_k.bias"] = (0.1 * rng.standard_normal(KV * D)).astype(np.float32)
            w[p + "attn_v.bias"] = (0.1 * rng.standard_normal(KV * D)).astype(np.float32)
        w[p + "attn_output.weight"] = lin(E, H * D)
        if spec["arch"] == "gemma3":
            w[p + "attn_q_norm.weight"] = norm(D)
            w[p + "attn_k_norm.weight"] = norm(D)
            w[p + "post_attention_norm.weight"] = norm(E)
        w[p + "ffn_norm.weight"] = norm(E)
        w[p + "ffn_gate.weight"] = lin(F, E)
        w[p + "ffn_up.weight"] = lin(F, E)
        w[p + "ffn_down.weight"] = lin(E, F)
        if spec["arch"] == "gemma3":
            w[p + "post_ffw_norm.weight"] = norm(E)
    w["output_norm.weight"] = norm(E)
    if not spec["tied"]:
        w["output.weight"] = lin(n_vocab, E)
    return w


def write_gguf(path, spec, vocab, weights):
    arch = spec["arch"]
    wr = gguf.GGUFWriter(path, arch)
    wr.add_name(os.path.splitext(os.path.basename(path))[0])
    wr.add_file_type(gguf.LlamaFileType.ALL_F32)
    wr.add_context_length(spec["n_ctx"])
    wr.add_embedding_length(spec["n_embd"])
    wr.add_block_count(spec["n_layer"])
    wr.add_feed_forward_length(spec["n_ff"])
    wr.add_head_count(spec["n_head"])
    wr.add_head_count_kv(spec["n_head_kv"])
    wr.add_rope_freq_base(spec["rope_base"])
    wr.add_layer_norm_rms_eps(spec["eps"])
    if arch == "llama":
        wr.add_rope_dimension_count(spec["head_dim"])
        wr.add_vocab_size(len(vocab["tokens"]))
    if arch == "gemma3":
        wr.add_key_length(spec["head_dim"])
        wr.add_value_length(spec["head_dim"])
        wr.add_sliding_window(spec["sliding_window"])
        # NOTE: no `gemma3.rope.freq_base_swa`: real gemma3 GGUFs omit it and
        # llama.cpp then uses 10000 for the sliding-window layers.

    if spec["tokenizer"] == "spm":
        wr.add_tokenizer_model("llama")
        wr.add_token_list(vocab["tokens"])
        wr.add_token_scores(vocab["scores"])
        wr.add_token_types(vocab["types"])
        wr.add_unk_token_id(0)
        wr.add_bos_token_id(1)
        wr.add_eos_token_id(2)
        wr.add_add_bos_token(True)
        wr.add_add_eos_token(False)
        wr.add_add_space_prefix(spec["add_space_prefix"])
    else:
        wr.add_tokenizer_model("gpt2")
        wr.add_tokenizer_pre("qwen2")
        wr.add_token_list(vocab["tokens"])
        wr.add_token_types(vocab["types"])
        wr.add_token_merges(vocab["merges"])
        wr.add_bos_token_id(vocab["eot"])
        wr.add_eos_token_id(vocab["eot"])
        wr.add_pad_token_id(vocab["eot"])
        wr.add_add_bos_token(False)

    for name, t in weights.items():
        wr.add_tensor(name, np.ascontiguousarray(t, dtype=np.float32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()


# --------------------------------------------------------------------------
# numpy reference forward (what llama.cpp computes for these files)
# --------------------------------------------------------------------------
def rms_norm(x, w, eps):
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, base, neox):
    """x: [T, n_heads, D]. llama.cpp LLAMA_ROPE_TYPE_NORM (llama) rotates
    adjacent pairs (2i, 2i+1); NEOX (qwen2, gemma3) rotates (i, i + D/2)."""
    T, _, D = x.shape
    inv = base ** (-np.arange(0, D, 2, dtype=np.float64) / D)
    ang = pos[:, None].astype(np.float64) * inv[None, :]  # [T, D/2]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = np.empty_like(x, dtype=np.float64)
    if neox:
        a, b = x[..., : D // 2], x[..., D // 2:]
        out[..., : D // 2] = a * c - b * s
        out[..., D // 2:] = a * s + b * c
    else:
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
    return out


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gelu_ggml_cpu(x):
    """ggml's CPU GELU/GEGLU with GGML_GELU_FP16: the input is rounded to f16,
    looked up in an f16 table of tanh-GELU, the result is an f16 value."""
    x16 = x.astype(np.float16).astype(np.float32)
    y = gelu_tanh(x16.astype(np.float64)).astype(np.float32).astype(np.float16).astype(np.float64)
    y = np.where(x <= -10.0, 0.0, y)
    return np.where(x >= 10.0, x, y)


def reference_logits(spec, w, ids, gelu=gelu_ggml_cpu):
    arch = spec["arch"]
    E, H, KV, D, L = spec["n_embd"], spec["n_head"], spec["n_head_kv"], spec["head_dim"], spec["n_layer"]
    eps = spec["eps"]
    T = len(ids)
    pos = np.arange(T)
    neox = arch in ("qwen2", "gemma3")
    f = lambda k: w[k].astype(np.float64)
    x = f("token_embd.weight")[ids]
    if arch == "gemma3":
        x = x * np.float32(math.sqrt(E))
    for il in range(L):
        p = f"blk.{il}."
        h = rms_norm(x, f(p + "attn_norm.weight"), eps)
        q = h @ f(p + "attn_q.weight").T
        k = h @ f(p + "attn_k.weight").T
        v = h @ f(p + "attn_v.weight").T
        if arch == "qwen2":
            q, k, v = q + f(p + "attn_q.bias"), k + f(p + "attn_k.bias"), v + f(p + "attn_v.bias")
        q, k, v = q.reshape(T, H, D), k.reshape(T, KV, D), v.reshape(T, KV, D)
        base = spec["rope_base"]
        is_swa = False
        if arch == "gemma3":
            q = rms_norm(q, f(p + "attn_q_norm.weight"), eps)
            k = rms_norm(k, f(p + "attn_k_norm.weight"), eps)
            is_swa = il % spec["swa_pattern"] < spec["swa_pattern"] - 1
            if is_swa:
                base = spec["rope_base_swa"]
        q, k = rope(q, pos, base, neox), rope(k, pos, base, neox)
        scale = 1.0 / math.sqrt(D)
        # causal mask; sliding-window layers additionally hide keys with
        # (query_pos - key_pos) >= window
        dist = pos[:, None] - pos[None, :]
        masked = dist < 0
        if is_swa:
            masked = masked | (dist >= spec["sliding_window"])
        out = np.empty((T, H, D))
        for hh in range(H):
            kh = hh // (H // KV)
            s = (q[:, hh, :] @ k[:, kh, :].T) * scale
            s = np.where(masked, -np.inf, s)
            s = s - s.max(axis=1, keepdims=True)
            pr = np.exp(s)
            pr /= pr.sum(axis=1, keepdims=True)
            out[:, hh, :] = pr @ v[:, kh, :]
        a = out.reshape(T, H * D) @ f(p + "attn_output.weight").T
        if arch == "gemma3":
            a = rms_norm(a, f(p + "post_attention_norm.weight"), eps)
        x = x + a
        h = rms_norm(x, f(p + "ffn_norm.weight"), eps)
        g = h @ f(p + "ffn_gate.weight").T
        u = h @ f(p + "ffn_up.weight").T
        if arch == "gemma3":
            m = gelu(g) * u
        else:
            m = g / (1.0 + np.exp(-g)) * u
        d = m @ f(p + "ffn_down.weight").T
        if arch == "gemma3":
            d = rms_norm(d, f(p + "post_ffw_norm.weight"), eps)
        x = x + d
    x = rms_norm(x, f("output_norm.weight"), eps)
    out_w = f("output.weight") if "output.weight" in w else f("token_embd.weight")
    return x @ out_w.T


# --------------------------------------------------------------------------
# llama.cpp
# --------------------------------------------------------------------------
TOKENIZE_TEXTS = [
    "hello world",
    " hello",
    "hello",
    "the thing",
    "Hello",
    "h\u00e9llo",
    "a  b",
    "\nthe",
    "123",
    "",
    "th the ing",
    "hello world hello",
    "The thing is nothing.",
    "singing and thinking",
    "  two leading spaces",
    "trailing space ",
    "line one\nline two",
    "what? this!",
]


def llama(path, **kw):
    from llama_cpp import Llama
    args = dict(model_path=path, n_ctx=256, n_batch=64, n_ubatch=64, n_threads=2,
                n_threads_batch=2, logits_all=True, flash_attn=False,
                type_k=0, type_v=0,  # GGML_TYPE_F32 KV cache
                seed=0, verbose=False)
    args.update(kw)
    return Llama(**args)


def llamacpp_logits(path, ids):
    llm = llama(path)
    llm.eval(ids)
    batch = np.array(llm.scores[: len(ids)], dtype=np.float32)
    del llm
    llm = llama(path)
    for t in ids:
        llm.eval([t])
    single_last = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
    del llm
    return batch, single_last


def llamacpp_tokenize(path, texts):
    llm = llama(path, vocab_only=True)
    out = [{"text": t, "ids": list(map(int, llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)))}
           for t in texts]
    del llm
    return out


def rounded(v):
    return [round(float(x), 6) for x in v]


def main():
    import llama_cpp

    rng = np.random.default_rng(SEED)
    os.makedirs(OUT_DIR, exist_ok=True)

    spm_tokens, spm_scores, spm_types = build_spm_vocab()
    gpt_tokens, gpt_types, gpt_merges, gpt_eot = build_gpt2_vocab()
    vocabs = {
        "spm": dict(tokens=spm_tokens, scores=spm_scores, types=spm_types),
        "gpt2": dict(tokens=gpt_tokens, types=gpt_types, merges=gpt_merges, eot=gpt_eot),
    }

    result = {
        "meta": {
            "generator": "scripts/tiny_gguf_fixtures.py",
            "source": f"llama.cpp via llama-cpp-python {llama_cpp.__version__}",
            "llama_cpp_settings": "n_ctx=256, n_batch=n_ubatch=64, n_threads=2, logits_all=True, "
                                  "flash_attn=off, KV cache type F32 (type_k=type_v=0), CPU",
            "positions": "last_logits = logits at the last position of token_ids evaluated in ONE batch "
                         "from an empty context; pos5_logits = same batch, 0-based position 5; "
                         "last_logits_single = last position when token_ids are decoded one token per call",
            "tokenize": "llm.tokenize(text.encode(), add_bos=False, special=False)",
            "rounding": "logits rounded to 6 decimals",
        },
        "models": {},
    }

    ok = True
    for fname, spec in SPECS.items():
        voc = vocabs[spec["tokenizer"]]
        n_vocab = len(voc["tokens"])
        w = make_weights(spec, n_vocab, rng)
        path = os.path.join(OUT_DIR, fname)
        write_gguf(path, spec, voc, w)

        n_ids = 20
        if spec["tokenizer"] == "spm":
            ids = [1] + [int(i) for i in rng.integers(3, n_vocab, size=n_ids - 1)]
        else:
            ids = [int(i) for i in rng.integers(0, n_vocab, size=n_ids)]

        batch, single_last = llamacpp_logits(path, ids)
        assert np.all(np.isfinite(batch)) and np.all(np.isfinite(single_last)), fname

        ref = reference_logits(spec, w, ids)
        d_ref = float(np.max(np.abs(ref - batch)))
        d_single = float(np.max(np.abs(single_last - batch[-1])))
        scale = float(np.max(np.abs(batch)))
        line = (f"{fname}: {os.path.getsize(path)} bytes, vocab {n_vocab}, |logits|max {scale:.3f}, "
                f"max|llama.cpp - numpy ref| {d_ref:.2e}, max|single - batch| {d_single:.2e}")
        if spec["arch"] == "gemma3":
            d_exact = float(np.max(np.abs(reference_logits(spec, w, ids, gelu=gelu_tanh) - batch)))
            line += f", (numpy ref with exact-f32 tanh GELU: {d_exact:.2e})"
        print(line)
        if d_ref > 1e-3 * max(1.0, scale):
            ok = False
            print(f"  WARNING: llama.cpp disagrees with the numpy reference for {fname}")

        entry = {
            "file": fname,
            "arch": spec["arch"],
            "token_ids": ids,
            "last_logits": rounded(batch[-1]),
            "pos5_logits": rounded(batch[5]),
            "last_logits_single": rounded(single_last),
        }
        entry["tokenize"] = llamacpp_tokenize(path, TOKENIZE_TEXTS)
        result["models"][fname] = entry

    text = json.dumps(result, ensure_ascii=False, indent=1)
    # keep number arrays on one line
    text = re.sub(r"\[\s*([-0-9.eE,\s]*?)\s*\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(os.path.join(OUT_DIR, "expected.json"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    print(f"wrote {os.path.join(OUT_REL, 'expected.json')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
