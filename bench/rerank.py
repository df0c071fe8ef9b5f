#!/usr/bin/env python3
"""Reranking through Corral against llama.cpp's llama-server (issue 29).

    bench/rerank.py --corral target/release/corral --llama-server BIN/llama-server \
        --bert BERT.gguf --xlmr-dir XLMR_DIR --xlmr XLMR.gguf [--rounds 3]

For each reranker, the same query and documents go to llama-server's `/v1/rerank` (started with
`--rerank`, one thread, enough slots for every document at once) and to Corral's (`num_thread` 1):
every document's score must agree within 1e-4, with all documents in one request and with each
alone. Then both answer the same request in alternating rounds and the median time per request is
compared (Corral's over llama-server's).
"""
import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

QUERY = "what is a panda?"
DOCUMENTS = [
    "hi",
    "it is a bear",
    "The giant panda (Ailuropoda melanoleuca) is a bear species endemic to China.",
    "Pandas eat bamboo for most of the day, and sleep the rest of it.",
    "The stock market fell sharply on Tuesday.",
    "日本 panda",
]
TOLERANCE = 1e-4


def post(port, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        sys.exit(f"{path} on port {port}: {resp.status} {data[:300]!r}")
    return json.loads(data)


def scores(port, model, documents=DOCUMENTS):
    body = {"model": model, "query": QUERY, "documents": documents, "top_n": len(documents)}
    results = post(port, "/v1/rerank", body)["results"]
    return [s for _, s in sorted((r["index"], r["relevance_score"]) for r in results)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_server(binary, model):
    port = free_port()
    # Eight slots, so that all the documents are scored in one batch as Corral scores them: in
    # llama.cpp a sequence's score moves (by up to a few per cent with random weights) with the
    # other sequences of its batch, on both sides.
    proc = subprocess.Popen([binary, "-m", model, "--rerank", "-t", "1", "-tb", "1", "-c", "4096", "-np", "8",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    sys.exit("llama-server did not start")


def corral_serve(corral, tmp):
    env = dict(os.environ, OLLAMA_HOST="127.0.0.1:0", OLLAMA_MODELS=os.path.join(tmp, "models"), HOME=tmp,
               NO_COLOR="1")
    proc = subprocess.Popen([corral, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"Listening on \S+:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, int(m.group(1)), env
    sys.exit("corral serve did not start")


def create(corral, env, port, name, source, tmp):
    modelfile = os.path.join(tmp, name + ".modelfile")
    with open(modelfile, "w") as f:
        f.write(f"FROM {source}\nPARAMETER num_thread 1\n")
    env = dict(env, OLLAMA_HOST=f"127.0.0.1:{port}")
    subprocess.run([corral, "create", name, "-f", modelfile], env=env, check=True, capture_output=True)


def timed(port, model):
    start = time.monotonic()
    scores(port, model)
    return time.monotonic() - start


def main():
    p = argparse.ArgumentParser()
    for flag in ("--corral", "--llama-server", "--bert", "--xlmr-dir", "--xlmr"):
        p.add_argument(flag, required=True)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        corral, port, env = corral_serve(a.corral, tmp)
        try:
            create(a.corral, env, port, "bert-reranker", a.bert, tmp)
            create(a.corral, env, port, "xlmr-reranker", a.xlmr_dir, tmp)
            for name, gguf in (("bert-reranker", a.bert), ("xlmr-reranker", a.xlmr)):
                server, sport = llama_server(a.llama_server, gguf)
                try:
                    ours, theirs = scores(port, name), scores(sport, "x")
                    alone = [(scores(port, name, [d])[0], scores(sport, "x", [d])[0]) for d in DOCUMENTS]
                    worst_alone = max(abs(x - y) for x, y in alone)
                    failed |= worst_alone > TOLERANCE
                    print(f"{name}: one document per request: largest difference {worst_alone:.2e}")
                    worst = max(abs(x - y) for x, y in zip(ours, theirs))
                    same = len(ours) == len(theirs) and worst <= TOLERANCE
                    failed |= not same
                    print(f"{name}: all documents in one request: scores {'agree' if same else 'DIFFER'} "
                          f"(largest difference {worst:.2e}, "
                          f"tolerance {TOLERANCE:g})")
                    for d, x, y in zip(DOCUMENTS, ours, theirs):
                        print(f"  corral {x:+.6f}  llama-server {y:+.6f}  {d[:48]!r}")
                    ours_t, theirs_t = [], []
                    for _ in range(a.rounds):
                        ours_t.append(timed(port, name))
                        theirs_t.append(timed(sport, "x"))
                    o, t = statistics.median(ours_t) * 1e3, statistics.median(theirs_t) * 1e3
                    print(f"  time per request ({a.rounds} rounds, alternating, median): corral {o:.1f} ms, "
                          f"llama-server {t:.1f} ms, ratio {o / t:.2f}")
                finally:
                    server.kill()
        finally:
            corral.kill()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
