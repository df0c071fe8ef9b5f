#!/usr/bin/env bash
# Runs the whole test suite: fetches the pinned test models (cheap when already cached), then
# every crate's unit and integration tests, the end-to-end ones with the official client libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
scripts/fetch-models.sh >/dev/null
# The official client libraries for the end-to-end tests (crates/corral/tests/clients.rs).
CORRAL_TEST_PYTHON=$(scripts/client-env.sh)
export CORRAL_TEST_PYTHON
cargo test --workspace --locked "$@"
