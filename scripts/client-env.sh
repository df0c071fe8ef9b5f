#!/usr/bin/env bash
# Makes (or reuses) a virtual environment with the official client libraries pinned in
# tests/clients/requirements.txt, outside the source tree, and prints its python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CORRAL_CLIENT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/corral/client-venv}"
stamp="$venv/requirements.sha256"
want=$(sha256sum tests/clients/requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt >&2
  echo "$want" >"$stamp"
fi
echo "$venv/bin/python"
