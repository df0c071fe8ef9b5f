#!/usr/bin/env bash
# One command for the throughput benchmark (issue 6): builds Corral (release) and llama.cpp's own
# tools from the PyPI llama-cpp-python sdist with the same CPU flags, then runs
# bench/throughput.py on SmolLM2-135M and Qwen2.5-Coder-0.5B. Run it on a quiet machine.
#
#   bench/throughput.sh               # 2 threads, both models
#   THREADS=1 RUNS=5 bench/throughput.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p corral
models=$(scripts/fetch-models.sh)
peer=$(bench/build-llama-cpp.sh)
python3 bench/throughput.py --corral target/release/corral --peer "$peer" --threads "${THREADS:-2}" \
  smollm2="$models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  qwen2.5-coder-0.5b="$models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"
