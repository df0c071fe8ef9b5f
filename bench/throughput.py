#!/usr/bin/env python3
"""Corral against llama.cpp's own tools, same machine, same run, same threads and context.

For each model:
  - single stream: prompt tok/s on a 512-token prompt and decode tok/s (128 tokens), against
    llama-bench's pp512 and tg128;
  - time to first token of a 512-token prompt, against llama-server;
  - aggregate decode tok/s with 1, 4 and 8 concurrent streaming clients (128 tokens each), against
    llama-server -np 8 on the same load, and llama-batched-bench's decode speed with 1, 4 and 8
    sequences (no server, no sampling: what llama.cpp's kernels allow on this machine). Two
    figures from the same requests: over the whole time the clients waited (what a user sees, the
    prompts included), and steady (only while every client's answer was streaming: the window
    llama-batched-bench's decode figure measures, which leaves its prompts out);
  - second-turn time to first token of a chat with a 2,000-token history, with and without the
    prompt cache;
  - the longest pause of a streaming answer while another client's 1,500-token prompt is
    processed (chunked prompts against llama-server's default batch of 2,048);
  - cold load to first token, against starting llama-server with the same context and slots.

Corral runs with prompt lookup off (`draft_num_predict` 0), which is on by default: this compares
serving and batching over the same kernels, and lookup would add the answers' repetitions to
Corral's side. bench/speculative.sh measures drafting; bench/lookup_load.py what the default
costs or gains under load.

Both sides are measured in the same rounds (RUNS, default 3), taking turns at going first, and
the medians are printed: on a shared VM the machine's speed drifts by 10-20 % over minutes, which
would otherwise land on whichever side ran later.

Usage: throughput.py --corral BIN --peer DIR --threads N NAME=PATH.gguf [NAME=PATH.gguf ...]
Prints a table per model and the ratios; exits non-zero only if something failed to run.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CTX = 4096
# Corral's options in every request: greedy, and no drafting (see the module docs).
PLAIN = {"temperature": 0, "draft_num_predict": 0}
PARALLEL = 8
DECODE = 128
RUNS = int(os.environ.get("RUNS", "3"))
# About 512 tokens with both tokenizers (each run prints the real count).
PROMPT_WORDS = 490
# About 1,500 tokens: the prompt that arrives while another answer streams.
STALL_WORDS = 1430


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(url, body, timeout=900):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def metric(url, name):
    """The value of an unlabelled counter or gauge in a server's /metrics, 0 if absent."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def lines(response):
    """The JSON texts of a streamed response: NDJSON lines or server-sent `data:` events."""
    for raw in response:
        line = raw.decode().strip()
        if line.startswith("data: "):
            line = line[6:]
        if line and line != "[DONE]":
            yield line


def stamped(url, body, final):
    """Streams `body`; returns the arrival time of each token event and the token count that the
    last event reports. `final(event)` gives that count on the last event, None on the others."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    stamps = []
    with urllib.request.urlopen(req, timeout=900) as r:
        for line in lines(r):
            event = json.loads(line)
            count = final(event)
            if count is not None:
                return stamps, count
            stamps.append(time.perf_counter())
    raise RuntimeError("the stream ended without its last event")


def first_chunk(url, body, is_token):
    """Seconds from sending `body` to the first streamed line for which is_token(line) holds."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=900) as r:
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("data: "):
                line = line[6:]
            if line and is_token(line):
                return time.perf_counter() - start
    raise RuntimeError("no token came")


def longest_stall(url, body, is_token, interrupt):
    """Streams `body`; after its 5th token runs `interrupt()` (another request) and returns the
    longest gap, in seconds, between this stream's tokens while that request ran."""
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    stamps = []
    window = []
    done = threading.Event()

    def other():
        window.append(time.perf_counter())
        interrupt()
        window.append(time.perf_counter())
        done.set()

    with urllib.request.urlopen(req, timeout=900) as r:
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("data: "):
                line = line[6:]
            if not line or not is_token(line):
                continue
            stamps.append(time.perf_counter())
            if len(stamps) == 5:
                threading.Thread(target=other).start()
            if done.is_set() and stamps[-1] > window[1]:
                break
    done.wait()
    start, end = window
    inside = [t for t in stamps if t >= start] + [end]
    before = max(t for t in stamps if t < start)
    return max(b - a for a, b in zip([before] + inside, inside))


def wait_http(url, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def words(n, seed):
    """Text of roughly n tokens, different for each seed (so no cache helps)."""
    base = ("the quick brown fox jumps over the lazy dog while seven wizards quietly judge "
            "boxing matches in a small village near the river ").split()
    out = [f"seed{seed}"]
    i = seed
    while len(out) < n:
        out.append(base[i % len(base)])
        i += 7
    return " ".join(out)


class Corral:
    def __init__(self, binary, threads, parallel, gguf, name):
        self.tmp = tempfile.mkdtemp()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{self.port}", OLLAMA_MODELS=f"{self.tmp}/models",
                   HOME=self.tmp, CORRAL_NUM_THREAD=str(threads), OLLAMA_NUM_PARALLEL=str(parallel),
                   OLLAMA_CONTEXT_LENGTH=str(CTX), OLLAMA_KEEP_ALIVE="-1")
        self.env = env
        self.binary = binary
        self.proc = subprocess.Popen([binary, "serve"], env=env, stderr=subprocess.DEVNULL)
        wait_http(self.url)
        with open(f"{self.tmp}/Modelfile", "w") as f:
            f.write(f"FROM {gguf}\n")
        subprocess.run([binary, "create", name, "-f", f"{self.tmp}/Modelfile"], env=env, check=True,
                       stderr=subprocess.DEVNULL)
        self.name = name

    def generate(self, prompt, n, raw=True):
        return post(f"{self.url}/api/generate", {"model": self.name, "prompt": prompt, "raw": raw, "stream": False,
                                                  "options": {**PLAIN, "num_predict": n}})

    def decoded(self, prompt, n):
        """Tokens generated for a greedy completion of `prompt` with a budget of `n`."""
        return self.generate(prompt, n)["eval_count"]

    def streamed(self, prompt, n):
        """The arrival times of a streamed greedy completion's tokens, and how many there were."""
        body = {"model": self.name, "prompt": prompt, "raw": True, "options": {**PLAIN, "num_predict": n}}
        return stamped(f"{self.url}/api/generate", body, lambda e: e["eval_count"] if e.get("done") else None)

    def ttft(self, prompt):
        body = {"model": self.name, "prompt": prompt, "raw": True, "options": {**PLAIN, "num_predict": 2}}
        return first_chunk(f"{self.url}/api/generate", body, lambda l: json.loads(l).get("response"))

    def chat_ttft(self, messages):
        body = {"model": self.name, "messages": messages, "options": {**PLAIN, "num_predict": 8}}
        return first_chunk(f"{self.url}/api/chat", body, lambda l: json.loads(l)["message"].get("content"))

    def stall(self, long_prompt):
        body = {"model": self.name, "prompt": words(4, 77), "raw": True,
                "options": {**PLAIN, "num_predict": 100000}}
        return longest_stall(f"{self.url}/api/generate", body, lambda l: json.loads(l).get("response"),
                             lambda: self.generate(long_prompt, 1))

    def unload(self):
        post(f"{self.url}/api/generate", {"model": self.name, "keep_alive": 0})
        time.sleep(0.5)

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        # The models directory holds a copy of each model: 1.5 GB a server for the bench pair.
        shutil.rmtree(self.tmp, ignore_errors=True)


class LlamaServer:
    def __init__(self, bindir, threads, parallel, gguf, extra=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [f"{bindir}/llama-server", "-m", gguf, "-t", str(threads), "-tb", str(threads), "-c", str(CTX * parallel),
             "-np", str(parallel), "--port", str(self.port), "--no-webui", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"{self.url}/health")

    def complete(self, prompt, n, cache=False):
        r = post(f"{self.url}/completion", {"prompt": prompt, "n_predict": n, "temperature": 0, "cache_prompt": cache})
        return r

    def decoded(self, prompt, n):
        return self.complete(prompt, n)["tokens_predicted"]

    def streamed(self, prompt, n):
        body = {"prompt": prompt, "n_predict": n, "temperature": 0, "stream": True, "cache_prompt": False}
        return stamped(f"{self.url}/completion", body, lambda e: e["tokens_predicted"] if e.get("stop") else None)

    def ttft(self, prompt, cache=False):
        body = {"prompt": prompt, "n_predict": 2, "temperature": 0, "stream": True, "cache_prompt": cache}
        return first_chunk(f"{self.url}/completion", body, lambda l: json.loads(l).get("content"))

    def stall(self, long_prompt):
        body = {"prompt": words(4, 77), "n_predict": 100000, "temperature": 0, "stream": True}
        return longest_stall(f"{self.url}/completion", body, lambda l: json.loads(l).get("content"),
                             lambda: self.complete(long_prompt, 1))

    def close(self):
        self.proc.terminate()
        self.proc.wait()


def llama_bench(bindir, threads, gguf):
    out = subprocess.run([f"{bindir}/llama-bench", "-m", gguf, "-t", str(threads), "-p", "512", "-n", str(DECODE),
                          "-r", "1", "-o", "json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    pp = next(r["avg_ts"] for r in rows if r["n_prompt"] == 512 and r["n_gen"] == 0)
    tg = next(r["avg_ts"] for r in rows if r["n_gen"] == DECODE and r["n_prompt"] == 0)
    return pp, tg


def batched_bench(bindir, threads, gguf):
    """llama-batched-bench's decode tok/s (S_TG) for 1, 4 and 8 sequences of 16 + DECODE tokens."""
    out = subprocess.run([f"{bindir}/llama-batched-bench", "-m", gguf, "-t", str(threads), "-c", str(CTX * PARALLEL),
                          "-npp", "16", "-ntg", str(DECODE), "-npl", "1,4,8", "--output-format", "jsonl"],
                         capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["pl"]: r["speed_tg"] for r in rows}


def counting(seed):
    """A prompt of the aggregate runs, different for each seed: a few words, then the start of a
    count. With the words alone, SmolLM2's greedy answer ended before DECODE tokens in 5 of 39
    requests (1 of 39 with the count), and a sequence that ends leaves the batch, so the steps after
    decode fewer sequences than llama-batched-bench's, which all run DECODE tokens."""
    return words(6, seed) + ". Count: 1, 2, 3, 4, 5,"


SHORT = []  # (server, clients, tokens) of every aggregate request that ended before DECODE tokens


def aggregate(run_one, clients, who=""):
    """Generated tokens per second with `clients` concurrent streaming requests of DECODE tokens
    (`run_one(i)` gives request i's token arrival times and count), as two figures:

    - overall: all tokens over the time from sending the requests to the last one's end;
    - steady: the tokens that arrived while every answer was streaming (from the last first
      token to the first last token) over that window's length.
    """
    results = [None] * clients

    def worker(i):
        results[i] = run_one(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    counts = [n for _, n in results]
    SHORT.extend((who, clients, n) for n in counts if n < DECODE)
    first = max(s[0] for s, _ in results)
    last = min(s[-1] for s, _ in results)
    inside = sum(1 for s, _ in results for t in s if first < t <= last)
    return sum(counts) / elapsed, inside / (last - first)


def history(turns_tokens=2000):
    """A chat of about `turns_tokens` tokens of history."""
    msgs = [{"role": "system", "content": "You are a helpful assistant."}]
    i = 0
    while sum(len(m["content"].split()) for m in msgs) * 1.3 < turns_tokens:
        msgs.append({"role": "user", "content": words(120, 1000 + i)})
        msgs.append({"role": "assistant", "content": words(120, 2000 + i)})
        i += 1
    msgs.append({"role": "user", "content": "Summarise the conversation in one sentence."})
    return msgs


def med(xs):
    return statistics.median(xs)


def bench_model(args, name, gguf):
    """Corral and the peer, measure by measure, alternating which goes first in each round, so a
    machine whose speed drifts over minutes (a shared VM) biases neither side."""
    t = args.threads
    print(f"\n== {name} ({os.path.basename(gguf)}), {t} threads, context {CTX}, {RUNS} rounds", flush=True)
    aggs = [f"{kind}{c}" for kind in ("agg", "steady") for c in (1, 4, 8)]
    ours = {k: [] for k in ("pp", "tg", "ttft", "stall", "cold", "cached", "uncached", *aggs)}
    theirs = {k: [] for k in ("pp", "tg", "ttft", "stall", "cold", "bb1", "bb4", "bb8", *aggs)}
    corral = Corral(args.corral, t, PARALLEL, gguf, name)
    peer = LlamaServer(args.peer, t, PARALLEL, gguf)
    n_prompt = 0
    chat = history()
    try:
        corral.generate("warm up", 1)
        peer.complete("warm up", 1)
        for s in range(RUNS):
            def corral_single():
                nonlocal n_prompt
                r = corral.generate(words(PROMPT_WORDS, s), 1)
                n_prompt = r["prompt_eval_count"]
                ours["pp"].append(r["prompt_eval_count"] / r["prompt_eval_duration"] * 1e9)
                r = corral.generate(words(4, 50 + s), DECODE)
                ours["tg"].append(r["eval_count"] / r["eval_duration"] * 1e9)

            def peer_single():
                pp, tg = llama_bench(args.peer, t, gguf)
                theirs["pp"].append(pp)
                theirs["tg"].append(tg)
                for c, v in batched_bench(args.peer, t, gguf).items():
                    theirs[f"bb{c}"].append(v)

            def served(server, out):
                out["ttft"].append(server.ttft(words(PROMPT_WORDS, 100 + 10 * s)))
                for c in (1, 4, 8):
                    overall, steady = aggregate(
                        lambda i, c=c: server.streamed(counting(300 + 10 * c + i + 100 * s), DECODE), c,
                        "corral" if server is corral else "peer")
                    out[f"agg{c}"].append(overall)
                    out[f"steady{c}"].append(steady)
                out["stall"].append(server.stall(words(STALL_WORDS, 500 + s)))

            pairs = [(corral_single, peer_single), (lambda: served(corral, ours), lambda: served(peer, theirs))]
            for first, second in pairs:
                if s % 2:
                    first, second = second, first
                first()
                second()

            msgs = [dict(m) for m in chat]
            msgs[1]["content"] = f"run{s} " + msgs[1]["content"]
            # The first turn, read to its end as a chat client does, leaves the history in a slot.
            post(f"{corral.url}/api/chat", {"model": corral.name, "messages": msgs, "stream": False,
                                            "options": {**PLAIN, "num_predict": 8}})
            nxt = msgs + [{"role": "assistant", "content": "Done."}, {"role": "user", "content": "Thanks. One more?"}]
            ours["cached"].append(corral.chat_ttft(nxt))
            fresh = [dict(m) for m in nxt]
            fresh[1]["content"] = f"fresh{s} " + fresh[1]["content"]
            ours["uncached"].append(corral.chat_ttft(fresh))
        peer.close()
        for s in range(RUNS):
            def corral_cold():
                corral.unload()
                start = time.perf_counter()
                corral.generate(f"cold {s}", 1)
                ours["cold"].append(time.perf_counter() - start)

            def peer_cold():
                start = time.perf_counter()
                p = LlamaServer(args.peer, t, PARALLEL, gguf)
                p.complete(f"cold {s}", 1)
                theirs["cold"].append(time.perf_counter() - start)
                p.close()

            for f in ((corral_cold, peer_cold) if s % 2 == 0 else (peer_cold, corral_cold)):
                f()
    finally:
        corral.close()
        peer.close()

    m = {k: med(v) for k, v in ours.items()}
    p = {k: med(v) for k, v in theirs.items()}
    rows = [
        ("prompt tok/s (%d-token prompt)" % n_prompt, m["pp"], p["pp"], "llama-bench pp512"),
        ("decode tok/s (%d tokens)" % DECODE, m["tg"], p["tg"], "llama-bench tg%d" % DECODE),
        ("time to first token, s (lower is better)", m["ttft"], p["ttft"], "llama-server"),
        ("aggregate decode tok/s, 1 client", m["agg1"], p["agg1"], "llama-server -np 8"),
        ("aggregate decode tok/s, 4 clients", m["agg4"], p["agg4"], "llama-server -np 8"),
        ("aggregate decode tok/s, 8 clients", m["agg8"], p["agg8"], "llama-server -np 8"),
        ("aggregate decode tok/s, 1 sequence, no server", m["agg1"], p["bb1"], "llama-batched-bench"),
        ("aggregate decode tok/s, 4 sequences, no server", m["agg4"], p["bb4"], "llama-batched-bench"),
        ("aggregate decode tok/s, 8 sequences, no server", m["agg8"], p["bb8"], "llama-batched-bench"),
        ("steady decode tok/s, 1 client", m["steady1"], p["steady1"], "llama-server -np 8"),
        ("steady decode tok/s, 4 clients", m["steady4"], p["steady4"], "llama-server -np 8"),
        ("steady decode tok/s, 8 clients", m["steady8"], p["steady8"], "llama-server -np 8"),
        ("steady decode tok/s, 1 sequence, no server", m["steady1"], p["bb1"], "llama-batched-bench"),
        ("steady decode tok/s, 4 sequences, no server", m["steady4"], p["bb4"], "llama-batched-bench"),
        ("steady decode tok/s, 8 sequences, no server", m["steady8"], p["bb8"], "llama-batched-bench"),
        ("stream pause while a 1,500-token prompt arrives, s", m["stall"], p["stall"], "llama-server -np 8"),
        ("cold load to first token, s (lower is better)", m["cold"], p["cold"], "llama-server -np 8 start"),
    ]
    print(f"{'measure':48} {'corral':>10} {'peer':>10} {'ratio':>7}  peer")
    for label, a, b, who in rows:
        print(f"{label:48} {a:10.3f} {b:10.3f} {a / b:7.2f}  {who}")
    print(f"{'second turn TTFT, 2,000-token history, cached, s':48} {m['cached']:10.3f}")
    print(f"{'second turn TTFT, same history, uncached, s':48} {m['uncached']:10.3f}")
    print(f"cached / uncached second-turn TTFT: {m['cached'] / m['uncached']:.3f} (goal <= 0.2)")
    print(f"8-client aggregate / single-stream decode: {m['agg8'] / m['tg']:.2f} (goal >= 2.5)")
    print(f"llama.cpp's own 8-sequence / 1-sequence decode on this machine: {p['bb8'] / p['bb1']:.2f}")
    short = [f"{who} {n} tokens ({c} clients)" for who, c, n in SHORT]
    print(f"aggregate requests that ended before {DECODE} tokens: {', '.join(short) or 'none'}")
    SHORT.clear()
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corral", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    for spec in args.models:
        name, path = spec.split("=", 1)
        bench_model(args, name, path)


if __name__ == "__main__":
    main()
