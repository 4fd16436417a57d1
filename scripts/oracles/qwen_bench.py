"""Decode speed of llama.cpp (llama-cpp-python) on a random-weight GGUF with Qwen2.5-0.5B's
shape (qwen2: 24 layers, hidden 896, 14 heads / 2 KV heads of 64, FFN 4864, vocabulary
151,936, tied output; every matrix Q8_0), for a side-by-side ratio with
`starpillar generate --gen-model <file> --threads 1`.

stdin : {"path": "/tmp/qwen25-shape.gguf", "build": true, "threads": 1, "prompt": "text",
         "n_decode": 64, "extra_bufts": false}
         (extra_bufts: llama.cpp's extra buffer types — AMX on this CPU — which is its default)
stdout: {"path": ..., "prompt_tokens": n, "prompt_s": s, "decode_tokens": n, "decode_s": s,
         "decode_tok_s": x}
"""
import json
import os
import sys
import time

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from gguf.quants import quantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qwen_ref  # noqa: E402


def build(path, seed=11):
    rng = np.random.default_rng(seed)
    tokens, merges = qwen_ref.train_vocab()
    vocab = tokens + [t for t, _ in qwen_ref.SPECIALS]
    types = [1] * len(tokens) + [k for _, k in qwen_ref.SPECIALS]
    n_vocab, hidden, ff, layers, heads, kv_heads, hd = 151936, 896, 4864, 24, 14, 2, 64
    vocab += [f"[PAD{i}]" for i in range(n_vocab - len(vocab))]
    types += [5] * (n_vocab - len(types))
    ids = {t: i for i, t in enumerate(vocab)}
    w = GGUFWriter(path, "qwen2")
    w.add_name("random-qwen2.5-0.5b-shape")
    w.add_context_length(32768)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(vocab)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids["<|endoftext|>"])
    w.add_eos_token_id(ids["<|im_end|>"])
    w.add_add_bos_token(False)

    def mat(name, rows, cols, std):
        x = (rng.standard_normal((rows, cols), dtype=np.float32) * std)
        w.add_tensor(name, quantize(x, T.Q8_0), raw_dtype=T.Q8_0)

    def vec(name, n, mean, std):
        w.add_tensor(name, (mean + std * rng.standard_normal(n)).astype(np.float32))

    mat("token_embd.weight", n_vocab, hidden, 0.05)
    vec("output_norm.weight", hidden, 1.0, 0.1)
    for i in range(layers):
        p = f"blk.{i}."
        vec(p + "attn_norm.weight", hidden, 1.0, 0.1)
        mat(p + "attn_q.weight", heads * hd, hidden, 0.03)
        mat(p + "attn_k.weight", kv_heads * hd, hidden, 0.03)
        mat(p + "attn_v.weight", kv_heads * hd, hidden, 0.03)
        mat(p + "attn_output.weight", hidden, heads * hd, 0.03)
        vec(p + "attn_q.bias", heads * hd, 0.0, 0.1)
        vec(p + "attn_k.bias", kv_heads * hd, 0.0, 0.1)
        vec(p + "attn_v.bias", kv_heads * hd, 0.0, 0.1)
        vec(p + "ffn_norm.weight", hidden, 1.0, 0.1)
        mat(p + "ffn_gate.weight", ff, hidden, 0.03)
        mat(p + "ffn_up.weight", ff, hidden, 0.03)
        mat(p + "ffn_down.weight", hidden, ff, 0.02)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    req = json.load(sys.stdin)
    path = req["path"]
    if req.get("build") or not os.path.exists(path):
        build(path)
    from llama_cpp import Llama  # noqa: F401  (qwen_ref.load patches its params)
    llm = qwen_ref.load(path, req.get("extra_bufts", False))
    if int(req.get("threads", 1)) != 1:
        raise SystemExit("only 1 thread is supported")
    ids = llm.tokenize(req.get("prompt", "Hello there").encode(), add_bos=False, special=True)
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    n = int(req.get("n_decode", 64))
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    for _ in range(n):
        llm.eval([tok])
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t2 = time.perf_counter()
    json.dump({"path": path, "prompt_tokens": len(ids), "prompt_s": t1 - t0,
               "decode_tokens": n, "decode_s": t2 - t1, "decode_tok_s": n / (t2 - t1)},
              sys.stdout)


if __name__ == "__main__":
    main()
