#!/usr/bin/env bash
# Builds llama.cpp's own multimodal CLI, llama-mtmd-cli, from exactly the llama.cpp tree Corral
# compiles (vendored in llama-cpp-sys-2), with the kernels of the CPU variant Corral's runner loads
# here (bench/variant-flags.sh), into a cache outside the tree. Prints the bin directory.
#
# The crate ships only some of llama.cpp's tools (no llama-server sources), and the tools'
# CMakeLists names all of them, so the copy gets a tools/CMakeLists.txt that adds only the tool
# directories present. Nothing under ggml/, src/ or tools/mtmd/ changes. `CPU_VARIANT=zen4` (a ggml
# variant name) picks the kernels without asking a release build of Corral.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/llama-source.sh
source scripts/llama-source.sh
src=$(llama_source_dir)
id=$(llama_source_id "$src")
flags=$(bench/variant-flags.sh ${CPU_VARIANT:-} | tr ' ' '\n' | grep . | sort | tr '\n' ' ')
cache="${XDG_CACHE_HOME:-$HOME/.cache}/corral/mtmd-cli"
bin="$cache/build/bin"
stamp="$id $flags"
if [ -x "$bin/llama-mtmd-cli" ] && [ "$(cat "$cache/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$bin"
  exit 0
fi
rm -rf "$cache"
mkdir -p "$cache"
cp -a "$src" "$cache/src"
chmod -R u+w "$cache/src"
# Every `add_subdirectory(x)` of tools/ only if tools/x has a CMakeLists.txt.
sed -E -i 's|^([[:space:]]*)add_subdirectory\(([A-Za-z0-9_-]+)\)|\1if (EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/\2/CMakeLists.txt)\n\1    add_subdirectory(\2)\n\1endif()|' \
  "$cache/src/tools/CMakeLists.txt"
# shellcheck disable=SC2086
cmake -S "$cache/src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF $flags \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$cache/build" --target llama-mtmd-cli -j "$(nproc)" >&2
echo "$stamp" >"$cache/stamp"
echo "$bin"
