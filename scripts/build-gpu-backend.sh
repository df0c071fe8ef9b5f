#!/usr/bin/env bash
# Builds one of llama.cpp's GPU backend modules for Corral, from the exact llama.cpp source Corral
# was built from, on a machine with cmake and a C++ compiler; no Rust needed:
#   cuda    libggml-cuda.so (NVIDIA), with the CUDA toolkit (nvcc)
#   vulkan  libggml-vulkan.so (AMD, Intel and NVIDIA GPUs), with the Vulkan headers and loader
#           and the glslc shader compiler (Debian: libvulkan-dev glslc)
# Writes the module and <module>.source (the source's identity, which Corral checks before loading
# the module) into OUT_DIR: Corral's library directory (lib/corral beside the binary) or a folder
# to copy into it.
#
#   scripts/export-llama-source.sh                 # where Corral was built: the source tarball
#   scripts/build-gpu-backend.sh vulkan llama.cpp-source.tar.gz target/release/lib/corral
#   scripts/build-gpu-backend.sh llama.cpp-source.tar.gz target/release/lib/corral   # cuda
#
# SOURCE is the tarball from export-llama-source.sh or its unpacked llama.cpp directory.
# Environment:
#   CUDA_ARCHITECTURES  CUDA architectures to compile for (default "75;80;86;89;90;120": Turing to
#                       Blackwell; one, e.g. 90 for an H100/H200, builds much faster)
#   BUILD_DIR           CMake build directory (default: a temporary one, removed afterwards)
#   EXTRA_TARGETS       more CMake targets from the same tree (e.g. "llama-bench llama-batched-bench")
#   BUNDLE_CUDA_RUNTIME=1  copy the CUDA runtime and cuBLAS libraries beside the module, for
#                       machines with a driver but no CUDA toolkit
#   VULKAN_INCLUDE_DIR  Vulkan headers to build against instead of the system's
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/llama-source.sh
source "$here/llama-source.sh"

usage() {
  sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
# The two-argument form is CUDA's, as it was before Vulkan.
case $# in
  2) backend=cuda; source_arg=$1; out=$2 ;;
  3) backend=$1; source_arg=$2; out=$3 ;;
  *) usage ;;
esac
command -v cmake >/dev/null || { echo "cmake is not installed" >&2; exit 1; }
case $backend in
  cuda)
    command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || { echo "nvcc (the CUDA toolkit) is not installed" >&2; exit 1; }
    command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
    flags=(-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-75;80;86;89;90;120}")
    ;;
  vulkan)
    command -v glslc >/dev/null || { echo "glslc (the Vulkan shader compiler; Debian: glslc) is not installed" >&2; exit 1; }
    [ -f /usr/include/vulkan/vulkan.h ] || pkg-config --exists vulkan 2>/dev/null ||
      { echo "the Vulkan headers and loader (Debian: libvulkan-dev) are not installed" >&2; exit 1; }
    flags=(-DGGML_VULKAN=ON)
    # Newer Vulkan headers than the system's, where the distribution's are too old for this
    # llama.cpp (scripts/vulkan-headers.sh fetches them).
    [ -n "${VULKAN_INCLUDE_DIR:-}" ] && flags+=(-DVulkan_INCLUDE_DIR="$VULKAN_INCLUDE_DIR")
    ;;
  *) echo "unknown backend '$backend': cuda or vulkan" >&2; exit 2 ;;
esac
name=libggml-$backend.so

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
  -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF "${flags[@]}" \
  -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON -DCMAKE_BUILD_RPATH='$ORIGIN' \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=$tools >&2
# shellcheck disable=SC2086
cmake --build "$build" --target "ggml-$backend" ${EXTRA_TARGETS:-} -j "$(nproc)" >&2

module=$(find "$build" -name "$name" -type f | head -1)
[ -n "$module" ] || { echo "the build produced no $name" >&2; exit 1; }
mkdir -p "$out"
cp "$module" "$out/$name.tmp"
mv "$out/$name.tmp" "$out/$name"
echo "$id" >"$out/$name.source"
if [ "$backend" = cuda ] && [ "${BUNDLE_CUDA_RUNTIME:-0}" = 1 ]; then
  ldd "$out/$name" | awk '/libcudart|libcublas/ { print $3 }' | while read -r lib; do
    cp -L "$lib" "$out/"
  done
fi
echo "$out/$name ($id)" >&2
