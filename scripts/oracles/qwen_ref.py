"""Reference oracle for the Qwen2 / Qwen3 generators: builds tiny random-weight GGUF files and
runs llama.cpp (llama-cpp-python) on them.

stdin : {"dir": "/tmp/x", "seed": 7, "archs": ["qwen2", "qwen3", "qwen2:q8_0", ...],
         "tokenize": ["text", ...], "prompts": ["raw prompt", ...], "n_predict": 12}
stdout: {"seed": 7, "models": {"qwen2": {"path": ".../qwen2.gguf", "tokens": [[ids], ...],
         "runs": [{"prompt": [ids], "tokens": [ids], "logits": [[f32, ...], ...]}, ...]}, ...}}

The vocabulary is a byte-level BPE trained (HF `tokenizers`) on a fixed English / Korean /
code corpus with Qwen's own pre-tokenizer regex, plus Qwen's control tokens; the file says
`tokenizer.ggml.model = gpt2`, `tokenizer.ggml.pre = qwen2`, so llama.cpp tokenises with its
qwen2 rules. Weights are seeded random values in a mix of types (Q8_0, Q4_0, Q4_1 quantised by
`gguf`; Q4_K and Q6_K as random raw blocks), F32 norms and biases. `qwen2`: q/k/v biases,
tied output; `qwen3`: per-head q/k norms, head size × heads ≠ hidden, a separate output.

An arch written `name:q8_0` (e.g. `qwen3:q8_0`) stores every matrix as Q8_0, a type our
kernels run as is, so the two forwards see the same weights bit for bit.

`runs`: for each prompt (tokenised by llama.cpp, special tokens parsed, no BOS), llama.cpp's
greedy continuation token by token, with the full logits before each generated token (the
first after the prompt). llama.cpp's extra buffer types are off (`use_extra_bufts = False`):
on this AMX CPU they corrupt quantised matmuls for batches of 32+ tokens.
"""
import json
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter
from gguf.quants import quantize
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

import llama_cpp.llama_cpp as llama_lib
from llama_cpp import Llama

QWEN2_PATTERN = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
                 r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's a test, isn't it? We'll see.",
    "Hello world! Hello, world. hello WORLD 12345 and 2,000,000 or 3.14159.",
    "def main():\n    print('hi')\n    return 0\n\nif __name__ == '__main__':\n    main()\n",
    "오늘의 운세를 알려주세요. 사주팔자와 대운의 흐름을 봅니다. 안녕하세요, 반갑습니다!",
    "甲子年 乙丑月 丙寅日 丁卯時 天干地支 陰陽五行",
    "Your reading for today: the wood element rises; water nourishes it. Be patient.",
    "  leading spaces\tand tabs\n\n\nnewlines   trailing   ",
    "emoji 🌙✨👍 are bytes too; café naïve résumé — “quotes” …",
    "I'm here, you're there, they've gone, she'd say, we'll go, I'd've",
    "The capital of France is Paris. The capital of Korea is Seoul. 서울은 한국의 수도입니다.",
]

SPECIALS = [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3),
            ("<think>", 4), ("</think>", 4)]

TEMPLATE = ("{# You are Qwen, created by Alibaba Cloud. You are a helpful assistant. #}"
            "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
            "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def train_vocab():
    """Byte-level BPE tokens (by id) and merges ("a b"), trained with Qwen's pre-tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    assert [i for _, i in vocab] == list(range(len(tokens)))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges


def q_block_k4(rng, rows, cols):
    """Random Q4_K blocks (d, dmin, 12 packed 6-bit scales/mins, 128 nibble bytes)."""
    nb = rows * cols // 256
    out = np.zeros((nb, 144), dtype=np.uint8)
    out[:, 0:2] = np.frombuffer(np.full(nb, 4e-4, dtype=np.float16).tobytes(),
                                dtype=np.uint8).reshape(nb, 2)
    out[:, 2:4] = np.frombuffer(np.full(nb, 3e-3, dtype=np.float16).tobytes(),
                                dtype=np.uint8).reshape(nb, 2)
    out[:, 4:] = rng.integers(0, 256, size=(nb, 140), dtype=np.uint8)
    return out.reshape(rows, cols // 256 * 144)


def q_block_k6(rng, rows, cols):
    """Random Q6_K blocks (128 low-nibble bytes, 64 high-bit bytes, 16 int8 scales, d)."""
    nb = rows * cols // 256
    out = np.zeros((nb, 210), dtype=np.uint8)
    out[:, :192] = rng.integers(0, 256, size=(nb, 192), dtype=np.uint8)
    out[:, 192:208] = rng.integers(-24, 25, size=(nb, 16)).astype(np.int8).view(np.uint8)
    out[:, 208:210] = np.frombuffer(np.full(nb, 3e-4, dtype=np.float16).tobytes(),
                                    dtype=np.uint8).reshape(nb, 2)
    return out.reshape(rows, cols // 256 * 210)


def add_matrix(w, rng, name, rows, cols, qtype, std):
    if qtype == T.Q4_K:
        w.add_tensor(name, q_block_k4(rng, rows, cols), raw_dtype=qtype)
    elif qtype == T.Q6_K:
        w.add_tensor(name, q_block_k6(rng, rows, cols), raw_dtype=qtype)
    else:
        x = (rng.standard_normal((rows, cols)) * std).astype(np.float32)
        w.add_tensor(name, quantize(x, qtype), raw_dtype=qtype)


def build(arch, path, seed, tokens, merges, all_q8=False):
    rng = np.random.default_rng(seed)
    hidden, ff, layers, heads, kv_heads = 256, 512, 2, 4, 2
    head_dim = 64 if arch == "qwen2" else 96  # qwen3: 4 heads × 96 = 384 ≠ hidden
    qd, kvd = heads * head_dim, kv_heads * head_dim
    vocab = tokens + [t for t, _ in SPECIALS]
    types = [1] * len(tokens) + [k for _, k in SPECIALS]
    ids = {t: i for i, t in enumerate(vocab)}

    w = GGUFWriter(path, arch)
    w.add_name(f"tiny-random-{arch}")
    w.add_context_length(512)
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(1_000_000.0 if arch == "qwen2" else 500_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    if arch == "qwen3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(vocab)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ids["<|endoftext|>"])
    w.add_eos_token_id(ids["<|im_end|>"])
    w.add_pad_token_id(ids["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(TEMPLATE)

    def norm(name, n):
        w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))

    if arch == "qwen2":
        embd_t, out_t = T.Q8_0, None
        attn_t, o_t, gu_t, down_t = T.Q8_0, T.Q4_0, T.Q4_K, T.Q6_K
    else:
        embd_t, out_t = T.Q6_K, T.Q8_0
        attn_t, o_t, gu_t, down_t = T.Q4_0, T.Q8_0, T.Q4_1, T.Q4_K
    if all_q8:
        embd_t, out_t = T.Q8_0, (None if out_t is None else T.Q8_0)
        attn_t = o_t = gu_t = down_t = T.Q8_0
    add_matrix(w, rng, "token_embd.weight", len(vocab), hidden, embd_t, 0.5)
    norm("output_norm.weight", hidden)
    if out_t is not None:
        add_matrix(w, rng, "output.weight", len(vocab), hidden, out_t, 0.5)
    for i in range(layers):
        p = f"blk.{i}."
        norm(p + "attn_norm.weight", hidden)
        add_matrix(w, rng, p + "attn_q.weight", qd, hidden, attn_t, 0.12)
        add_matrix(w, rng, p + "attn_k.weight", kvd, hidden, attn_t, 0.12)
        add_matrix(w, rng, p + "attn_v.weight", kvd, hidden, attn_t, 0.12)
        add_matrix(w, rng, p + "attn_output.weight", hidden, qd, o_t, 0.05)
        if arch == "qwen2":
            for n, d in (("attn_q.bias", qd), ("attn_k.bias", kvd), ("attn_v.bias", kvd)):
                w.add_tensor(p + n, (0.5 * rng.standard_normal(d)).astype(np.float32))
        else:
            norm(p + "attn_q_norm.weight", head_dim)
            norm(p + "attn_k_norm.weight", head_dim)
        norm(p + "ffn_norm.weight", hidden)
        add_matrix(w, rng, p + "ffn_gate.weight", ff, hidden, gu_t, 0.1)
        add_matrix(w, rng, p + "ffn_up.weight", ff, hidden, gu_t, 0.1)
        add_matrix(w, rng, p + "ffn_down.weight", hidden, ff, down_t, 0.05)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def load(path, extra_bufts=False):
    """llama.cpp on `path`, extra buffer types (AMX here) as asked: off for logits."""
    original = llama_lib.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = bool(extra_bufts)
        return p

    llama_lib.llama_model_default_params = params
    try:
        llm = Llama(model_path=path, n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False,
                    seed=1, logits_all=True, chat_format="chatml")
    finally:
        llama_lib.llama_model_default_params = original
    assert llm.model_params.use_extra_bufts == bool(extra_bufts)
    return llm


def run(llm, text, n):
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
    llm.reset()
    llm.eval(ids)
    out, logits = [], []
    for _ in range(n):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        logits.append([round(float(v), 5) for v in row])
        tok = int(np.argmax(row))
        out.append(tok)
        llm.eval([tok])
    return {"prompt": ids, "tokens": out, "logits": logits}


def main():
    req = json.load(sys.stdin)
    seed = int(req.get("seed", 7))
    os.makedirs(req["dir"], exist_ok=True)
    tokens, merges = train_vocab()
    result = {"seed": seed, "models": {}}
    for k, name in enumerate(req.get("archs", ["qwen2", "qwen3"])):
        arch, _, kind = name.partition(":")
        path = os.path.join(req["dir"], f"{arch}-{kind or 'mixed'}.gguf")
        build(arch, path, seed + k, tokens, merges, all_q8=kind == "q8_0")
        llm = load(path)
        toks = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
                for t in req.get("tokenize", [])]
        runs = [run(llm, p, int(req.get("n_predict", 12))) for p in req.get("prompts", [])]
        result["models"][name] = {"path": path, "tokens": toks, "runs": runs}
        del llm
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
