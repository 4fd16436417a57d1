"""Reference oracle: llama.cpp (llama-cpp-python) on the same GGUF file.

stdin : {"model": ".../x.gguf", "tokenize": ["text", ...], "prompts": ["raw prompt", ...],
         "n_predict": 32}
stdout: {"tokens": [[ids], ...], "greedy": [[ids], ...]}
Tokenisation: no BOS, special tokens parsed. Greedy: argmax, no penalties, stops at EOG.
"""
import json
import sys

from llama_cpp import Llama


def main():
    req = json.load(sys.stdin)
    llm = Llama(model_path=req["model"], n_ctx=2048, n_threads=1, verbose=False, seed=1)
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
