#!/usr/bin/env python3
"""Load harness (issue 13): many concurrent clients against one `corral serve`, for a bounded time.

    bench/load.py --corral target/release/corral --models ~/.cache/corral/test-models \
        [--clients 64] [--seconds 60]

Starts a server on a free loopback port with a fresh models directory, creates two models
(SmolLM2-135M for chat and generate, all-MiniLM-L6-v2 for embeddings), warms them, then runs
`--clients` threads for `--seconds`, each looping over a weighted mix: native chat and generate
(streamed and not), embeddings, OpenAI chat completions (streamed and not), Anthropic messages,
`tags`/`show`/`ps`, and clients that hang up mid-stream. A prober asks `/api/tags` every 100 ms
throughout. At the end it prints: requests served by kind, errors (any non-2xx, or an error line
in a stream; 503s are counted apart and must say why), the server's and runners' memory, open
descriptors and threads at start and end, `/api/tags` latency p50/p99 while decoding, the exit
status after SIGTERM, and whether any runner process outlived the server.
"""
import argparse
import collections
import http.client
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def proc_status(pid):
    """VmRSS (bytes) and Threads of a process, from /proc."""
    rss, threads = 0, 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except FileNotFoundError:
        pass
    return rss, threads


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def children(pid, subcommand=b"runner"):
    """The server's children running `corral <subcommand>` (runners, or template workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and len(cmd) > 1 and cmd[1] == subcommand:
            out.append(int(entry))
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def snapshot(server_pid):
    rss, threads = proc_status(server_pid)
    runners = children(server_pid)
    runner_rss = sum(proc_status(p)[0] for p in runners)
    runner_threads = sum(proc_status(p)[1] for p in runners)
    workers = children(server_pid, b"template-worker")
    return {"server_rss": rss, "server_threads": threads, "server_fds": fds(server_pid),
            "runners": len(runners), "runner_rss": runner_rss, "runner_threads": runner_threads,
            "runner_fds": sum(fds(p) for p in runners),
            "workers": len(workers), "worker_rss": sum(proc_status(p)[0] for p in workers)}


class Server:
    def __init__(self, corral, models_dir):
        self.dir = tempfile.mkdtemp(prefix="corral-load-")
        env = dict(os.environ, OLLAMA_HOST="127.0.0.1:0", OLLAMA_MODELS=os.path.join(self.dir, "models"),
                   HOME=self.dir, CORRAL_NUM_THREAD=os.environ.get("CORRAL_NUM_THREAD", "1"), NO_COLOR="1")
        self.proc = subprocess.Popen([corral, "serve"], env=env, stderr=subprocess.PIPE, text=True)
        self.log = []
        addr = None
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"Listening on (\S+)", line)
            if m:
                addr = m.group(1)
                break
        if not addr:
            sys.exit("the server did not start:\n" + "".join(self.log))
        self.host, self.port = addr.rsplit(":", 1)
        threading.Thread(target=self._drain, daemon=True).start()
        self.corral, self.models_dir = corral, models_dir

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def conn(self, timeout=300):
        return http.client.HTTPConnection(self.host, int(self.port), timeout=timeout)

    def create(self, name, source):
        with tempfile.NamedTemporaryFile("w", suffix=".Modelfile", delete=False) as f:
            f.write(f"FROM {source}\n")
        env = dict(os.environ, OLLAMA_HOST=f"{self.host}:{self.port}")
        subprocess.run([self.corral, "create", name, "-f", f.name], env=env, check=True, capture_output=True)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.served = collections.Counter()
        self.errors = collections.Counter()
        self.busy = collections.Counter()
        self.latency = collections.defaultdict(list)

    def record(self, kind, status, error, seconds):
        with self.lock:
            if status == 503:
                self.busy[error or "(no message)"] += 1
            elif status >= 400 or error:
                self.errors[f"{kind}: {status} {error}"] += 1
            else:
                self.served[kind] += 1
                self.latency[kind].append(seconds)


def request(server, method, path, body=None, stream=False, hang_up_after=None):
    """One request: (status, error message or None). Streams are read line by line; an
    `error` line counts as an error. `hang_up_after`: close after that many lines."""
    conn = server.conn()
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        if resp.status >= 300:
            text = resp.read().decode(errors="replace")
            try:
                v = json.loads(text)
                err = v.get("error")
                err = err.get("message") if isinstance(err, dict) else err
            except ValueError:
                err = text[:200]
            return resp.status, err
        if not stream:
            resp.read()
            return resp.status, None
        lines = 0
        while True:
            line = resp.readline()
            if not line:
                break
            lines += 1
            text = line.decode(errors="replace").strip()
            if text.startswith("data: "):
                text = text[6:]
            if text.startswith("{") and '"error"' in text:
                try:
                    v = json.loads(text)
                except ValueError:
                    continue
                err = v.get("error")
                if err:
                    return resp.status, err.get("message") if isinstance(err, dict) else err
            if hang_up_after is not None and lines >= hang_up_after:
                return resp.status, None
        return resp.status, None
    except (OSError, http.client.HTTPException) as e:
        return 599, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


CHAT, EMBED = "smollm2", "all-minilm"
QUESTIONS = ["What is the capital of France?", "Name three colours.", "Say hello.", "Count to five.",
             "What is two plus two?", "Write a haiku about rain."]


def mix(rng):
    """One request of the mix: (kind, method, path, body, stream, hang_up_after)."""
    q = rng.choice(QUESTIONS)
    n = rng.randint(8, 32)
    opts = {"num_predict": n, "temperature": 0.7, "seed": rng.randint(0, 1 << 30)}
    msgs = [{"role": "user", "content": q}]
    choices = [
        (12, ("chat-stream", "POST", "/api/chat", {"model": CHAT, "messages": msgs, "options": opts}, True, None)),
        (8, ("chat", "POST", "/api/chat", {"model": CHAT, "messages": msgs, "options": opts, "stream": False}, False, None)),
        (8, ("generate-stream", "POST", "/api/generate", {"model": CHAT, "prompt": q, "options": opts}, True, None)),
        (6, ("generate", "POST", "/api/generate", {"model": CHAT, "prompt": q, "options": opts, "stream": False}, False, None)),
        (10, ("embed", "POST", "/api/embed", {"model": EMBED, "input": [q] * rng.randint(1, 4)}, False, None)),
        (8, ("openai-stream", "POST", "/v1/chat/completions",
             {"model": CHAT, "messages": msgs, "max_tokens": n, "stream": True}, True, None)),
        (6, ("openai", "POST", "/v1/chat/completions", {"model": CHAT, "messages": msgs, "max_tokens": n}, False, None)),
        (6, ("anthropic", "POST", "/v1/messages", {"model": CHAT, "messages": msgs, "max_tokens": n}, False, None)),
        (4, ("anthropic-stream", "POST", "/v1/messages",
             {"model": CHAT, "messages": msgs, "max_tokens": n, "stream": True}, True, None)),
        (10, ("tags", "GET", "/api/tags", None, False, None)),
        (6, ("show", "POST", "/api/show", {"model": rng.choice([CHAT, EMBED])}, False, None)),
        (6, ("ps", "GET", "/api/ps", None, False, None)),
        (10, ("hang-up", "POST", "/api/generate",
              {"model": CHAT, "prompt": q, "options": {"num_predict": 400}}, True, 3)),
    ]
    total = sum(w for w, _ in choices)
    pick = rng.uniform(0, total)
    for w, c in choices:
        pick -= w
        if pick <= 0:
            return c
    return choices[-1][1]


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def mib(b):
    return f"{b / (1 << 20):.1f} MiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corral", required=True)
    ap.add_argument("--models", required=True, help="the test models directory (scripts/fetch-models.sh)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()

    server = Server(args.corral, args.models)
    server.create(CHAT, os.path.join(args.models, "SmolLM2-135M-Instruct.Q4_1.gguf"))
    server.create(EMBED, os.path.join(args.models, "all-MiniLM-L6-v2"))
    stats = Stats()
    # Warm-up: both models loaded, a few of each kind, so "start" is a server at work.
    rng = random.Random(1)
    for _ in range(20):
        kind, method, path, body, stream, hang = mix(rng)
        request(server, method, path, body, stream, hang)
    time.sleep(1)
    start = snapshot(server.proc.pid)
    runner_pids = set(children(server.proc.pid)) | set(children(server.proc.pid, b"template-worker"))

    deadline = time.monotonic() + args.seconds
    probes = []

    def client(seed):
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            kind, method, path, body, stream, hang = mix(rng)
            t = time.perf_counter()
            status, err = request(server, method, path, body, stream, hang)
            stats.record(kind, status, err, time.perf_counter() - t)

    def prober():
        while time.monotonic() < deadline:
            t = time.perf_counter()
            status, err = request(server, "GET", "/api/tags")
            if status == 200:
                probes.append(time.perf_counter() - t)
            else:
                stats.record("probe-tags", status, err, 0)
            runner_pids.update(children(server.proc.pid))
            runner_pids.update(children(server.proc.pid, b"template-worker"))
            time.sleep(0.1)

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    threads.append(threading.Thread(target=prober))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    # Hung-up answers wind down, connections close, and idle blocking-pool threads retire (tokio
    # keeps one 10 s): what is left at the end is what the load left behind.
    time.sleep(12)
    end = snapshot(server.proc.pid)

    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        code = "did not exit within 30 s (killed)"
    time.sleep(1)
    orphans = [p for p in runner_pids if alive(p)]

    served = sum(stats.served.values())
    errors = sum(stats.errors.values())
    busy = sum(stats.busy.values())
    print(f"load: {args.clients} clients for {wall:.0f} s, two models ({CHAT}, {EMBED}), CORRAL_NUM_THREAD="
          f"{os.environ.get('CORRAL_NUM_THREAD', '1')}")
    print(f"requests served: {served} ({served / wall:.1f}/s); errors: {errors}; 503 (queue full): {busy}")
    for kind, n in sorted(stats.served.items()):
        lat = stats.latency[kind]
        print(f"  {kind:17} {n:6}  p50 {pct(lat, 50) * 1000:8.1f} ms  p99 {pct(lat, 99) * 1000:8.1f} ms")
    for e, n in stats.errors.most_common(10):
        print(f"  error x{n}: {e}")
    for e, n in stats.busy.most_common(3):
        print(f"  503 x{n}: {e}")
    print(f"/api/tags while decoding: {len(probes)} probes, p50 {pct(probes, 50) * 1000:.1f} ms, "
          f"p99 {pct(probes, 99) * 1000:.1f} ms, max {max(probes) * 1000 if probes else float('nan'):.1f} ms")
    print(f"{'':18}{'start':>14}{'end':>14}{'change':>10}")
    for key in ["server_rss", "runner_rss", "server_fds", "runner_fds", "server_threads", "runner_threads", "runners",
                "worker_rss", "workers"]:
        a, b = start[key], end[key]
        change = f"{(b - a) / a * 100:+.1f}%" if a else "-"
        fmt = mib if key.endswith("rss") else str
        print(f"{key:18}{fmt(a):>14}{fmt(b):>14}{change:>10}")
    print(f"exit after SIGTERM: {code}; runner and template worker processes seen: {len(runner_pids)}; "
          f"left behind: {orphans or 'none'}")
    ok = errors == 0 and code == 0 and not orphans and probes and pct(probes, 99) < 0.050
    ok = ok and all(m and "busy" in m for m in stats.busy)
    print("RESULT:", "pass" if ok else "FAIL")
    if not ok and errors:
        sys.stderr.write("".join(server.log[-40:]))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
