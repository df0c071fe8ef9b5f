#!/usr/bin/env bash
# The GPU check in one run, on a machine with an NVIDIA GPU, cmake and nvcc but no Rust and no
# network (the lent H200 machine). BUNDLE is made where Corral was built (bench/gpu-bundle.sh): the
# corral binary, its lib/corral directory, and the llama.cpp source it was built from.
#
#   bench/gpu-check.sh BUNDLE
#
# One CMake build of that source makes the CUDA backend for Corral and llama.cpp's own llama-bench
# and llama-batched-bench (about 5.5 minutes for one architecture on 16 cores); meanwhile
# random-weight models of real shapes are written (bench/random_gguf.py). Then it prints: what the
# server found at start, the placement (`corral ps`), CPU-vs-GPU greedy agreement, single-stream
# decode against llama-bench tg128, and 32 concurrent streams against llama-batched-bench at 32
# sequences. Environment: CUDA_ARCHITECTURES (default 90), WORK (default /tmp/corral-gpu),
# SKIP_BUILD=1 to reuse a build in $WORK/build.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=$(cd "$1" && pwd)
work=${WORK:-/tmp/corral-gpu}
mkdir -p "$work"
say() { echo "[$(date +%T)] $*"; }
corral=$bundle/corral
libs=$bundle/lib/corral

if ldd "$corral" | grep -q "not found"; then
  ldd "$corral" | grep "not found"
  say "using the bundle's copies of the missing system libraries"
  export LD_LIBRARY_PATH=$bundle/fallback-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building the CUDA backend, llama-bench and llama-batched-bench from $(tar -xzOf "$bundle/llama.cpp-source.tar.gz" llama.cpp/SOURCE)"
  (
    CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-90} BUILD_DIR=$work/build \
      EXTRA_TARGETS="ggml-cpu llama-bench llama-batched-bench" \
      scripts/build-gpu-backend.sh "$bundle/llama.cpp-source.tar.gz" "$libs" >"$work/build.log" 2>&1
    echo $? >"$work/build.rc"
  ) &
  builder=$!
fi
say "writing random-weight models"
python3 bench/random_gguf.py qwen0.5b "$work/qwen.gguf"
python3 bench/random_gguf.py llama8b "$work/llama8b.gguf"

say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_tile|amx_int8)$' | tr '\n' ' ')"
# While the CUDA backend builds: the CPU alone, with the variant this machine is given.
export OLLAMA_HOST=127.0.0.1:11500 OLLAMA_MODELS=$work/models OLLAMA_NUM_PARALLEL=32 OLLAMA_CONTEXT_LENGTH=512
rm -rf "$OLLAMA_MODELS"
"$corral" runner --probe
"$corral" serve >"$work/serve-cpu.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 300); do "$corral" list >/dev/null 2>&1 && break; sleep 0.2; done
echo "FROM $work/qwen.gguf" >"$work/qwen.Modelfile"
"$corral" create qwen -f "$work/qwen.Modelfile" >/dev/null
cpu_ok=1
python3 bench/gpu_measure.py single qwen 32 1 || cpu_ok=0
grep -E "variant|skipped|runner stopped|model loaded" "$work/serve-cpu.log"
kill $server; wait $server 2>/dev/null
if [ -n "${builder:-}" ]; then
  wait "$builder"
  if [ "$(cat "$work/build.rc")" != 0 ]; then
    tail -40 "$work/build.log"
    say "build failed"
    exit 1
  fi
  say "build done: $(grep -c 'Building CUDA' "$work/build.log") CUDA units"
fi
bin=$work/build/bin
ls -la "$libs"/libggml-cuda.so*

say "llama-bench (tg128, pp512; all layers on the GPU)"
"$bin/llama-bench" -m "$work/llama8b.gguf" -ngl 99 -p 512 -n 128 -r 3 2>/dev/null
"$bin/llama-bench" -m "$work/qwen.gguf" -ngl 99 -p 512 -n 128 -r 3 2>/dev/null
say "llama-batched-bench (8B shape, 128 prompt + 128 generated tokens, 1 and 32 sequences)"
"$bin/llama-batched-bench" -m "$work/llama8b.gguf" -ngl 99 -c 9000 -b 2048 -ub 512 \
  -npp 128 -ntg 128 -npl 1,32 2>/dev/null | grep '^|'

if [ $cpu_ok = 0 ]; then
  variant=$("$corral" runner --probe | python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu_variant"])')
  say "the CPU alone failed with the $variant variant: the rest runs without it"
  cp -r "$libs" "$work/libs-without-$variant"
  rm "$work/libs-without-$variant/libggml-cpu-$variant.so"
  export CORRAL_LIBRARY_PATH=$work/libs-without-$variant
fi
say "starting corral serve"
"$corral" serve >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do "$corral" list >/dev/null 2>&1 && break; sleep 0.2; done
grep -E "backend|device|refused|skipped" "$work/serve.log"
for m in llama8b; do
  echo "FROM $work/$m.gguf" >"$work/$m.Modelfile"
  "$corral" create "$m" -f "$work/$m.Modelfile" >/dev/null || { tail "$work/serve.log"; exit 1; }
done
say "placement"
python3 bench/gpu_measure.py placement llama8b
"$corral" ps
python3 bench/gpu_measure.py agree qwen 64
say "single stream (8B shape, 128 tokens)"
python3 bench/gpu_measure.py single llama8b 128 3
say "32 concurrent streams (8B shape, 128 tokens each)"
python3 bench/gpu_measure.py streams llama8b 32 128
python3 bench/gpu_measure.py streams llama8b 32 128
say "single stream (0.5B shape)"
python3 bench/gpu_measure.py single qwen 128 3
"$corral" ps
grep -E "model loaded" "$work/serve.log"
grep -iE "warn|error" "$work/serve.log" | tail -5
say "done"
