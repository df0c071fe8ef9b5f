#!/usr/bin/env bash
# Builds llama.cpp's own llama-bench, llama-batched-bench and llama-server from the source the PyPI llama-cpp-python
# sdist carries, with the same CPU feature flags as the llama.cpp inside Corral (read from our
# release build's CMake cache), into a cache outside the tree. Prints the bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.3.36
cache="${XDG_CACHE_HOME:-$HOME/.cache}/corral/llama.cpp-$version"
bin="$cache/build/bin"
ours=$(ls target/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt 2>/dev/null | head -1)
if [ -z "$ours" ]; then
  echo "build Corral first (cargo build --release -p corral): its CMake cache gives the CPU flags" >&2
  exit 1
fi
# The same ggml CPU features on both sides (AVX-512 on for both or off for both, and so on).
flags=$(grep -E '^GGML_(SSE42|AVX|AVX2|AVX512|AVX512_BF16|AVX512_VBMI|AVX512_VNNI|AVX_VNNI|FMA|F16C|BMI2|OPENMP):BOOL=' "$ours" |
  sed 's/:BOOL=/=/; s/^/-D/' | sort | tr '\n' ' ')
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
