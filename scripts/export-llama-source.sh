#!/usr/bin/env bash
# Packs the exact llama.cpp source this build of Corral compiles (the tree vendored in the
# llama-cpp-sys-2 crate that Cargo.lock pins) into a tarball, with its identity in a SOURCE file,
# so that GPU backends can be built from it on a machine without Rust
# (scripts/build-gpu-backend.sh).
#
#   scripts/export-llama-source.sh                    # writes target/llama.cpp-source.tar.gz
#   scripts/export-llama-source.sh /tmp/src.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/llama.cpp-source.tar.gz}

# shellcheck source=scripts/llama-source.sh
source scripts/llama-source.sh
src=$(llama_source_dir)
[ -d "$src/ggml" ] || { echo "no llama.cpp tree at $src (run cargo fetch first)" >&2; exit 1; }

id=$(llama_source_id "$src")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/llama.cpp"
cp -a "$src/." "$work/llama.cpp/"
echo "$id" >"$work/llama.cpp/SOURCE"
mkdir -p "$(dirname "$out")"
tar -C "$work" -czf "$out" llama.cpp
echo "$out ($id)" >&2
echo "$out"
