#!/usr/bin/env bash
# Gives the Corral build in LIBDIR (its lib/corral) the GPU backend module this machine can use,
# built once per llama.cpp source (scripts/gpu-module.sh), or says in one line why it runs on the
# CPU. Never fails: a machine without a GPU, or a build that breaks, runs on the CPU.
#
#   scripts/gpu-setup.sh target/release/lib/corral
#   CORRAL_GPU_BUILD=0 scripts/gpu-setup.sh …     # no GPU module
#
# An NVIDIA GPU with the CUDA toolkit (nvcc) gets the CUDA module; otherwise a GPU that Linux
# exposes for rendering (/dev/dri/renderD*: AMD, Intel, or NVIDIA without nvcc) gets the Vulkan
# module, whose build tools (Debian: glslc libvulkan-dev spirv-headers) are installed if missing.
set -uo pipefail
cd "$(dirname "$0")/.."
lib=${1:?usage: scripts/gpu-setup.sh LIBDIR}

cpu() { echo "corral: running on the CPU: $*" >&2; exit 0; }

[ "${CORRAL_GPU_BUILD:-1}" = 0 ] && cpu "GPU module build turned off (CORRAL_GPU_BUILD=0)"
nvidia=false
{ [ -e /dev/nvidia0 ] || nvidia-smi -L >/dev/null 2>&1; } && nvidia=true
if $nvidia && { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; }; then
  backend=cuda
elif compgen -G '/dev/dri/renderD*' >/dev/null; then
  backend=vulkan
  scripts/setup.sh --vulkan || cpu "the Vulkan build tools could not be installed (scripts/setup.sh --vulkan)"
  ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || cpu "a GPU, but no Vulkan loader (Debian: libvulkan1) and no CUDA toolkit"
elif $nvidia; then
  cpu "an NVIDIA GPU without the CUDA toolkit (nvcc) or a render device for Vulkan; install CUDA and rerun"
else
  cpu "no GPU found (no /dev/nvidia0, no /dev/dri/renderD*)"
fi

if [ "$backend" = cuda ] && [ -z "${CUDA_ARCHITECTURES:-}" ]; then
  # Only this machine's GPUs' architectures: a build for all of them takes many times longer.
  archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d '. ' | sort -u | paste -sd';')
  [ -n "$archs" ] && export CUDA_ARCHITECTURES=$archs
fi
dir=$(scripts/gpu-module.sh "$backend") || cpu "building llama.cpp's $backend module failed (see above)"
mkdir -p "$lib"
cp "$dir/libggml-$backend.so" "$dir/libggml-$backend.so.source" "$lib/" || cpu "could not copy the $backend module into $lib"
echo "corral: llama.cpp's $backend module is in $lib" >&2
