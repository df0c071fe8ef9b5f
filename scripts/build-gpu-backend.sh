#!/usr/bin/env bash
# Builds llama.cpp's CUDA backend module for Corral, from the exact llama.cpp source Corral was
# built from, on a machine with cmake, a C++ compiler and the CUDA toolkit (nvcc); no Rust needed.
# Writes libggml-cuda.so and libggml-cuda.so.source (the source's identity, which Corral checks
# before loading the module) into OUT_DIR: Corral's library directory (lib/corral beside the
# binary) or a folder to copy into it.
#
#   scripts/export-llama-source.sh                 # where Corral was built: the source tarball
#   scripts/build-gpu-backend.sh llama.cpp-source.tar.gz target/release/lib/corral
#
# SOURCE is the tarball from export-llama-source.sh or its unpacked llama.cpp directory.
# Environment:
#   CUDA_ARCHITECTURES  CUDA architectures to compile for (default "75;80;86;89;90;120": Turing to
#                       Blackwell; one, e.g. 90 for an H100/H200, builds much faster)
#   BUILD_DIR           CMake build directory (default: a temporary one, removed afterwards)
#   EXTRA_TARGETS       more CMake targets from the same tree (e.g. "llama-bench llama-batched-bench")
#   BUNDLE_CUDA_RUNTIME=1  copy the CUDA runtime and cuBLAS libraries beside the module, for
#                       machines with a driver but no CUDA toolkit
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/llama-source.sh
source "$here/llama-source.sh"

if [ $# -ne 2 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
source_arg=$1
out=$2
command -v cmake >/dev/null || { echo "cmake is not installed" >&2; exit 1; }
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || { echo "nvcc (the CUDA toolkit) is not installed" >&2; exit 1; }
command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH

cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT
build=${BUILD_DIR:-}
if [ -z "$build" ]; then
  build=$(mktemp -d)
  cleanup+=("$build")
fi
if [ -f "$source_arg" ]; then
  # Unpacked beside the build directory, at the same path every time, so a kept build
  # directory reconfigures instead of refusing a new source path.
  unpacked=$build.src
  rm -rf "$unpacked"
  mkdir -p "$unpacked"
  cleanup+=("$unpacked")
  tar -xzf "$source_arg" -C "$unpacked"
  src=$unpacked/llama.cpp
else
  src=$source_arg
fi
[ -f "$src/CMakeLists.txt" ] && [ -d "$src/ggml" ] || { echo "$source_arg is not a llama.cpp source tree" >&2; exit 1; }
id=$(llama_source_id "$src")
if [ -f "$src/SOURCE" ] && [ "$(cat "$src/SOURCE")" != "$id" ]; then
  echo "the tree's ggml files differ from the identity recorded when it was exported ($(cat "$src/SOURCE")): refusing to build" >&2
  exit 1
fi

# The vendored tree has only the libraries' sources; tools (llama-bench…) only when asked for,
# from a tree that has them (bench/llama-bench-source.sh).
tools=OFF
[ -n "${EXTRA_TARGETS:-}" ] && tools=ON
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The options that shape the module's interface are the ones Corral's own build uses (shared
# ggml, backends loaded at run time); GGML_NATIVE stays off so the module runs on any CPU.
cmake -S "$src" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF -DGGML_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-75;80;86;89;90;120}" \
  -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON -DCMAKE_BUILD_RPATH='$ORIGIN' \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=$tools >&2
# shellcheck disable=SC2086
cmake --build "$build" --target ggml-cuda ${EXTRA_TARGETS:-} -j "$(nproc)" >&2

module=$(find "$build" -name libggml-cuda.so -type f | head -1)
[ -n "$module" ] || { echo "the build produced no libggml-cuda.so" >&2; exit 1; }
mkdir -p "$out"
cp "$module" "$out/libggml-cuda.so.tmp"
mv "$out/libggml-cuda.so.tmp" "$out/libggml-cuda.so"
echo "$id" >"$out/libggml-cuda.so.source"
if [ "${BUNDLE_CUDA_RUNTIME:-0}" = 1 ]; then
  ldd "$out/libggml-cuda.so" | awk '/libcudart|libcublas/ { print $3 }' | while read -r lib; do
    cp -L "$lib" "$out/"
  done
fi
echo "$out/libggml-cuda.so ($id)" >&2
