#!/usr/bin/env bash
# What serving costs per token and per request (issue 15), Corral against llama-server, on a
# random-weight model of the `tiny` shape whose kernels take almost no time. Run it on a quiet
# machine.
#
#   bench/overhead.sh             # 1 thread
#   THREADS=2 bench/overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p corral
peer=$(bench/build-llama-cpp.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/random_gguf.py tiny "$work/tiny.gguf"
python3 bench/overhead.py --corral target/release/corral --peer "$peer" --threads "${THREADS:-1}" \
  --model "$work/tiny.gguf"
