#!/usr/bin/env python3
"""What prompt lookup, on by default, gains or costs under load (issue 15): one Corral server, the
aggregate runs of bench/throughput.py (1, 4 and 8 concurrent streaming clients, 128 greedy tokens
each, prompts that start a count), each run once with `draft_num_predict` 0 and once with the
default, alternating in RUNS rounds. Prints the medians of both figures (overall and steady, as in
throughput.py), the ratio on/off, and the drafted and kept token counts from /metrics.

    cargo build --release --locked -p corral
    python3 bench/lookup_load.py target/release/corral MODEL.gguf [threads]

Measured on two cores (2026-12-03), ratios on/off, overall / steady: Qwen2.5-Coder-0.5B 1.15 / 1.12
at 1 client, 1.04 / 0.99 at 4, 0.99 / 1.00 at 8; the machine's drift is a few per cent.
"""

import statistics
import sys

import throughput as t


def drafted(url):
    """(drafted, kept) token counters of the server."""
    return t.metric(url, "corral_draft_tokens_total"), t.metric(url, "corral_draft_accepted_tokens_total")


def main():
    binary, gguf = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    c = t.Corral(binary, threads, t.PARALLEL, gguf, "m")
    try:
        c.generate("warm up", 8)
        modes = {"off": {"draft_num_predict": 0}, "on": {}}

        def run_one(extra):
            def one(i):
                body = {"model": "m", "prompt": t.counting(100 + i), "raw": True,
                        "options": {"temperature": 0, "num_predict": t.DECODE, **extra}}
                return t.stamped(f"{c.url}/api/generate", body, lambda e: e["eval_count"] if e.get("done") else None)
            return one

        results, counts = {}, {}
        for rnd in range(t.RUNS):
            for clients in (1, 4, 8):
                order = list(modes) if rnd % 2 == 0 else list(reversed(modes))
                for mode in order:
                    before = drafted(c.url)
                    results.setdefault((clients, mode), []).append(t.aggregate(run_one(modes[mode]), clients, mode))
                    after = drafted(c.url)
                    got = counts.setdefault((clients, mode), [0.0, 0.0])
                    got[0] += after[0] - before[0]
                    got[1] += after[1] - before[1]
        print(f"{'clients':>7} {'overall off':>12} {'on':>8} {'ratio':>6} {'steady off':>11} {'on':>8} {'ratio':>6}"
              f" {'kept/drafted (on)':>18}")
        for clients in (1, 4, 8):
            med = {m: [statistics.median(r[k] for r in results[(clients, m)]) for k in (0, 1)] for m in modes}
            d, k = counts[(clients, "on")]
            print(f"{clients:>7} {med['off'][0]:12.1f} {med['on'][0]:8.1f} {med['on'][0] / med['off'][0]:6.3f}"
                  f" {med['off'][1]:11.1f} {med['on'][1]:8.1f} {med['on'][1] / med['off'][1]:6.3f}"
                  f" {f'{k:.0f}/{d:.0f}':>18}")
    finally:
        c.close()


if __name__ == "__main__":
    main()
