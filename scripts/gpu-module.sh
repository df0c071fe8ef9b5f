#!/usr/bin/env bash
# Prints a directory holding llama.cpp's BACKEND module (cuda or vulkan) built from the exact
# llama.cpp source of this checkout, building it once per source: the result is kept under
# Cargo's home, by the source's identity, so a second run (or a fresh clone of the same commit)
# does not rebuild. Copy the module and its .source file into Corral's library directory, or
# point a test at the directory.
#
#   scripts/gpu-module.sh vulkan        # needs glslc, libvulkan-dev, spirv-headers (Debian)
#   scripts/gpu-module.sh cuda          # needs nvcc
# Environment: CORRAL_GPU_CACHE (default: $CARGO_HOME/corral-gpu), and build-gpu-backend.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:?usage: scripts/gpu-module.sh cuda|vulkan}
case $backend in cuda | vulkan) ;; *) echo "unknown backend '$backend': cuda or vulkan" >&2; exit 2 ;; esac

# shellcheck source=scripts/llama-source.sh
source scripts/llama-source.sh
src=$(llama_source_dir)
[ -d "$src/ggml" ] || cargo fetch --locked >&2
id=$(llama_source_id "$src")
dir=${CORRAL_GPU_CACHE:-${CARGO_HOME:-$HOME/.cargo}/corral-gpu}/$backend-${id#sha256:}
module=$dir/libggml-$backend.so
if [ -f "$module" ] && [ "$(cat "$module.source" 2>/dev/null)" = "$id" ]; then
  echo "$dir"
  exit 0
fi

if [ "$backend" = vulkan ] && [ -z "${VULKAN_INCLUDE_DIR:-}" ]; then
  VULKAN_INCLUDE_DIR=$(scripts/vulkan-headers.sh)
  export VULKAN_INCLUDE_DIR
fi
echo "building llama.cpp's $backend module for source $id (once per source)" >&2
start=$SECONDS
tmp=$dir.tmp.$$
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
scripts/build-gpu-backend.sh "$backend" "$src" "$tmp"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "built $module in $((SECONDS - start)) s" >&2
echo "$dir"
