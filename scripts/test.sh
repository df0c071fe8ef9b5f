#!/usr/bin/env bash
# Runs the whole test suite: fetches the pinned test models (cheap when already cached), then
# every crate's unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-models.sh >/dev/null
cargo test --workspace --locked "$@"
