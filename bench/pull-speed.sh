#!/usr/bin/env bash
# Pull throughput from a loopback docker-registry: `corral pull` of SmolLM2 (98 MB) against `curl`
# fetching the same blob from the same registry, in the same run. Prints the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p corral >/dev/null
models_cache=$(scripts/fetch-models.sh)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
reg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$reg_port}
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
export OLLAMA_HOST=127.0.0.1:11599 OLLAMA_MODELS=$work/models
target/release/corral serve 2>"$work/serve.log" &
for _ in $(seq 50); do curl -s "http://$OLLAMA_HOST/" >/dev/null && curl -s "http://127.0.0.1:$reg_port/v2/" >/dev/null && break; sleep 0.1; done
echo "FROM $models_cache/SmolLM2-135M-Instruct.Q4_1.gguf" >"$work/Modelfile"
name=127.0.0.1:$reg_port/bench/smollm2:latest
target/release/corral create "$name" -f "$work/Modelfile" 2>/dev/null
target/release/corral push "$name" 2>/dev/null
blob=sha256:$(sha256sum "$models_cache/SmolLM2-135M-Instruct.Q4_1.gguf" | cut -d' ' -f1)
size=$(stat -c %s "$models_cache/SmolLM2-135M-Instruct.Q4_1.gguf")
runs=${RUNS:-5}
corral_best=999; curl_best=999
for _ in $(seq "$runs"); do
  target/release/corral rm "$name" >/dev/null
  t0=$(date +%s.%N); target/release/corral pull "$name" 2>/dev/null; t1=$(date +%s.%N)
  curl -s -o "$work/blob" "http://127.0.0.1:$reg_port/v2/bench/smollm2/blobs/$blob"; t2=$(date +%s.%N)
  corral_best=$(python3 -c "print(min($corral_best, $t1-$t0))")
  curl_best=$(python3 -c "print(min($curl_best, $t2-$t1))")
done
python3 - "$size" "$corral_best" "$curl_best" <<'PY'
import sys
size, c, u = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"blob {size/1e6:.1f} MB, best of runs")
print(f"corral pull (manifest + 5 blobs, verified, written to the store): {c:.3f} s = {size/c/1e6:.0f} MB/s")
print(f"curl of the weights blob to a file:                              {u:.3f} s = {size/u/1e6:.0f} MB/s")
print(f"ratio corral/curl throughput: {u/c:.2f}")
PY
