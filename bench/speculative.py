#!/usr/bin/env python3
"""Speculative decoding benchmark (issues 15 and 33): single-stream decode speed of one target model
on prompts whose answers copy the prompt in different ways (a rename in a long and in a short
snippet, a reformat, a quotation, an answer from a retrieved document, a JSON edit) and on prompts
whose answers copy nothing (writing code, explaining), for

- llama-bench tg128 of the target (the plain kernel speed),
- Corral without drafting, with prompt lookup (`draft_num_predict`), and with a draft model
  (Modelfile `DRAFT`),
- llama-server without drafting, with its n-gram lookup, and with a draft model (`-md`),

alternating in rounds in the same run, printed as ratios to llama-bench tg128 and to Corral without
drafting, with the share of drafted tokens kept. Greedy decoding, the same raw prompt text for both
servers. Issue 33's goals: every copying prompt >= 1.3x no speculation, every other >= 0.98x, and
the model with a DRAFT never slower than without it (the "lookup" row).

    python3 bench/speculative.py --corral target/release/corral --peer BIN --target X.gguf --draft Y.gguf \
        [--runs N] [--only rename,write]
"""

import argparse
import json
import os
import subprocess
import sys

from throughput import Corral, LlamaServer, llama_bench, med, metric, post

RUNS = int(os.environ.get("RUNS", "3"))
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


SNIPPET = '''def total(prices, tax):
    subtotal = 0
    for price in prices:
        subtotal += price
    return subtotal * (1 + tax)


print(total([3, 4, 5], 0.2))
'''

SETTINGS = '''{"services": [{"name": "web", "port": 8080, "replicas": 3, "enabled": true},
  {"name": "cache", "port": 6379, "replicas": 1, "enabled": true},
  {"name": "worker", "port": 9000, "replicas": 4, "enabled": true}],
 "region": "eu-west-1", "log_level": "info", "retries": 5}'''

PASSAGE = """The lighthouse keeper kept a log of every ship that passed. In the spring of that year the
entries grew longer: storms came early, and the supply boat missed three of its visits. He wrote that
the lamp had to be trimmed twice a night, and that the oil would last until the first of June if the
weather allowed no more than two calm evenings a week.

By midsummer the log records a stranger who came ashore in a small boat and stayed for nine days. The
keeper described him as quiet and careful with his hands, and noted that he repaired the broken
shutter on the north window before he left. No name was ever written down."""

WARRANTY = """Warranty terms. The manufacturer warrants the device against defects in materials and
workmanship for a period of two years from the date of purchase. The warranty covers repair or
replacement of the device at the manufacturer's choice, including parts and labour. It does not
cover damage caused by accidents, misuse, liquid, unauthorised repairs, or normal wear of the battery
after the first year. To make a claim, contact support with the proof of purchase and the serial
number; shipping to the service centre is paid by the manufacturer within the European Union."""

# The first group's answers copy their prompt; the last two copy nothing.
PROMPTS = {
    "edit": chatml("Rename the field `customer` to `client` everywhere in this code, and reply with the whole "
                   f"updated code only:\n```python\n{CODE}```"),
    "rename": chatml(f"Rename the function `total` to `sum_prices` in this code:\n```python\n{SNIPPET}```"),
    "reformat": chatml("Reformat this code with two-space indentation instead of four, and reply with the code "
                       f"only:\n```python\n{CODE}```"),
    "quote": chatml(f"Quote the second paragraph of this text word for word:\n\n{PASSAGE}"),
    "document": chatml(f"{WARRANTY}\n\nUsing only the document above, what does the warranty cover and what "
                       "does it not cover? Quote the relevant sentences."),
    "json": chatml("Set `enabled` to false for the service named `cache` in this JSON, and reply with the whole "
                   f"JSON only:\n```json\n{SETTINGS}\n```"),
    "write": chatml("Write a Python module with a function that parses a CSV file of orders and computes the "
                    "total per customer, with docstrings and type hints."),
    "explain": chatml("Explain the difference between a process and a thread, in a few paragraphs."),
}
COPYING = {"edit", "rename", "reformat", "quote", "document", "json"}


def corral_run(c, model, prompt, draft):
    before = (metric(c.url, "corral_draft_tokens_total"), metric(c.url, "corral_draft_accepted_tokens_total"))
    r = post(f"{c.url}/api/generate", {"model": model, "prompt": prompt, "raw": True, "stream": False,
                                        "options": {"temperature": 0, "num_predict": DECODE,
                                                    "draft_num_predict": draft}})
    drafted = metric(c.url, "corral_draft_tokens_total") - before[0]
    kept = metric(c.url, "corral_draft_accepted_tokens_total") - before[1]
    return r["eval_count"] / (r["eval_duration"] / 1e9), (kept, drafted), r["eval_count"]


def peer_run(s, prompt):
    r = post(f"{s.url}/completion", {"prompt": prompt, "n_predict": DECODE, "temperature": 0, "cache_prompt": False})
    t = r["timings"]
    return t["predicted_per_second"], (t.get("draft_n_accepted", 0), t.get("draft_n", 0)), t["predicted_n"]


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
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--only", help="comma-separated prompt names (default: all)")
    args = ap.parse_args()
    prompts = {k: v for k, v in PROMPTS.items() if not args.only or k in args.only.split(",")}

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
        for rnd in range(args.runs):
            tg.append(llama_bench(args.peer, args.threads, args.target)[1])
            for pname, prompt in prompts.items():
                for label, model, draft in runs:
                    results.setdefault((pname, label), []).append(corral_run(corral, model, prompt, draft))
                for sname, server in servers.items():
                    results.setdefault((pname, sname), []).append(peer_run(server, prompt))
                print(f"round {rnd + 1}: {pname} done", file=sys.stderr)
    finally:
        corral.close()
        for s in servers.values():
            s.close()
    base = med(tg)
    print(f"llama-bench tg128: {base:.2f} tok/s (median of {args.runs})")
    if not flags:
        print("this llama-server has no n-gram lookup flag (--spec-type ngram-simple): no lookup column")
    print(f"{'prompt':9} {'system':20} {'tok/s':>7} {'x tg128':>8} {'x plain':>8} {'kept/drafted':>14} {'tokens':>7}")
    for (pname, sname), rows in results.items():
        speed = med([r[0] for r in rows])
        plain = med([r[0] for r in results[(pname, "llama-server" if sname.startswith("llama") else "corral")]])
        kept = sum(r[1][0] for r in rows)
        drafted = sum(r[1][1] for r in rows)
        share = f"{kept / drafted:.0%} of {drafted / len(rows):.0f}" if drafted else "-"
        tokens = med([r[2] for r in rows])
        kind = "copies" if pname in COPYING else "new"
        print(f"{pname:9} {sname:20} {speed:7.2f} {speed / base:8.2f} {speed / plain:8.2f} {share:>14} {tokens:7.0f}"
              f"  {kind}")


if __name__ == "__main__":
    main()
