#!/usr/bin/env bash
# Makes what bench/gpu-check.sh needs on a GPU machine without Rust: the release corral binary
# (stripped), its lib/corral directory, the llama.cpp source it was built from with the sources of
# llama.cpp's benchmark tools added (bench/llama-bench-source.sh), the Vulkan module and those tools
# built with it (bench/gpu-bundle-vulkan.sh, about 4.5 minutes here; BUNDLE_VULKAN=0 leaves it
# out), and this machine's copies of the system libraries the binary links besides glibc, used
# there only if that machine lacks them.
#
#   bench/gpu-bundle.sh [DIR]          # default .gpu (ignored by git)
#
# The bundle carries the CPU variants the release build made: by default this machine's best and
# x64 (CORRAL_CPU_VARIANTS), so on the GPU machine the CPU side runs on one of those, x64 at worst.
# For CPU figures there that use its own best variant, build with CORRAL_CPU_VARIANTS=all.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.gpu}
cargo build --release --locked -p corral >&2
rm -rf "$dir"
mkdir -p "$dir/lib"
cp target/release/corral "$dir/corral"
strip "$dir/corral"
cp -r target/release/lib/corral "$dir/lib/corral"
strip --strip-unneeded "$dir"/lib/corral/*.so* 2>/dev/null || true
bench/llama-bench-source.sh "$dir/llama.cpp-source.tar.gz" >/dev/null
if [ "${BUNDLE_VULKAN:-1}" != 0 ]; then
  bench/gpu-bundle-vulkan.sh "$dir/llama.cpp-source.tar.gz" "$dir/vulkan.tar.xz"
fi
mkdir -p "$dir/fallback-lib"
ldd target/release/corral | awk '/libgomp|libssl|libcrypto|libstdc|libgcc_s/ { print $3 }' | xargs -I{} cp -L {} "$dir/fallback-lib/"
du -sh "$dir" >&2
