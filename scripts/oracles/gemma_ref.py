"""Reference oracle for Gemma 3 GGUFs: llama.cpp (llama-cpp-python) on the same file.

stdin : {"model": ".../x.gguf", "tokenize": ["text", ...], "add_bos": true, "special": true,
         "prompts": ["raw prompt", ...], "n_predict": 32,
         "bench": {"prompt": "raw prompt", "n_predict": 64, "rounds": 1}}
stdout: {"tokens": [[ids], ...], "greedy": [[ids], ...],
         "bench": {"prompt_tokens": n, "prompt_tok_s": x, "decode_tok_s": y}}
Tokenisation: `add_bos` (default true) and `special` (parse control tokens, default true).
Greedy prompts are tokenised with special tokens parsed and no extra BOS (write `<bos>` in the
prompt); argmax, no penalties, stops at an end-of-generation token. Always one thread and
`use_extra_bufts=False` (see llama_ref.py).
"""
import json
import sys
import time

from llama_ref import load


def bench(llm, req):
    ids = llm.tokenize(req["prompt"].encode("utf-8"), add_bos=False, special=True)
    n = req.get("n_predict", 64)
    best_p, best_d = 0.0, 0.0
    for _ in range(req.get("rounds", 1)):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        t1 = time.perf_counter()
        for _ in range(n):
            llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])
        t2 = time.perf_counter()
        best_p = max(best_p, len(ids) / (t1 - t0))
        best_d = max(best_d, n / (t2 - t1))
    return {"prompt_tokens": len(ids), "prompt_tok_s": best_p, "decode_tok_s": best_d}


def main():
    req = json.load(sys.stdin)
    llm = load(req["model"], False, n_ctx=req.get("n_ctx", 2048))
    add_bos = req.get("add_bos", True)
    special = req.get("special", True)
    out = {"tokens": [llm.tokenize(t.encode("utf-8"), add_bos=add_bos, special=special)
                      for t in req.get("tokenize", [])]}
    ends = {llm.token_eos()}
    ends.update(llm.tokenize(b"<end_of_turn>", add_bos=False, special=True))
    greedy = []
    n = req.get("n_predict", 32)
    for p in req.get("prompts", []):
        ids = llm.tokenize(p.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        toks = []
        for tok in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0,
                                repeat_penalty=1.0, reset=True):
            if tok in ends:
                break
            toks.append(tok)
            if len(toks) >= n:
                break
        greedy.append(toks)
    out["greedy"] = greedy
    if "bench" in req:
        out["bench"] = bench(llm, req["bench"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
