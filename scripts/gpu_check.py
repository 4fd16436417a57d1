#!/usr/bin/env python3
"""Check a `--features cuda` build of starpillar on a machine with an NVIDIA GPU.

Runs on the GPU machine (Python 3 with torch, transformers, sentence-transformers and numpy),
against the binary as a user runs it: `serve --device cuda` and `serve --device cpu` side by side,
plus `bench engine` on each device. It checks and measures:

  1. embeddings: /v1/embeddings on cuda vs cpu vs sentence-transformers on the same GPU, for the
     fixture sentences (worst cosine of each pair); embeddings/s at batch 1/16/64, ours over HTTP
     against sentence-transformers in-process, alternating;
  2. generation: greedy /v1/chat/completions on cuda vs cpu for fixed prompts (identical tokens),
     streamed == non-streamed text on cuda;
  3. `bench engine` (1/4/8 concurrent streams) on cuda and on the CPU.

A MiniLM folder without `model.safetensors` gets a seeded random-weight BertModel written by
transformers (the real weights may not fit the transfer to the GPU machine); the same file then
feeds both starpillar and the reference. Results go to OUT/gpu_check.json; exit 1 on a failed check.

Usage: gpu_check.py --bin BIN --gguf FILE --minilm DIR --sentences JSON --out DIR
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request


# Model ids as /v1/models lists them: the folder name and the GGUF file stem (set in main).
EMBED, GEN = "", ""


def log(*a):
    print(*a, flush=True)


def cuda_library_path():
    """Folders holding libcublas/libcurand/libnvrtc/libcudart for CUDA 13 on this machine."""
    dirs = set()
    pats = ["/usr/local/cuda*/lib64", "/usr/local/cuda*/targets/x86_64-linux/lib"]
    for site in sys.path:
        pats += [f"{site}/nvidia/*/lib", f"{site}/nvidia/cu13/lib"]
    for pat in pats:
        for d in glob.glob(pat):
            if glob.glob(f"{d}/libcublas.so*") or glob.glob(f"{d}/libnvrtc.so*") or glob.glob(
                f"{d}/libcurand.so*"
            ) or glob.glob(f"{d}/libcudart.so*"):
                dirs.add(d)
    return sorted(dirs)


def http(url, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def post(url, body, timeout=300):
    status, raw = http(url, body, timeout)
    return json.loads(raw)


def wait_ready(base, proc, within=300):
    end = time.time() + within
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server at {base} exited with {proc.returncode}")
        try:
            post(base + "/v1/embeddings", {"model": EMBED, "input": ["ready?"]}, timeout=10)
            http(base + "/v1/models", timeout=10)
            body = {"model": GEN, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            post(base + "/v1/chat/completions", body, timeout=60)
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(1)
    raise RuntimeError(f"server at {base} not ready in {within}s")


def cosine(a, b):
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def ensure_minilm(d):
    path, marker = os.path.join(d, "model.safetensors"), os.path.join(d, "RANDOM_WEIGHTS")
    if os.path.exists(path):
        return "random (seed 20261125)" if os.path.exists(marker) else "real"
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    torch.manual_seed(20261125)
    model = BertModel(BertConfig.from_json_file(os.path.join(d, "config.json")))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    open(marker, "w").write("model.safetensors holds seeded random weights, not MiniLM's\n")
    return "random (seed 20261125)"


def reference_encoder(d):
    """sentence-transformers on the GPU: Transformer → mean pooling → L2 normalise."""
    from sentence_transformers import SentenceTransformer, models

    seq = json.load(open(os.path.join(d, "sentence_bert_config.json")))["max_seq_length"]
    tr = models.Transformer(d, max_seq_length=seq)
    pool = models.Pooling(tr.get_word_embedding_dimension(), pooling_mode="mean")
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    st = SentenceTransformer(modules=[tr, pool, models.Normalize()], device=dev)
    return lambda texts: st.encode(texts, batch_size=len(texts), convert_to_numpy=True)


def embed(base, texts, chunk=32):
    out = []
    for i in range(0, len(texts), chunk):
        r = post(base + "/v1/embeddings", {"model": EMBED, "input": texts[i : i + chunk]})
        out += [d["embedding"] for d in sorted(r["data"], key=lambda d: d["index"])]
    return out


def chat(base, prompt, stream):
    body = {
        "model": GEN,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 32,
        "temperature": 0,
        "stream": stream,
    }
    if not stream:
        r = post(base + "/v1/chat/completions", body)
        return r["choices"][0]["message"]["content"], r["usage"]["completion_tokens"]
    req = urllib.request.Request(
        base + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    text = ""
    with urllib.request.urlopen(req, timeout=300) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ev = json.loads(line[6:])
            for c in ev.get("choices", []):
                text += c.get("delta", {}).get("content") or ""
    return text, None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bin", required=True, help="the starpillar binary built with --features cuda")
    ap.add_argument("--gguf", required=True, help="a llama-architecture GGUF for generation")
    ap.add_argument("--minilm", required=True, help="HF BERT folder (config, tokenizer.json, …)")
    ap.add_argument("--sentences", required=True, help="JSON list of fixture sentences")
    ap.add_argument("--out", required=True, help="folder for gpu_check.json and server logs")
    ap.add_argument("--cpu-threads", type=int, default=8, help="--threads of the CPU server")
    ap.add_argument("--device", default="cuda", help="device of the checked server (cpu: dry run)")
    a = ap.parse_args()
    global EMBED, GEN
    EMBED = os.path.basename(os.path.normpath(a.minilm))
    GEN = os.path.splitext(os.path.basename(a.gguf))[0]
    os.makedirs(a.out, exist_ok=True)
    res = {"checks": {}}
    ok = True

    def check(name, passed, detail):
        nonlocal ok
        ok &= bool(passed)
        res["checks"][name] = {"pass": bool(passed), **detail}
        log(f"{'PASS' if passed else 'FAIL'} {name}: {json.dumps(detail)}")

    libs = cuda_library_path()
    env = dict(os.environ, LD_LIBRARY_PATH=":".join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]))
    try:
        res["gpu"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        res["gpu"] = "none (nvidia-smi not found)"
    res["ld_library_path"] = libs
    log("gpu:", res["gpu"])
    ldd = subprocess.run(["ldd", a.bin], capture_output=True, text=True, env=env).stdout
    log(ldd)
    res["minilm_weights"] = ensure_minilm(a.minilm)
    log("minilm weights:", res["minilm_weights"])

    servers = {}
    for dev, port in (("cuda", 8091), ("cpu", 8092), ("cuda-strict", 8093)):
        data = f"/tmp/sp-{dev}"
        cmd = [a.bin, "serve", "--listen", f"127.0.0.1:{port}",
               "--device", a.device if dev.startswith("cuda") else dev,
               "--embed-model", a.minilm, "--gen-model", a.gguf, "--data-dir", data,
               "--no-auto-index", "--rate-limits",
               "ai=1000000000/1,account=1000000000/1,default=1000000000/1",
               "--plan-quotas", "anonymous=1000000000,free=1000000000,pro=1000000000"]
        if dev == "cpu":
            cmd += ["--threads", str(a.cpu_threads)]
        logf = open(os.path.join(a.out, f"serve-{dev}.log"), "w")
        senv = dict(env, STARPILLAR_CUDA_STRICT_F32="1") if dev == "cuda-strict" else env
        servers[dev] = (subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=senv),
                        f"http://127.0.0.1:{port}")
    try:
        for dev, (proc, base) in servers.items():
            t = time.time()
            wait_ready(base, proc)
            log(f"{dev} server ready in {time.time() - t:.1f}s")
        cuda, cpu, strict = servers["cuda"][1], servers["cpu"][1], servers["cuda-strict"][1]

        # 1. embeddings: agreement
        texts = [t for t in json.load(open(a.sentences)) if t.strip()]
        ref = reference_encoder(a.minilm)
        v_cuda, v_cpu, v_ref = embed(cuda, texts), embed(cpu, texts), ref(texts)
        v_strict = embed(strict, texts)
        pairs = {
            "cuda_vs_sentence_transformers": [cosine(x, y) for x, y in zip(v_cuda, v_ref)],
            "cuda_strict_f32_vs_sentence_transformers": [
                cosine(x, y) for x, y in zip(v_strict, v_ref)
            ],
            "cuda_vs_cpu": [cosine(x, y) for x, y in zip(v_cuda, v_cpu)],
            "cpu_vs_sentence_transformers": [cosine(x, y) for x, y in zip(v_cpu, v_ref)],
        }
        for name, cs in pairs.items():
            check(f"embeddings {name}", min(cs) >= 0.999,
                  {"sentences": len(cs), "worst_cosine": round(min(cs), 6)})

        # 1b. embeddings/s, alternating, median of rounds: ours (TF32 default, base64 as the
        # openai client asks; strict f32, base64; TF32 with JSON floats) against ST in-process
        import base64

        import numpy as np

        def ours(base, fmt):
            def run(g):
                r = post(base + "/v1/embeddings", {"model": EMBED, "input": g,
                                                   "encoding_format": fmt})
                if fmt == "base64":
                    return [np.frombuffer(base64.b64decode(d["embedding"]), "<f4")
                            for d in r["data"]]
                return [d["embedding"] for d in r["data"]]
            return run

        engines = {
            "tf32_base64": ours(cuda, "base64"),
            "strict_f32_base64": ours(strict, "base64"),
            "tf32_float": ours(cuda, "float"),
            "sentence_transformers": ref,
        }
        speed = {}
        for batch in (1, 16, 64):
            sample = (texts * 4)[: max(batch, 64)]
            groups = [sample[i : i + batch] for i in range(0, len(sample), batch)]
            times = {k: [] for k in engines}
            for _ in range(5):
                for name, run in engines.items():
                    t = time.perf_counter()
                    for g in groups:
                        run(g)
                    times[name].append(time.perf_counter() - t)
            per_s = {k: len(sample) / statistics.median(v) for k, v in times.items()}
            st = per_s["sentence_transformers"]
            speed[batch] = {k: {"per_s": round(v, 1), "vs_st": round(v / st, 2)}
                            for k, v in per_s.items()}
            log(f"embed batch {batch}: " + ", ".join(
                f"{k} {v:.0f}/s ({v / st:.2f}x)" for k, v in per_s.items()))
        res["embed_speed_cuda"] = speed

        # 2. generation: cuda vs cpu greedy, stream vs non-stream
        prompts = [
            "What is the capital of France?",
            "Write one sentence about the moon.",
            "List three colours.",
            "사주란 무엇인가요?",
            "Explain a natal chart in one line.",
        ]
        same, rows = 0, []
        for p in prompts:
            tc, n = chat(cuda, p, False)
            tp, _ = chat(cpu, p, False)
            ts, _ = chat(cuda, p, True)
            common = len(os.path.commonprefix([tc, tp]))
            rows.append({"prompt": p, "cuda": tc, "cpu": tp, "tokens": n,
                         "common_prefix_chars": common, "stream_equal": ts == tc})
            same += tc == tp
            check(f"stream == non-stream on cuda: {p[:24]}", ts == tc, {"chars": len(tc)})
        res["generation"] = rows
        res["generation_identical_cuda_cpu"] = f"{same}/{len(prompts)}"
        log("cuda vs cpu greedy identical:", res["generation_identical_cuda_cpu"])
    finally:
        for proc, _ in servers.values():
            proc.terminate()
        for proc, _ in servers.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    # 3. bench engine on each device
    for dev in ("cuda", "cpu"):
        cmd = [a.bin, "bench", "engine", "--device", a.device if dev == "cuda" else dev,
               "--gen-model", a.gguf,
               "--embed-model", a.minilm, "--streams", "1,4,8", "--max-tokens", "64",
               "--rounds", "1", "--json", "--data-dir", f"/tmp/sp-bench-{dev}"]
        if dev == "cpu":
            cmd += ["--threads", str(a.cpu_threads)]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
        log(f"bench engine {dev}: rc {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}")
        try:
            res[f"bench_engine_{dev}"] = json.loads(p.stdout)
        except json.JSONDecodeError:
            res[f"bench_engine_{dev}"] = {"rc": p.returncode, "stderr": p.stderr[-2000:]}
            check(f"bench engine {dev}", False, {"rc": p.returncode})

    res["ok"] = ok
    with open(os.path.join(a.out, "gpu_check.json"), "w") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
    log("ALL PASS" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
