#!/usr/bin/env python3
"""Load time of a published-layout model against llama.cpp's layout (issue 28).

    bench/compat_load.py --corral target/release/corral --reference REF.gguf --published PUB.gguf

Starts `corral serve` on a fresh models directory, creates `ref` and `pub` from the two files
(each blob stored as it is), then alternates: load one (a one-token answer), read the server's
`load_duration`, unload it (`keep_alive: 0`), load the other. Both files are read once before
timing, so the page cache holds both. Prints each round, the medians and their ratio, and the
bytes in the models directory beyond the two blobs (the translation writes none).
"""
import argparse
import hashlib
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def request(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    conn.request(method, path, data)
    resp = conn.getresponse()
    text = resp.read()
    if resp.status >= 300:
        sys.exit(f"{method} {path}: {resp.status} {text[:300]!r}")
    return json.loads(text) if text.strip().startswith(b"{") else {}


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--corral", required=True)
    p.add_argument("--reference", required=True)
    p.add_argument("--published", required=True)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = os.path.join(tmp, "models")
        env = dict(os.environ, OLLAMA_HOST="127.0.0.1:0", OLLAMA_MODELS=models, HOME=tmp,
                   CORRAL_NUM_THREAD="1", NO_COLOR="1")
        server = subprocess.Popen([a.corral, "serve"], env=env, stderr=subprocess.PIPE, text=True)
        port = None
        for line in server.stderr:
            m = re.search(r"Listening on \S+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            sys.exit("the server did not start")
        # Its log must keep flowing, or the server blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        try:
            blobs = {}
            for name, path in (("ref", a.reference), ("pub", a.published)):
                d = digest(path)
                with open(path, "rb") as f:
                    request(port, "POST", f"/api/blobs/{d}", f.read())
                request(port, "POST", "/api/create", {"model": name, "files": {"model.gguf": d}, "stream": False})
                blobs[name] = d
            times = {"ref": [], "pub": []}
            for r in range(a.rounds + 1):
                for name in ("ref", "pub") if r % 2 == 0 else ("pub", "ref"):
                    v = request(port, "POST", "/api/generate",
                                {"model": name, "prompt": "Hi", "raw": True, "stream": False,
                                 "options": {"num_ctx": 512, "num_predict": 1}})
                    request(port, "POST", "/api/generate", {"model": name, "keep_alive": 0, "stream": False})
                    time.sleep(0.5)
                    if r > 0:  # round 0 warms the page cache
                        times[name].append(v["load_duration"] / 1e6)
                if r > 0:
                    print(f"round {r}: ref {times['ref'][-1]:.1f} ms, pub {times['pub'][-1]:.1f} ms")
            ref, pub = statistics.median(times["ref"]), statistics.median(times["pub"])
            print(f"median load: llama.cpp layout {ref:.1f} ms, published layout {pub:.1f} ms, ratio {pub / ref:.3f}")
            blob_bytes = sum(os.path.getsize(os.path.join(models, "blobs", d.replace(":", "-"))) for d in blobs.values())
            total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(models) for f in files)
            small = total - blob_bytes
            print(f"models directory: {total} bytes, of which the two weight blobs {blob_bytes}; "
                  f"the rest (manifests, configs, key) {small} bytes")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
