#!/usr/bin/env bash
# Builds llama.cpp's llama-bench and llama-batched-bench, statically, from exactly the source
# Corral is built from (bench/llama-bench-source.sh), with the kernels of one CPU variant
# (bench/variant-flags.sh), into a cache outside the tree. Prints the bin directory.
#
#   bench/build-llama-bench.sh            # the variant Corral loads on this machine
#   bench/build-llama-bench.sh haswell    # the AVX2 build Corral shipped before run-time backends
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/llama-source.sh
source scripts/llama-source.sh
flags=$(bench/variant-flags.sh "${1:-}")
id=$(llama_source_id "$(llama_source_dir)")
key=$(echo "$id $flags" | sha256sum | cut -c1-16)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/corral/llama-bench-$key"
bin=$cache/build/bin
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-batched-bench" ]; then
  echo "$bin"
  exit 0
fi
rm -rf "$cache"
mkdir -p "$cache"
bench/llama-bench-source.sh "$cache/src.tar.gz" >/dev/null
tar -xzf "$cache/src.tar.gz" -C "$cache"
# shellcheck disable=SC2086
cmake -S "$cache/llama.cpp" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=OFF $flags -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON >&2
cmake --build "$cache/build" --target llama-bench llama-batched-bench -j "$(nproc)" >&2
echo "$flags" >"$cache/flags"
echo "$bin"
