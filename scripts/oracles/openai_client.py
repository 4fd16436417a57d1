"""The official `openai` Python client against a running starpillar (`/v1`).

stdin : {"base_url": "http://127.0.0.1:PORT/v1", "model": "...", "texts": [...]}
stdout: {"models": [...], "base64": [[...]], "float": [[...]], "usage": {...},
         "wrong_model": {"status": 404, "code": "..."}, "empty": {"status": 422, ...}}
"""
import json
import sys

import openai


def error_info(fn):
    try:
        fn()
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {"status": e.status_code, "code": body.get("code"), "type": body.get("type"),
                "param": body.get("param"), "message": body.get("message")}
    return {"status": 200}


def main():
    req = json.load(sys.stdin)
    client = openai.OpenAI(base_url=req["base_url"], api_key="unused", max_retries=0,
                           timeout=120)
    models = [m.id for m in client.models.list().data]
    # The client asks for base64 by default and decodes it itself.
    r64 = client.embeddings.create(model=req["model"], input=req["texts"])
    rf = client.embeddings.create(model=req["model"], input=req["texts"],
                                  encoding_format="float")
    one = client.embeddings.create(model=req["model"], input=req["texts"][0])
    out = {
        "models": models,
        "base64": [d.embedding for d in sorted(r64.data, key=lambda d: d.index)],
        "float": [d.embedding for d in sorted(rf.data, key=lambda d: d.index)],
        "single": one.data[0].embedding,
        "model": rf.model,
        "usage": {"prompt_tokens": rf.usage.prompt_tokens, "total_tokens": rf.usage.total_tokens},
        "wrong_model": error_info(
            lambda: client.embeddings.create(model="no-such-model", input="x")),
        "empty": error_info(lambda: client.embeddings.create(model=req["model"], input=[])),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
