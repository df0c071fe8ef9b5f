#!/usr/bin/env python3
"""Corral's run-time CPU backend against static llama.cpp builds of the same source, same machine,
same run: prompt tok/s on a 512-token prompt and decode tok/s (128 tokens) through Corral's API,
against llama-bench's pp512 and tg128 built (1) with the kernels of the CPU variant Corral loads
here, the best static build for this CPU, and (2) with AVX2 only, what Corral was built with before
its backends were loaded at run time. Rounds alternate which side goes first (RUNS, default 3);
medians are printed.

Usage: backends.py --corral BIN --best DIR --avx2 DIR --threads N NAME=PATH.gguf [...]
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from throughput import Corral, DECODE, PARALLEL, PROMPT_WORDS, RUNS, llama_bench, med, words  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corral", required=True)
    ap.add_argument("--best", required=True)
    ap.add_argument("--avx2", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("models", nargs="+")
    args = ap.parse_args()
    probe = subprocess.run([args.corral, "runner", "--probe"], capture_output=True, text=True, check=True)
    print(f"Corral's runner loads: {probe.stdout.strip()}")
    builds = {"best": args.best}
    if os.path.realpath(args.avx2) != os.path.realpath(args.best):
        builds["avx2"] = args.avx2
    for spec in args.models:
        name, gguf = spec.split("=", 1)
        ours = {"pp": [], "tg": []}
        theirs = {(b, k): [] for b in builds for k in ("pp", "tg")}
        corral = Corral(args.corral, args.threads, PARALLEL, gguf, name)
        try:
            corral.generate("warm up", 1)
            for s in range(RUNS):
                def mine():
                    r = corral.generate(words(PROMPT_WORDS, s), 1)
                    ours["pp"].append(r["prompt_eval_count"] / r["prompt_eval_duration"] * 1e9)
                    r = corral.generate(words(4, 50 + s), DECODE)
                    ours["tg"].append(r["eval_count"] / r["eval_duration"] * 1e9)

                def peers():
                    for b, bindir in builds.items():
                        pp, tg = llama_bench(bindir, args.threads, gguf)
                        theirs[(b, "pp")].append(pp)
                        theirs[(b, "tg")].append(tg)

                for f in ((mine, peers) if s % 2 == 0 else (peers, mine)):
                    f()
        finally:
            corral.close()
        print(f"\n== {name}, {args.threads} threads, {RUNS} rounds (medians)")
        for k, label in (("pp", "prompt tok/s (pp512)"), ("tg", f"decode tok/s (tg{DECODE})")):
            rounds = "/".join(f"{x:.0f}" for x in ours[k])
            line = f"{label:22} Corral {med(ours[k]):8.1f} ({rounds})"
            for b in builds:
                rounds = "/".join(f"{x:.0f}" for x in theirs[(b, k)])
                line += f" | llama-bench {b} {med(theirs[(b, k)]):8.1f} ({rounds}) -> {med(ours[k]) / med(theirs[(b, k)]):.2f}x"
            print(line)
        if "avx2" not in builds:
            print("(the variant loaded here is the AVX2 one: both static builds are the same)")


if __name__ == "__main__":
    main()
