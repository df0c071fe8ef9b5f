#!/usr/bin/env bash
# Prints the ggml CMake flags of a CPU variant (default: the one Corral's runner loads on this
# machine), from ggml's own variant list in the source Corral is built from, so that a static
# llama.cpp build for comparison has exactly the kernels Corral runs here.
#
#   bench/variant-flags.sh              # e.g. -DGGML_SSE42=ON -DGGML_AVX=ON … -DGGML_AVX512=OFF …
#   bench/variant-flags.sh haswell      # the AVX2 set Corral was built with before run-time backends
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/llama-source.sh
source scripts/llama-source.sh
variant=${1:-}
if [ -z "$variant" ]; then
  [ -x target/release/corral ] || { echo "build Corral first (cargo build --release -p corral)" >&2; exit 1; }
  variant=$(target/release/corral runner --probe 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["cpu_variant"])')
fi
lists=$(llama_source_dir)/ggml/src/CMakeLists.txt
line=$(grep -E "ggml_add_cpu_backend_variant\($variant( |\))" "$lists" | head -1)
[ -n "$line" ] || { echo "no CPU variant named $variant in $lists" >&2; exit 1; }
features=" $(echo "$line" | sed -E 's/.*ggml_add_cpu_backend_variant\([^ )]+ *([^)]*)\).*/\1/') "
for f in SSE42 AVX F16C FMA AVX2 BMI2 AVX_VNNI AVX512 AVX512_VBMI AVX512_VNNI AVX512_BF16 AMX_TILE AMX_INT8; do
  on=OFF
  [[ "$features" == *" $f "* ]] && on=ON
  printf -- '-DGGML_%s=%s ' "$f" "$on"
done
echo
