#!/usr/bin/env python3
"""Measures a running Corral server for bench/gpu-check.sh (standard library only).

    gpu_measure.py placement NAME              load NAME, print /api/ps's size, size_vram, PROCESSOR
    gpu_measure.py agree NAME TOKENS           greedy text with num_gpu 0 vs on the GPU: matching tokens
    gpu_measure.py single NAME TOKENS RUNS     one stream's decode tok/s (median of RUNS)
    gpu_measure.py streams NAME N TOKENS       aggregate decode tok/s of N concurrent streams

OLLAMA_HOST gives the server (default 127.0.0.1:11434). Prompts are raw text: the random-weight
models have no chat template. Aggregate decode is read while all N streams generate: the tokens
produced between the moment the last stream produced its first token and the moment the first
stream ended, over that time (the steady state llama-batched-bench's decode phase measures).
"""
import json
import os
import statistics
import sys
import threading
import time
import urllib.request

HOST = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")


def post(path, body, stream=False):
    req = urllib.request.Request(f"http://{HOST}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    resp = urllib.request.urlopen(req, timeout=600)
    if stream:
        return resp
    return json.loads(resp.read())


def get(path):
    return json.loads(urllib.request.urlopen(f"http://{HOST}{path}", timeout=60).read())


def generate(name, prompt, tokens, options=None, on_chunk=None):
    # Prompt lookup off unless asked: decode figures are compared with llama-bench's.
    opts = {"temperature": 0, "num_predict": tokens, "seed": 1, "draft_num_predict": 0}
    opts.update(options or {})
    body = {"model": name, "prompt": prompt, "raw": True, "stream": True, "options": opts}
    chunks, last = [], None
    for line in post("/api/generate", body, stream=True):
        msg = json.loads(line)
        if "error" in msg:
            raise RuntimeError(msg["error"])
        if msg.get("response"):
            chunks.append(msg["response"])
            if on_chunk:
                on_chunk(time.monotonic())
        if msg.get("done"):
            last = msg
    return chunks, last


def placement(name):
    generate(name, "Hello", 1)
    for m in get("/api/ps")["models"]:
        if m["name"].split(":")[0] == name.split(":")[0]:
            size, vram = m["size"], m["size_vram"]
            print(f"placement {name}: size {size / 2**30:.2f} GiB, size_vram {vram / 2**30:.2f} GiB")
            return
    sys.exit(f"{name} is not loaded")


def agree(name, tokens):
    prompt = "The history of the city begins with"
    cpu, _ = generate(name, prompt, tokens, {"num_gpu": 0})
    gpu, _ = generate(name, prompt, tokens)
    same = 0
    for a, b in zip(cpu, gpu):
        if a != b:
            break
        same += 1
    print(f"agreement {name}: {same}/{min(len(cpu), len(gpu))} greedy tokens identical CPU vs GPU "
          f"(CPU {len(cpu)}, GPU {len(gpu)} tokens)")


def single(name, tokens, runs):
    rates = []
    for i in range(runs):
        _, done = generate(name, f"Run {i}: once upon a time", tokens)
        rates.append(done["eval_count"] / done["eval_duration"] * 1e9)
    print(f"single {name}: decode {statistics.median(rates):.1f} tok/s (runs: "
          + ", ".join(f"{r:.1f}" for r in rates) + ")")
    return statistics.median(rates)


def streams(name, n, tokens):
    times = [[] for _ in range(n)]
    errors = []

    def run(i):
        try:
            generate(name, f"Stream {i:02d}: a story about the sea", tokens, on_chunk=times[i].append)
        except Exception as e:  # reported below
            errors.append(str(e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"streams {name}: {len(errors)} failed: {errors[0]}")
    start = max(t[0] for t in times)
    end = min(t[-1] for t in times)
    inside = sum(1 for ts in times for t in ts if start < t <= end)
    rate = inside / (end - start) if end > start else float("nan")
    total = sum(len(t) for t in times)
    print(f"streams {name}: {n} streams, {total} tokens, steady-state aggregate decode {rate:.1f} tok/s "
          f"over {end - start:.2f} s")
    return rate


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "placement":
        placement(args[0])
    elif cmd == "agree":
        agree(args[0], int(args[1]))
    elif cmd == "single":
        single(args[0], int(args[1]), int(args[2]))
    elif cmd == "streams":
        streams(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(__doc__)
