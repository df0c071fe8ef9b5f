#!/usr/bin/env bash
# Issue 29: reranking through `corral serve` against llama.cpp's own llama-server (`--rerank`),
# same reranker files, same documents (see bench/rerank.py): the scores must agree within 1e-4,
# and the time per request is compared, alternating, over several rounds. The rerankers have
# random weights: the test kit's BERT cross-encoder (MiniLM's vocabulary), and its XLM-RoBERTa
# cross-encoder in bge-reranker-v2-m3's layout, which Corral's `create` converts from the Hugging
# Face directory and llama-server gets as the GGUF the same converter writes.
#
#   bench/rerank.sh            # 3 rounds
#   ROUNDS=5 bench/rerank.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p corral
cargo build --release --locked -p corral-testkit --example tiny-media
cargo build --release --locked -p corral-convert --example convert
server=$(bench/build-llama-cpp.sh)/llama-server
scripts/fetch-models.sh >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/examples/tiny-media --reranker "$work/bert.gguf" --xlmr "$work/xlmr" --seed 3
target/release/examples/convert "$work/xlmr" "$work/xlmr.gguf" f16 >/dev/null
python3 bench/rerank.py --corral target/release/corral --llama-server "$server" \
  --bert "$work/bert.gguf" --xlmr-dir "$work/xlmr" --xlmr "$work/xlmr.gguf" --rounds "${ROUNDS:-3}"
