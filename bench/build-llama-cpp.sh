#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench, llama-batched-bench and llama-server from the source the PyPI llama-cpp-python
# sdist carries (the vendored tree Corral builds from has no llama-server), with the kernels of the
# CPU variant Corral loads on this machine (bench/variant-flags.sh), into a cache outside the tree.
# Prints the bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.36
cache="${XDG_CACHE_HOME:-$HOME/.cache}/corral/llama.cpp-$version"
bin="$cache/build/bin"
# The kernels of the CPU variant Corral's runner loads on this machine.
flags=$(bench/variant-flags.sh | tr ' ' '\n' | grep . | sort | tr '\n' ' ')
tools="llama-bench llama-batched-bench llama-server"
built() { for t in $tools; do [ -x "$bin/$t" ] || return 1; done; }
if built && [ "$(cat "$cache/flags" 2>/dev/null)" = "$flags" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-binary :all: --no-deps --disable-pip-version-check -d "$work" \
  "llama-cpp-python==$version" >&2
tar xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
rm -rf "$cache/src" "$cache/build"
mv "$work/llama_cpp_python-$version/vendor/llama.cpp" "$cache/src"
# shellcheck disable=SC2086
cmake -S "$cache/src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF $flags \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DBUILD_SHARED_LIBS=OFF >&2
# shellcheck disable=SC2086
cmake --build "$cache/build" --target $tools -j "$(nproc)" >&2
echo "$flags" >"$cache/flags"
echo "$bin"
