"""The official `openai` Python client against a running starpillar (`/v1`).

stdin : {"base_url": "http://127.0.0.1:PORT/v1", "model": "...", "texts": [...],
         "chat_model": "..." (optional: also exercise /v1/chat/completions)}
stdout: {"models": [...], "base64": [[...]], "float": [[...]], "usage": {...},
         "wrong_model": {"status": 404, "code": "..."}, "empty": {"status": 422, ...},
         "chat": {...} (when chat_model is given; see chat())}
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


def usage_of(u):
    if u is None:
        return None
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens}


def stream_chat(client, **kw):
    """Stream a completion; return its text pieces, finish reason, usage and chunk count."""
    pieces, finish, usage, roles, ids, chunks = [], None, None, [], set(), 0
    for chunk in client.chat.completions.create(stream=True, **kw):
        chunks += 1
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = usage_of(chunk.usage)
        for choice in chunk.choices:
            if choice.delta.role:
                roles.append(choice.delta.role)
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    return {"pieces": pieces, "text": "".join(pieces), "finish_reason": finish, "usage": usage,
            "roles": roles, "ids": len(ids), "chunks": chunks}


def chat(client, model):
    messages = [{"role": "user", "content": "Tell me one fact about the Moon."}]
    sampled = dict(model=model, messages=messages, max_tokens=24, temperature=0.8, top_p=0.95,
                   seed=7)
    full = client.chat.completions.create(**sampled)
    streamed = stream_chat(client, stream_options={"include_usage": True}, **sampled)
    greedy = client.chat.completions.create(
        model=model, max_tokens=16, temperature=0,
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of France?"}])
    greedy_text = greedy.choices[0].message.content
    words = greedy_text.split()
    stop_word = words[len(words) // 2] if words else "."
    stopped = client.chat.completions.create(
        model=model, max_tokens=16, temperature=0, stop=[stop_word, "\u0000never"],
        messages=[{"role": "system", "content": "You are a helpful assistant."},
                  {"role": "user", "content": "What is the capital of France?"}])
    korean = stream_chat(client, model=model, max_tokens=24, temperature=0,
                         messages=[{"role": "user", "content": "오늘의 운세를 한국어로 알려주세요."}])
    return {
        "full": {"text": full.choices[0].message.content, "role": full.choices[0].message.role,
                 "finish_reason": full.choices[0].finish_reason, "usage": usage_of(full.usage),
                 "object": full.object, "model": full.model, "n_choices": len(full.choices)},
        "streamed": streamed,
        "greedy": {"text": greedy.choices[0].message.content,
                   "finish_reason": greedy.choices[0].finish_reason},
        "stopped": {"text": stopped.choices[0].message.content, "stop_word": stop_word,
                    "finish_reason": stopped.choices[0].finish_reason},
        "korean": korean,
        "n2": error_info(lambda: client.chat.completions.create(
            model=model, messages=messages, n=2)),
        "wrong_model": error_info(lambda: client.chat.completions.create(
            model="gpt-4o", messages=messages)),
    }


def main():
    req = json.load(sys.stdin)
    client = openai.OpenAI(base_url=req["base_url"], api_key="unused", max_retries=0,
                           timeout=300)
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
    if req.get("chat_model"):
        out["chat"] = chat(client, req["chat_model"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
