#!/usr/bin/env bash
# One command for the backends benchmark: Corral's run-time CPU backend against llama-bench built
# statically from the same llama.cpp source, with the kernels of the variant Corral loads on this
# machine (the best static build for it) and with AVX2 only (what Corral shipped before), on
# SmolLM2-135M and Qwen2.5-Coder-0.5B (Q4_K_M). Run it on a quiet machine.
#
#   bench/backends.sh                 # 2 threads
#   THREADS=1 RUNS=5 bench/backends.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p corral
models=$(scripts/fetch-models.sh)
best=$(bench/build-llama-bench.sh)
avx2=$(bench/build-llama-bench.sh haswell)
python3 bench/backends.py --corral target/release/corral --best "$best" --avx2 "$avx2" --threads "${THREADS:-2}" \
  smollm2="$models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  qwen2.5-coder-0.5b="$models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
