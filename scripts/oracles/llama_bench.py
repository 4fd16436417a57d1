"""Timing reference: llama.cpp (llama-cpp-python) prefill and greedy decode on a GGUF file,
driven over a pipe so a Rust benchmark can alternate rounds with its own engine.

argv  : model path
stdin : one JSON object per line {"threads": 1, "prompt": [ids], "n_decode": 64,
        "extra_bufts": false} (extra_bufts: see llama_ref.py; true is llama.cpp's default)
stdout: one JSON line per request {"prefill_s": .., "decode_s": .., "n_prompt": .., "n_decode": ..,
        "tokens": [greedy ids]}
Greedy decode: argmax of the logits after each step (no sampler chain; read from the context,
since `llm.scores` is only filled with `logits_all`), KV cache reset per request. A model is loaded once per (thread count, extra_bufts).
"""
import json
import sys
import time

import os

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import load  # noqa: E402


def next_token(llm):
    """Argmax of the logits after the last evaluated token."""
    row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))
    return int(np.argmax(row))


def main():
    path = sys.argv[1]
    models = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        key = (int(req.get("threads", 1)), bool(req.get("extra_bufts", False)))
        llm = models.get(key)
        if llm is None:
            llm = load(path, key[1], n_threads=key[0], n_batch=512)
            models[key] = llm
        prompt = req["prompt"]
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        tok = next_token(llm)
        out = [tok]
        decode = 0.0
        for _ in range(int(req.get("n_decode", 32)) - 1):
            t2 = time.perf_counter()
            llm.eval([tok])
            tok = next_token(llm)
            decode += time.perf_counter() - t2
            out.append(tok)
        print(json.dumps({"prefill_s": t1 - t0, "decode_s": decode, "n_prompt": len(prompt),
                          "n_decode": len(out) - 1, "tokens": out}), flush=True)


if __name__ == "__main__":
    main()
