#!/usr/bin/env python3
"""Speculative decoding benchmark (issue 15): single-stream decode speed of one target model on a
code-writing prompt and on a code-editing prompt (the input echoed with a change), for

- llama-bench tg128 of the target (the plain kernel speed),
- Corral without drafting, with prompt lookup (`draft_num_predict`), and with a draft model
  (Modelfile `DRAFT`),
- llama-server without drafting, with its n-gram lookup, and with a draft model (`-md`),

alternating in rounds in the same run, printed as ratios to llama-bench tg128, with the share of
drafted tokens kept. Greedy decoding, the same raw prompt text for both servers.

    python3 bench/speculative.py --corral target/release/corral --peer BIN --target X.gguf --draft Y.gguf
"""

import argparse
import json
import subprocess
import sys

from throughput import Corral, LlamaServer, llama_bench, med, metric, post

RUNS = 3
DECODE = 256
DRAFT_MAX = 8

CODE = '''import json
from dataclasses import dataclass


@dataclass
class Order:
    id: int
    customer: str
    items: list
    total: float


def load_orders(path):
    with open(path) as f:
        rows = json.load(f)
    orders = []
    for row in rows:
        orders.append(Order(row["id"], row["customer"], row["items"], row["total"]))
    return orders


def totals_by_customer(orders):
    totals = {}
    for order in orders:
        totals[order.customer] = totals.get(order.customer, 0) + order.total
    return totals


def biggest_customer(orders):
    totals = totals_by_customer(orders)
    return max(totals, key=totals.get)
'''


def chatml(user):
    return f"<|im_start|>system\nYou are a helpful coding assistant.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = {
    "write": chatml("Write a Python module with a function that parses a CSV file of orders and computes the "
                    "total per customer, with docstrings and type hints."),
    "edit": chatml("Rename the field `customer` to `client` everywhere in this code, and reply with the whole "
                   f"updated code only:\n```python\n{CODE}```"),
}


def corral_run(c, model, prompt, draft):
    before = (metric(c.url, "corral_draft_tokens_total"), metric(c.url, "corral_draft_accepted_tokens_total"))
    r = post(f"{c.url}/api/generate", {"model": model, "prompt": prompt, "raw": True, "stream": False,
                                        "options": {"temperature": 0, "num_predict": DECODE,
                                                    "draft_num_predict": draft}})
    drafted = metric(c.url, "corral_draft_tokens_total") - before[0]
    kept = metric(c.url, "corral_draft_accepted_tokens_total") - before[1]
    return r["eval_count"] / (r["eval_duration"] / 1e9), (kept, drafted), r["response"]


def peer_run(s, prompt):
    r = post(f"{s.url}/completion", {"prompt": prompt, "n_predict": DECODE, "temperature": 0, "cache_prompt": False})
    t = r["timings"]
    return t["predicted_per_second"], (t.get("draft_n_accepted", 0), t.get("draft_n", 0)), r["content"]


def lookup_flags(bindir):
    """llama-server's flags for n-gram drafting without a model, if this build has them."""
    help_text = subprocess.run([f"{bindir}/llama-server", "--help"], capture_output=True, text=True).stdout
    if "ngram-simple" in help_text:
        # The same longest draft as Corral's; the lookup n-gram length is llama-server's own.
        return ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-m", str(DRAFT_MAX)]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corral", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", required=True)
    ap.add_argument("--draft", required=True)
    args = ap.parse_args()

    corral = Corral(args.corral, args.threads, 1, args.target, "target")
    # The same target with the draft model beside it: a second model (and runner) on the same server.
    with open(f"{corral.tmp}/Modelfile.draft", "w") as f:
        f.write(f"FROM {args.target}\nDRAFT {args.draft}\n")
    subprocess.run([args.corral, "create", "target-md", "-f", f"{corral.tmp}/Modelfile.draft"], env=corral.env,
                   check=True, stderr=subprocess.DEVNULL)
    runs = [("corral", corral.name, 0), ("corral lookup", corral.name, DRAFT_MAX), ("corral DRAFT", "target-md", DRAFT_MAX)]
    # This llama-server loads `-md` but drafts with it only when told to (`--spec-type draft-simple`).
    servers = {"llama-server": LlamaServer(args.peer, args.threads, 1, args.target)}
    flags = lookup_flags(args.peer)
    if flags:
        servers["llama-server ngram"] = LlamaServer(args.peer, args.threads, 1, args.target, flags)
    servers["llama-server -md"] = LlamaServer(args.peer, args.threads, 1, args.target,
                                              ["-md", args.draft, "--spec-type", "draft-simple",
                                               "--spec-draft-n-max", str(DRAFT_MAX), "-ngld", "0"])
    results = {}  # (prompt, system) -> [(tok/s, (kept, drafted))]
    tg = []
    try:
        for rnd in range(RUNS):
            tg.append(llama_bench(args.peer, args.threads, args.target)[1])
            for pname, prompt in PROMPTS.items():
                for label, model, draft in runs:
                    speed, acc, _ = corral_run(corral, model, prompt, draft)
                    results.setdefault((pname, label), []).append((speed, acc))
                for sname, server in servers.items():
                    speed, acc, _ = peer_run(server, prompt)
                    results.setdefault((pname, sname), []).append((speed, acc))
                print(f"round {rnd + 1}: {pname} done", file=sys.stderr)
    finally:
        corral.close()
        for s in servers.values():
            s.close()
    base = med(tg)
    print(f"llama-bench tg128: {base:.2f} tok/s (median of {RUNS})")
    if not flags:
        print("this llama-server has no n-gram lookup flag (--spec-type ngram-simple): no lookup column")
    print(f"{'prompt':8} {'system':24} {'tok/s':>8} {'x tg128':>8} {'kept/drafted':>14}")
    for (pname, sname), rows in results.items():
        speed = med([r[0] for r in rows])
        kept = sum(r[1][0] for r in rows)
        drafted = sum(r[1][1] for r in rows)
        share = f"{kept / drafted:.0%} of {drafted / len(rows):.0f}" if drafted else "-"
        print(f"{pname:8} {sname:24} {speed:8.2f} {speed / base:8.2f} {share:>14}")


if __name__ == "__main__":
    main()
