#!/usr/bin/env bash
# The load harness of issue 13: 64 clients for 60 s against a release `corral serve` on loopback,
# over two models, then the figures (see bench/load.py). Bounded in time; exits non-zero when
# there were errors, a slow /api/tags (p99 >= 50 ms), a bad exit or a runner left behind.
#
#   bench/load.sh                        # 64 clients, 60 s
#   CLIENTS=16 SECONDS_=30 bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p corral
models=$(scripts/fetch-models.sh)
python3 bench/load.py --corral target/release/corral --models "$models" \
  --clients "${CLIENTS:-64}" --seconds "${SECONDS_:-60}"
