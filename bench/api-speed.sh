#!/usr/bin/env bash
# Runs bench/api-speed.py against a release build with SmolLM2, at 1 and 2 threads.
# Run it on a quiet machine: two OpenMP threads collapse when another process is busy.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p corral
models_cache=$(scripts/fetch-models.sh)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
for threads in 1 2; do
  port=$((11500 + threads))
  OLLAMA_HOST=127.0.0.1:$port OLLAMA_MODELS=$work/models CORRAL_NUM_THREAD=$threads \
    target/release/corral serve 2>"$work/serve-$threads.log" &
  for _ in $(seq 50); do curl -s "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.1; done
  echo "FROM $models_cache/SmolLM2-135M-Instruct.Q4_1.gguf" >"$work/Modelfile"
  OLLAMA_HOST=127.0.0.1:$port target/release/corral create smollm2 -f "$work/Modelfile" 2>/dev/null
  echo "== $threads thread(s)"
  python3 bench/api-speed.py "http://127.0.0.1:$port" smollm2 "${RUNS:-5}"
  kill %1; wait %1 2>/dev/null || true
done
