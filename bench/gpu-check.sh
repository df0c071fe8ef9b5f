#!/usr/bin/env bash
# The GPU check in one run, on a machine with a GPU, cmake and nvcc but no Rust and no network
# (the lent H100/H200 machine). BUNDLE is made where Corral was built (bench/gpu-bundle.sh): the
# corral binary, its lib/corral directory, the llama.cpp source it was built from, and the Vulkan
# module with llama.cpp's tools built with it (vulkan.tar.xz).
#
#   bench/gpu-check.sh BUNDLE
#
# One CMake build of that source makes the CUDA backend for Corral and llama.cpp's own llama-bench
# and llama-batched-bench (about 5.5 minutes for one architecture on 16 cores). Meanwhile
# random-weight models of real shapes are written (bench/random_gguf.py), the CPU alone is
# measured, and then the Vulkan module (on the CPU cores the build leaves: its figures and
# llama.cpp's are taken under the same load). For each backend it prints: what the server found
# at start, the placement (`corral ps`), CPU-vs-GPU greedy agreement, single-stream decode against
# llama-bench tg128, and 32 concurrent streams against llama-batched-bench at 32 sequences.
# Environment: BACKENDS (default "cuda vulkan"), CUDA_ARCHITECTURES (default 90), WORK (default
# /tmp/corral-gpu), SKIP_BUILD=1 to reuse a CUDA build in $WORK/build, BIG_SHAPE and SMALL_SHAPE
# (random_gguf.py shapes, default llama8b and qwen0.5b). Without an NVIDIA GPU, BACKENDS=vulkan
# with small shapes runs the Vulkan part on any Vulkan device (GGML_VK_VISIBLE_DEVICES=0 for
# Mesa's lavapipe).
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=$(cd "$1" && pwd)
work=${WORK:-/tmp/corral-gpu}
backends=" ${BACKENDS:-cuda vulkan} "
big=${BIG_SHAPE:-llama8b}
small=${SMALL_SHAPE:-qwen0.5b}
mkdir -p "$work"
say() { echo "[$(date +%T)] $*"; }
wanted() { [[ $backends == *" $1 "* ]]; }
corral=$bundle/corral
libs=$bundle/lib/corral
servers=()
trap 'kill "${servers[@]}" 2>/dev/null' EXIT

if ldd "$corral" | grep -q "not found"; then
  ldd "$corral" | grep "not found"
  say "using the bundle's copies of the missing system libraries"
  export LD_LIBRARY_PATH=$bundle/fallback-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
if wanted cuda && [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building the CUDA backend, llama-bench and llama-batched-bench from $(tar -xzOf "$bundle/llama.cpp-source.tar.gz" llama.cpp/SOURCE)"
  (
    CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-90} BUILD_DIR=$work/build \
      EXTRA_TARGETS="ggml-cpu llama-bench llama-batched-bench" \
      scripts/build-gpu-backend.sh "$bundle/llama.cpp-source.tar.gz" "$libs" >"$work/build.log" 2>&1
    echo $? >"$work/build.rc"
  ) &
  builder=$!
fi
say "writing random-weight models ($big, $small)"
python3 bench/random_gguf.py "$small" "$work/small.gguf"
python3 bench/random_gguf.py "$big" "$work/big.gguf"
for m in big small; do echo "FROM $work/$m.gguf" >"$work/$m.Modelfile"; done

# Starts `corral serve` on PORT with the library directory LIBS, logging to LOG, and creates the
# two models.
serve() {
  local port=$1 dir=$2 log=$3
  export OLLAMA_HOST=127.0.0.1:$port OLLAMA_MODELS=$work/models-$port OLLAMA_NUM_PARALLEL=32 OLLAMA_CONTEXT_LENGTH=512
  rm -rf "$OLLAMA_MODELS"
  CORRAL_LIBRARY_PATH=$dir "$corral" serve >"$log" 2>&1 &
  server=$!
  servers+=("$server")
  for _ in $(seq 300); do "$corral" list >/dev/null 2>&1 && break; sleep 0.2; done
  for m in big small; do
    "$corral" create "$m" -f "$work/$m.Modelfile" >/dev/null || { tail "$log"; return 1; }
  done
}

# LIBS without the GPU modules, and without the CPU variant that failed, if one did.
libs_for() {
  local dir=$work/libs-$1
  rm -rf "$dir"
  cp -r "$libs" "$dir"
  rm -f "$dir"/libggml-cuda.so* "$dir"/libggml-vulkan.so*
  [ -n "${bad_variant:-}" ] && rm -f "$dir/libggml-cpu-$bad_variant.so"
  echo "$dir"
}

say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_tile|amx_int8)$' | tr '\n' ' ')"
CORRAL_LIBRARY_PATH=$libs "$corral" runner --probe
serve 11500 "$libs" "$work/serve-cpu.log" && python3 bench/gpu_measure.py single small 32 1
cpu_ok=$?
grep -E "variant|skipped|runner stopped|model loaded" "$work/serve-cpu.log"
kill "$server"; wait "$server" 2>/dev/null
if [ $cpu_ok != 0 ]; then
  bad_variant=$(CORRAL_LIBRARY_PATH=$libs "$corral" runner --probe | python3 -c 'import json,sys; print(json.load(sys.stdin)["cpu_variant"])')
  say "the CPU alone failed with the $bad_variant variant: the rest runs without it"
fi

# One backend's figures: llama.cpp's tools (in TOOLS) first, then Corral with LIBS on PORT.
measure() {
  local name=$1 dir=$2 tools=$3 port=$4
  say "== $name: llama-bench (tg128, pp512; all layers on the GPU)"
  "$tools/llama-bench" -m "$work/big.gguf" -ngl 99 -p 512 -n 128 -r 3 2>/dev/null
  "$tools/llama-bench" -m "$work/small.gguf" -ngl 99 -p 512 -n 128 -r 3 2>/dev/null
  say "== $name: llama-batched-bench ($big shape, 128 prompt + 128 generated tokens, 1 and 32 sequences)"
  "$tools/llama-batched-bench" -m "$work/big.gguf" -ngl 99 -c 9000 -b 2048 -ub 512 \
    -npp 128 -ntg 128 -npl 1,32 2>/dev/null | grep '^|'
  say "== $name: corral serve"
  serve "$port" "$dir" "$work/serve-$name.log" || return 1
  grep -E "backend|device|refused|skipped" "$work/serve-$name.log"
  say "placement"
  python3 bench/gpu_measure.py placement big
  "$corral" ps
  python3 bench/gpu_measure.py agree small 64
  say "single stream ($big shape, 128 tokens)"
  python3 bench/gpu_measure.py single big 128 3
  say "32 concurrent streams ($big shape, 128 tokens each)"
  python3 bench/gpu_measure.py streams big 32 128
  python3 bench/gpu_measure.py streams big 32 128
  say "single stream ($small shape)"
  python3 bench/gpu_measure.py single small 128 3
  "$corral" ps
  grep -E "model loaded" "$work/serve-$name.log"
  grep -iE "warn|error" "$work/serve-$name.log" | tail -5
  kill "$server"; wait "$server" 2>/dev/null
}

if wanted vulkan; then
  rm -rf "$work/vulkan"
  tar -xJf "$bundle/vulkan.tar.xz" -C "$work"
  dir=$(libs_for vulkan)
  cp "$work/vulkan/libggml-vulkan.so" "$work/vulkan/libggml-vulkan.so.source" "$dir/"
  if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
    say "no Vulkan loader on this machine: using the bundle's"
    mkdir -p "$work/vulkan-loader"
    cp "$work/vulkan/libvulkan.so.1" "$work/vulkan-loader/"
    export LD_LIBRARY_PATH=$work/vulkan-loader${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  # The tools load their backends from their own directory; Corral from DIR.
  found=$(CORRAL_LIBRARY_PATH=$dir "$corral" runner --probe --libs "$dir")
  echo "$found"
  if echo "$found" | python3 -c 'import json,sys; sys.exit(not any(d["id"].startswith("Vulkan") and d["kind"] == "gpu" for d in json.load(sys.stdin)["devices"]))'; then
    measure vulkan "$dir" "$work/vulkan" 11501
  else
    say "Vulkan: no GPU device. Vulkan drivers (ICD files) here:"
    ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1
  fi
fi

if wanted cuda; then
  if [ -n "${builder:-}" ]; then
    wait "$builder"
    if [ "$(cat "$work/build.rc")" != 0 ]; then
      tail -40 "$work/build.log"
      say "build failed"
      exit 1
    fi
    say "build done: $(grep -c 'Building CUDA' "$work/build.log") CUDA units"
  fi
  ls -la "$libs"/libggml-cuda.so*
  dir=$(libs_for cuda)
  cp "$libs"/libggml-cuda.so* "$dir/"
  measure cuda "$dir" "$work/build/bin" 11502
fi
say "done"
