#!/usr/bin/env bash
# Issue 28: the load time of a model in the layout Ollama published it in, against the same
# weights in llama.cpp's layout, through a release `corral serve` (see bench/compat_load.py),
# and the disk the translation uses beyond the blobs.
#
#   bench/compat-load.sh            # 5 rounds
#   ROUNDS=9 bench/compat-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p corral
cargo build --release --locked -p corral-testkit --example published-gemma3
models=$(scripts/fetch-models.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/examples/published-gemma3 "$models/gemma-3-270m-q4_k_m.gguf" "$work/published.gguf"
python3 bench/compat_load.py --corral target/release/corral \
  --reference "$models/gemma-3-270m-q4_k_m.gguf" --published "$work/published.gguf" \
  --rounds "${ROUNDS:-5}"
