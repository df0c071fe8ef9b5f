#!/usr/bin/env python3
"""One model over two hosts: Corral (CORRAL_RPC_SERVERS) against llama-server (--rpc), with the
same two `corral rpc` peers, same model, same prompts, in alternating rounds; and Corral with the
model on its own CPU, for the cost of the hop. Run by bench/rpc.sh.

Each measurement is one request of a ~500-token prompt and 64 generated tokens (greedy, no
drafting): prefill tok/s and decode tok/s as each server reports them (Ollama's
prompt_eval_count/duration and eval_count/duration; llama-server's timings). A peer serves one
client at a time, so only one server runs at once.

Usage: rpc.py CORRAL LLAMA_SERVER MODEL.gguf ROUNDS
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

DECODE = 64
PROMPT = " ".join(f"word{i % 97} and the river number {i}" for i in range(90))


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=900).read())


def wait_http(url, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"{url} did not answer")


def peers(corral):
    procs, endpoints = [], []
    for ip in ("127.0.0.2", "127.0.0.3"):
        endpoint = f"{ip}:{free_port(ip)}"
        procs.append(subprocess.Popen([corral, "rpc", "--listen", endpoint, "--threads", "1"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        endpoints.append(endpoint)
    for endpoint in endpoints:
        host, port = endpoint.split(":")
        for _ in range(100):
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
    return procs, endpoints


def corral_round(corral, model, endpoints, models_dir, num_gpu):
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=models_dir,
               CORRAL_NUM_THREAD="1", OLLAMA_CONTEXT_LENGTH="2048", OLLAMA_NUM_PARALLEL="1",
               CORRAL_RPC_SERVERS=",".join(endpoints) if num_gpu != 0 else "")
    proc = subprocess.Popen([corral, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/version")
        if not os.path.exists(os.path.join(models_dir, "manifests")):
            with tempfile.NamedTemporaryFile("w", suffix=".Modelfile", delete=False) as f:
                f.write(f"FROM {model}\n")
            subprocess.run([corral, "create", "m", "-f", f.name], env=env, check=True, capture_output=True)
        opts = {"temperature": 0, "num_predict": DECODE, "draft_num_predict": 0, "num_gpu": num_gpu}
        post(f"{base}/api/generate", {"model": "m", "prompt": "Hi", "raw": True, "stream": False, "options": opts})
        v = post(f"{base}/api/generate", {"model": "m", "prompt": PROMPT, "raw": True, "stream": False, "options": opts})
        return (v["prompt_eval_count"] / v["prompt_eval_duration"] * 1e9, v["eval_count"] / v["eval_duration"] * 1e9,
                v["prompt_eval_count"])
    finally:
        proc.terminate()
        proc.wait()


def llama_round(server, model, endpoints):
    port = free_port()
    proc = subprocess.Popen([server, "-m", model, "--rpc", ",".join(endpoints), "-ngl", "99", "-t", "1", "-c", "2048",
                             "-np", "1", "--port", str(port), "--host", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        body = {"prompt": "Hi", "n_predict": DECODE, "temperature": 0, "cache_prompt": False}
        post(f"{base}/completion", body)
        t = post(f"{base}/completion", dict(body, prompt=PROMPT))["timings"]
        return t["prompt_per_second"], t["predicted_per_second"], t["prompt_n"]
    finally:
        proc.terminate()
        proc.wait()


def main():
    corral, server, model, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    procs, endpoints = peers(corral)
    models_dir = tempfile.mkdtemp()
    rows = {"corral": [], "llama-server": [], "corral alone": []}
    try:
        for r in range(rounds):
            order = [("corral", lambda: corral_round(corral, model, endpoints, models_dir, -1)),
                     ("llama-server", lambda: llama_round(server, model, endpoints))]
            if r % 2:
                order.reverse()
            order.append(("corral alone", lambda: corral_round(corral, model, endpoints, models_dir, 0)))
            for name, run in order:
                prefill, decode, n = run()
                rows[name].append((prefill, decode))
                print(f"round {r + 1} {name:13} prefill {prefill:7.1f} tok/s ({n} tokens)  decode {decode:6.1f} tok/s",
                      flush=True)
    finally:
        for p in procs:
            p.kill()
    med = {k: (statistics.median(p for p, _ in v), statistics.median(d for _, d in v)) for k, v in rows.items()}
    for k, (p, d) in med.items():
        print(f"median {k:13} prefill {p:7.1f} tok/s  decode {d:6.1f} tok/s")
    c, l, a = med["corral"], med["llama-server"], med["corral alone"]
    print(f"corral/llama-server over two hosts: prefill {c[0] / l[0]:.2f}x  decode {c[1] / l[1]:.2f}x")
    print(f"two hosts / one (Corral): prefill {c[0] / a[0]:.2f}x  decode {c[1] / a[1]:.2f}x")


if __name__ == "__main__":
    main()
