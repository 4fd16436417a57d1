"""sentence-transformers reference for HF BERT sentence encoders (all-MiniLM-L6-v2).

Input:  {"model_dir": str, "texts": [str], "threads": 1}
Output: {"max_seq_length": int, "ids": [[int]], "vectors": [[float]]}

Bench mode (benches/engine.rs): `st_ref.py serve MODEL_DIR THREADS`, then one JSON list of
texts per stdin line, each encoded as one batch and answered with a `done` line.

The model is built as the folder's modules.json describes all-MiniLM-L6-v2 (Transformer with
sentence_bert_config.json's max_seq_length, mean pooling, L2 normalisation), on the CPU torch.
"""

import json
import os
import sys


def build(model_dir):
    from sentence_transformers import SentenceTransformer

    try:
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers import models

    limit = None
    cfg = os.path.join(model_dir, "sentence_bert_config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            limit = json.load(f).get("max_seq_length")
    word = models.Transformer(model_dir, max_seq_length=limit)
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = models.Pooling(dim(), pooling_mode="mean")
    return SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu")


def serve(model_dir, threads):
    import torch

    torch.set_num_threads(threads)
    model = build(model_dir)
    print("ready", flush=True)
    for line in sys.stdin:
        texts = json.loads(line)
        model.encode(texts, batch_size=max(1, len(texts)))
        print("done", flush=True)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    req = json.load(sys.stdin)
    import torch

    torch.set_num_threads(int(req.get("threads", 1)))
    model = build(req["model_dir"])
    texts = req["texts"]
    ids = []
    for t in texts:
        feats = (getattr(model, "preprocess", None) or model.tokenize)([t])
        ids.append([int(i) for i in feats["input_ids"][0].tolist()])
    vectors = model.encode(texts, batch_size=32, convert_to_numpy=True)
    json.dump({"max_seq_length": model.max_seq_length, "ids": ids,
               "vectors": [[float(x) for x in v] for v in vectors]}, sys.stdout)


if __name__ == "__main__":
    main()
