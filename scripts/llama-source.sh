# Sourced, not run: helpers about the llama.cpp source Corral is built from.

# llama_source_id DIR prints the identity of the llama.cpp tree in DIR: the sha256 of the sorted
# `sha256sum` listing of every file under ggml/, as `sha256:<hex>`. The engine's build script
# computes the same over the tree it compiles (crates/corral-engine/build.rs), and Corral loads a
# backend module only if the `.source` file beside it holds that identity.
llama_source_id() {
  local hex
  hex=$(cd "$1" && find ggml -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  echo "sha256:$hex"
}

# llama_source_dir prints the llama.cpp tree vendored in the llama-cpp-sys-2 crate Cargo.lock pins
# (run from the repository root, after `cargo fetch`).
llama_source_dir() {
  local manifest
  manifest=$(cargo metadata --format-version 1 --locked |
    python3 -c 'import json, sys
m = json.load(sys.stdin)
print(next(p["manifest_path"] for p in m["packages"] if p["name"] == "llama-cpp-sys-2"))')
  echo "$(dirname "$manifest")/llama.cpp"
}
