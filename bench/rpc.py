#!/usr/bin/env python3
"""One model over two hosts: Corral (CORRAL_RPC_SERVERS) against llama-server (--rpc), with the
same two `corral rpc` peers, same model, same prompts, in alternating rounds; and Corral with the
model on its own CPU, for the cost of the hop. Run by bench/rpc.sh.

Each measurement is one streamed request of an 880-token prompt and 64 generated tokens (greedy,
no drafting), timed by the client the same way for both servers: prefill is the prompt's tokens
over the time to the first token, decode the tokens after it over the time they took, and the
whole request's time. (The servers' own figures split the same time differently: over RPC the
first single-token step after a long prompt costs about 0.7 s, which Corral's eval_duration
counts and llama-server's prompt timing does.) A peer serves one
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


def stamps(url, body, token_in):
    """Times, from the request, at which the streamed lines carrying a token arrived; and the
    last line."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    start = time.monotonic()
    out, last = [], None
    for raw in urllib.request.urlopen(req, timeout=900):
        line = raw.decode().strip()
        if line.startswith("data: "):
            line = line[len("data: "):]
        if not line or line == "[DONE]":
            continue
        last = json.loads(line)
        if token_in(last):
            out.append(time.monotonic() - start)
    return out, last


def rates(times, prompt_tokens):
    """Prefill (the prompt's tokens over the time to the first token), steady decode (tokens
    after the first over the time they took) and the whole request, as the client saw them."""
    return prompt_tokens / times[0], (len(times) - 1) / (times[-1] - times[0]), times[-1]


def corral_round(corral, model, endpoints, models_dir, num_gpu):
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=models_dir,
               CORRAL_NUM_THREAD="1", OLLAMA_CONTEXT_LENGTH="2048", OLLAMA_NUM_PARALLEL="1",
               CORRAL_RPC_SERVERS=",".join(endpoints) if num_gpu != 0 else "")
    proc = subprocess.Popen([corral, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/api/version")
        # Again each round: the blob is there after the first, so this only writes the manifest.
        with tempfile.NamedTemporaryFile("w", suffix=".Modelfile", delete=False) as f:
            f.write(f"FROM {model}\n")
        subprocess.run([corral, "create", "m", "-f", f.name], env=env, check=True, capture_output=True)
        opts = {"temperature": 0, "num_predict": DECODE, "draft_num_predict": 0, "num_gpu": num_gpu}
        post(f"{base}/api/generate", {"model": "m", "prompt": "Hi", "raw": True, "stream": False, "options": opts})
        times, last = stamps(f"{base}/api/generate", {"model": "m", "prompt": PROMPT, "raw": True, "options": opts},
                             lambda m: bool(m.get("response")))
        n = last["prompt_eval_count"]
        return (*rates(times, n), n)
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
        times, last = stamps(f"{base}/completion", dict(body, prompt=PROMPT, stream=True),
                             lambda m: bool(m.get("content")))
        n = last["timings"]["prompt_n"]
        return (*rates(times, n), n)
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
                prefill, decode, wall, n = run()
                rows[name].append((prefill, decode, wall))
                print(f"round {r + 1} {name:13} prefill {prefill:7.1f} tok/s ({n} tokens)  decode {decode:6.1f} tok/s"
                      f"  request {wall:5.2f} s", flush=True)
    finally:
        for p in procs:
            p.kill()
    med = {k: tuple(statistics.median(row[i] for row in v) for i in range(3)) for k, v in rows.items()}
    for k, (p, d, w) in med.items():
        print(f"median {k:13} prefill {p:7.1f} tok/s  decode {d:6.1f} tok/s  request {w:5.2f} s")
    c, l, a = med["corral"], med["llama-server"], med["corral alone"]
    print(f"corral/llama-server over two hosts: prefill {c[0] / l[0]:.2f}x  decode {c[1] / l[1]:.2f}x  "
          f"whole request {l[2] / c[2]:.2f}x as fast")
    print(f"two hosts / one (Corral): prefill {c[0] / a[0]:.2f}x  decode {c[1] / a[1]:.2f}x  "
          f"whole request {a[2] / c[2]:.2f}x as fast")


if __name__ == "__main__":
    main()
