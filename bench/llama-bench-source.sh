#!/usr/bin/env bash
# Makes a llama.cpp tree to build llama.cpp's own benchmark tools from, with exactly the ggml and
# libllama sources Corral is built from: the tree vendored in llama-cpp-sys-2 (as
# scripts/export-llama-source.sh exports it), plus the sources of llama-bench and
# llama-batched-bench, which that crate leaves out, taken from the llama-cpp-python sdist on PyPI
# (the closest llama.cpp release reachable here). Only tools/ is added; ggml/ is untouched, so the
# source identity stays the binary's.
#
#   bench/llama-bench-source.sh OUT.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
sdist_version=0.3.36
cache="${XDG_CACHE_HOME:-$HOME/.cache}/corral/llama-cpp-python-$sdist_version"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -d "$cache/tools/llama-bench" ]; then
  python3 -m pip download --quiet --no-binary :all: --no-deps --disable-pip-version-check -d "$work" \
    "llama-cpp-python==$sdist_version" >&2
  tar -xzf "$work/llama_cpp_python-$sdist_version.tar.gz" -C "$work" \
    "llama_cpp_python-$sdist_version/vendor/llama.cpp/tools/llama-bench" \
    "llama_cpp_python-$sdist_version/vendor/llama.cpp/tools/batched-bench"
  rm -rf "$cache"
  mkdir -p "$cache"
  mv "$work/llama_cpp_python-$sdist_version/vendor/llama.cpp/tools" "$cache/tools"
fi

scripts/export-llama-source.sh "$work/vendored.tar.gz" >/dev/null
tar -xzf "$work/vendored.tar.gz" -C "$work"
cp -r "$cache/tools/llama-bench" "$cache/tools/batched-bench" "$work/llama.cpp/tools/"
# The vendored tools/CMakeLists.txt names directories the crate leaves out: only these two.
cat >"$work/llama.cpp/tools/CMakeLists.txt" <<'CMAKE'
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(batched-bench)
add_subdirectory(llama-bench)
CMAKE
tar -C "$work" -czf "$out" llama.cpp
echo "$out"
