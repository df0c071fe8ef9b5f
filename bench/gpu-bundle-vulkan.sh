#!/usr/bin/env bash
# The Vulkan part of the GPU bundle, built here because the GPU machine has no shader compiler,
# no Vulkan headers and no network: llama.cpp's Vulkan module for Corral, and llama-bench and
# llama-batched-bench built with the same backend from the same source, as one xz tarball (the
# module alone is about 29 MB, 3 MB compressed; the bundle travels in at most 64 MiB).
#
#   bench/gpu-bundle-vulkan.sh SOURCE.tar.gz OUT.tar.xz
#
# SOURCE.tar.gz: from bench/llama-bench-source.sh (Corral's llama.cpp with the tools' sources).
# The tarball holds vulkan/: the module and its .source identity, the two tools, the libllama and
# ggml libraries and CPU backend they load, and this machine's Vulkan loader (libvulkan.so.1),
# which bench/gpu-check.sh uses only where the GPU machine has none. Needs scripts/setup.sh
# --vulkan's packages. Debian 12's glslc cannot compile the cooperative-matrix and integer-dot
# shaders, so this module and these tools lack them alike: their figures compare with each other,
# not with a build that has them.
set -euo pipefail
cd "$(dirname "$0")/.."
source_tar=$1
out=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
VULKAN_INCLUDE_DIR=${VULKAN_INCLUDE_DIR:-$(scripts/vulkan-headers.sh)}
export VULKAN_INCLUDE_DIR
BUILD_DIR=$work/build EXTRA_TARGETS="ggml-cpu llama-bench llama-batched-bench" \
  scripts/build-gpu-backend.sh vulkan "$source_tar" "$work/vulkan" >&2
bin=$work/build/bin
cp "$bin/llama-bench" "$bin/llama-batched-bench" "$work/vulkan/"
# The libraries the tools link, under the names they ask for, and the CPU backend that ggml
# loads from their directory beside the Vulkan one.
ldd "$bin/llama-bench" "$bin/llama-batched-bench" | awk -v dir="$bin/" 'index($3, dir) == 1 { print $1, $3 }' |
  sort -u | while read -r name path; do cp -L "$path" "$work/vulkan/$name"; done
cp -L "$bin"/libggml-cpu*.so "$work/vulkan/"
loader=$(ldconfig -p | awk '/libvulkan.so.1 .*x86-64/ { print $NF; exit }')
[ -n "$loader" ] && cp -L "$loader" "$work/vulkan/libvulkan.so.1"
for f in "$work"/vulkan/*; do
  case $f in *.source) ;; *) strip --strip-unneeded "$f" ;; esac
done
tar -C "$work" -cJf "$out" vulkan
ls -la "$work/vulkan" >&2
du -h "$out" >&2
