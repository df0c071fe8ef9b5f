#!/usr/bin/env bash
# Speculative decoding benchmark (issue 15): builds Corral (release) and llama.cpp's own tools,
# fetches Qwen2.5-Coder-1.5B (target) and 0.5B (draft) with their pins, and runs
# bench/speculative.py. Run it on a quiet machine.
#
#   bench/speculative.sh             # 2 threads
#   THREADS=1 bench/speculative.sh
#   RUNS=1 ONLY=rename,write bench/speculative.sh   # fewer rounds, some prompts
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p corral
models=$(scripts/fetch-models.sh --bench)
peer=$(bench/build-llama-cpp.sh)
python3 bench/speculative.py --corral target/release/corral --peer "$peer" --threads "${THREADS:-2}" \
  --target "$models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf" \
  --draft "$models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf" ${ONLY:+--only "$ONLY"}
