#!/usr/bin/env python3
"""What serving costs per token and per request, measured on a model so small that the kernels
take almost no time (issue 15): a random-weight GGUF of the `tiny` shape (bench/random_gguf.py).

For Corral (/api/generate, streamed and not) and llama-server (/completion, the same), one client,
greedy, the same raw prompt:

- per-token cost: the extra wall time of a long answer over a one-token answer, per extra token,
  minus the engine's own decode time per token (what the runner or llama-server reports), i.e.
  what the way out costs for each token: runner socket, server, HTTP;
- per-request cost: the wall time of a one-token answer minus the prompt time the engine reports.

At 1,000 tokens a second (a 0.5B model on the GPU machine) a token has 1 ms in all; the per-token
cost is what it loses of that. Medians over RUNS rounds that alternate between the two servers.

    python3 bench/overhead.py --corral target/release/corral --peer BIN --model tiny.gguf
"""

import argparse
import json
import time
import urllib.request

from throughput import Corral, LlamaServer, med, post

RUNS = 5
LONG = 1024
PROMPT = "Once upon a time there was a"


def timed_stream(url, body):
    """Wall seconds of a streamed request and its last JSON line."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    start = time.perf_counter()
    last = None
    with urllib.request.urlopen(req, timeout=600) as r:
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("data: "):
                line = line[6:]
            if line and line != "[DONE]":
                last = json.loads(line)
    return time.perf_counter() - start, last


def timed(url, body, stream):
    """Wall seconds of a request, streamed or not, and its (last) JSON object."""
    if stream:
        return timed_stream(url, body)
    start = time.perf_counter()
    r = post(url, body)
    return time.perf_counter() - start, r


def corral_once(c, n, stream):
    """(wall s, tokens, engine decode s, engine prompt s) of one request for n tokens."""
    body = {"model": c.name, "prompt": PROMPT, "raw": True, "stream": stream,
            "options": {"temperature": 0, "num_predict": n, "seed": 1, "draft_num_predict": 0}}
    wall, r = timed(f"{c.url}/api/generate", body, stream)
    return wall, r["eval_count"], r["eval_duration"] / 1e9, r["prompt_eval_duration"] / 1e9


def peer_once(s, n, stream):
    body = {"prompt": PROMPT, "n_predict": n, "temperature": 0, "cache_prompt": False, "ignore_eos": True,
            "stream": stream}
    wall, r = timed(f"{s.url}/completion", body, stream)
    t = r["timings"]
    return wall, t["predicted_n"], t["predicted_ms"] / 1e3, t["prompt_ms"] / 1e3


def measure(once, stream):
    """(per-token cost s, engine s per token, per-request cost s, tokens of the long answer)."""
    short = once(1, stream)
    long = once(LONG, stream)
    extra_tokens = long[1] - short[1]
    if extra_tokens < 16:
        raise RuntimeError(f"the long answer ended after {long[1]} tokens: too few to measure")
    engine = long[2] / long[1]
    per_token = (long[0] - short[0]) / extra_tokens - engine
    return per_token, engine, short[0] - short[3], long[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corral", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    corral = Corral(args.corral, args.threads, 1, args.model, "tiny")
    peer = LlamaServer(args.peer, args.threads, 1, args.model)
    systems = {"corral": lambda n, s: corral_once(corral, n, s), "llama-server": lambda n, s: peer_once(peer, n, s)}
    rows = {}
    try:
        for once in systems.values():  # warm-up: load, first allocations
            once(8, False)
        for rnd in range(RUNS):
            order = list(systems.items()) if rnd % 2 == 0 else list(reversed(systems.items()))
            for name, once in order:
                for stream in (False, True):
                    rows.setdefault((name, stream), []).append(measure(once, stream))
    finally:
        corral.close()
        peer.close()
    print(f"{'system':14} {'stream':6} {'engine us/tok':>14} {'way out us/tok':>15} {'request ms':>11} "
          f"{'tokens':>7} {'tok/s at 1 ms':>14}")
    for (name, stream), r in rows.items():
        per_token = med([x[0] for x in r])
        engine = med([x[1] for x in r])
        request = med([x[2] for x in r])
        tokens = med([x[3] for x in r])
        # What a model whose kernels take 1 ms a token would decode at through this way out.
        print(f"{name:14} {str(stream):6} {engine * 1e6:14.0f} {per_token * 1e6:15.0f} {request * 1e3:11.1f} "
              f"{tokens:7.0f} {1 / (1e-3 + max(per_token, 0)):14.0f}")


if __name__ == "__main__":
    main()
