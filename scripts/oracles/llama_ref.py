"""Reference oracle: llama.cpp (llama-cpp-python) on the same GGUF file.

stdin : {"model": ".../x.gguf", "tokenize": ["text", ...], "prompts": ["raw prompt", ...],
         "n_predict": 32, "extra_bufts": false}
stdout: {"tokens": [[ids], ...], "greedy": [[ids], ...]}
Tokenisation: no BOS, special tokens parsed. Greedy: argmax, no penalties, stops at EOG.

`extra_bufts` (default false) is llama.cpp's `use_extra_bufts` model parameter. On CPUs with
AMX (this build reports AMX_INT8 = 1) its extra buffer type takes over Q4_1 matmuls, and for a
batch of 32 or more tokens it returns corrupted logits (e.g. the same 32-token prompt evaluated
at once and token by token differs by 22 in the logits; below 32 tokens, or with the extra
buffer types off, by < 0.4). The plain ggml CPU path is the reference.
"""
import json
import sys

import llama_cpp.llama_cpp as llama_lib
from llama_cpp import Llama


def load(path, extra_bufts, n_threads=1, n_ctx=2048, **kw):
    """A Llama whose model is loaded with use_extra_bufts as given."""
    original = llama_lib.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = bool(extra_bufts)
        return p

    llama_lib.llama_model_default_params = params
    try:
        llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads,
                    n_threads_batch=n_threads, verbose=False, seed=1, **kw)
    finally:
        llama_lib.llama_model_default_params = original
    assert llm.model_params.use_extra_bufts == bool(extra_bufts)
    return llm


def main():
    req = json.load(sys.stdin)
    llm = load(req["model"], req.get("extra_bufts", False))
    tokens = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
              for t in req.get("tokenize", [])]
    greedy = []
    n = req.get("n_predict", 32)
    for p in req.get("prompts", []):
        ids = llm.tokenize(p.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        out = []
        for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0,
                                repeat_penalty=1.0, reset=True):
            if llm._model.token_is_eog(tok) if hasattr(llm._model, "token_is_eog") else tok == llm.token_eos():
                break
            out.append(tok)
            if len(out) >= n:
                break
        greedy.append(out)
    json.dump({"tokens": tokens, "greedy": greedy}, sys.stdout)


if __name__ == "__main__":
    main()
