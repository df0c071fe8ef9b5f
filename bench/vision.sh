#!/usr/bin/env bash
# Issue 29: images through a release `corral serve` against llama.cpp's own llama-mtmd-cli built
# from the same llama.cpp tree (bench/build-mtmd-cli.sh): the same answers, image prefill time,
# the second turn with the same picture, and the pause of a streaming client while another's
# picture is encoded (see bench/vision.py). The model is SmolLM2; the projectors have random
# weights of two shapes (the tests' tiny one, and CLIP ViT-B/16's).
#
#   bench/vision.sh            # 3 rounds
#   ROUNDS=5 bench/vision.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p corral
cargo build --release --locked -p corral-testkit --example tiny-media
cli=$(bench/build-mtmd-cli.sh)/llama-mtmd-cli
models=$(scripts/fetch-models.sh)
rounds=${ROUNDS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/pictures"
make=target/release/examples/tiny-media
$make --embd 576 --out "$work/tiny.gguf" --seed 7
$make --projector vit-b16 --embd 576 --out "$work/big.gguf" --seed 7
for s in 1 2 3; do $make --png "$work/pictures/p$s.png" --width 320 --height 240 --seed "$s"; done
for s in $(seq 0 "$rounds"); do $make --png "$work/pictures/q$s.png" --width 640 --height 480 --seed $((100 + s)); done
for s in $(seq 1 "$rounds"); do $make --png "$work/pictures/z$s.png" --width 640 --height 480 --seed $((200 + s)); done
python3 bench/vision.py --corral target/release/corral --mtmd-cli "$cli" \
  --model "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --tiny "$work/tiny.gguf" --big "$work/big.gguf" \
  --pictures "$work/pictures" --rounds "$rounds"
