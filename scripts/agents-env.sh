#!/usr/bin/env bash
# Installs (or reuses) the coding agents that `corral launch` starts, at the versions pinned in
# tests/agents/package.json, from the npm registry into Corral's cache (outside the source tree),
# and prints the directory of their programs. npm runs install scripts or not depending on its
# version and policy; the two packages whose scripts put their native program in place have them
# run here explicitly (they copy a file from the platform's package, nothing is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${CORRAL_AGENTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/corral/agents}"
stamp="$dir/package.sha256"
want=$(sha256sum tests/agents/package.json | cut -d' ' -f1)
if [ ! -x "$dir/node_modules/.bin/claude" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  command -v npm >/dev/null || { echo "npm is not installed (scripts/setup.sh --tests installs it)" >&2; exit 1; }
  rm -rf "$dir"
  mkdir -p "$dir"
  cp tests/agents/package.json "$dir/"
  (cd "$dir" && npm install --no-fund --no-audit --no-package-lock --ignore-scripts --loglevel=error >&2)
  (cd "$dir/node_modules/@anthropic-ai/claude-code" && node install.cjs >&2)
  (cd "$dir/node_modules/opencode-ai" && node postinstall.mjs >&2)
  echo "$want" >"$stamp"
fi
for program in claude codex opencode; do
  "$dir/node_modules/.bin/$program" --version >/dev/null || { echo "$program in $dir does not run" >&2; exit 1; }
done
echo "$dir/node_modules/.bin"
