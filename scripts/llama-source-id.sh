# Sourced, not run. llama_source_id DIR prints the identity of the llama.cpp tree in DIR: the
# sha256 of the sorted `sha256sum` listing of every file under ggml/, as `sha256:<hex>`. The
# engine's build script computes the same over the tree it compiles (crates/corral-engine/build.rs),
# and Corral loads a backend module only if the `.source` file beside it holds that identity.
llama_source_id() {
  local hex
  hex=$(cd "$1" && find ggml -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  echo "sha256:$hex"
}
