#!/usr/bin/env bash
# One model over two hosts, against llama.cpp's own: two `corral rpc` servers on 127.0.0.2 and
# 127.0.0.3 (one thread each, standing for two machines) serve their CPUs; Corral with
# CORRAL_RPC_SERVERS and llama-server with --rpc, both pointed at those same two, load the same
# GGUF split over them. Alternating rounds measure prefill and decode through each, and Corral
# with the model on its own CPU (the cost of the network hop). Prints each round and the medians
# of Corral/llama-server.
#
#   bench/rpc.sh [ROUNDS]            # default 3; MODEL=path.gguf (default SmolLM2 from the test models)
#
# llama-server is built with the RPC backend from the llama-cpp-python sdist's llama.cpp (the
# vendored tree has no server; both speak ggml RPC protocol 7.0.0), with the CPU flags of the
# variant Corral loads here (bench/build-llama-cpp.sh), once, into Corral's cache.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release --locked -p corral >&2
corral=$PWD/target/release/corral
bin=$(bench/build-llama-cpp.sh)
cache=$(dirname "$(dirname "$bin")")
server=$cache/build-rpc/bin/llama-server
flags=$(cat "$cache/flags")
if [ ! -x "$server" ] || [ "$(cat "$cache/build-rpc/flags" 2>/dev/null)" != "$flags" ]; then
  echo "building llama-server with the RPC backend (once)" >&2
  # shellcheck disable=SC2086
  cmake -S "$cache/src" -B "$cache/build-rpc" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF $flags -DGGML_RPC=ON \
    -DGGML_RPC_RDMA=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DBUILD_SHARED_LIBS=OFF >&2
  cmake --build "$cache/build-rpc" --target llama-server -j "$(nproc)" >&2
  echo "$flags" >"$cache/build-rpc/flags"
fi
model=${MODEL:-$(scripts/fetch-models.sh)/SmolLM2-135M-Instruct.Q4_1.gguf}
python3 bench/rpc.py "$corral" "$server" "$model" "$rounds"
