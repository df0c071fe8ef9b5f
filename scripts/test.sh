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
# The coding agents `corral launch` starts, pinned (crates/corral/tests/agents.rs).
CORRAL_TEST_AGENTS=$(scripts/agents-env.sh)
export CORRAL_TEST_AGENTS
# llama.cpp's Vulkan module for this source (built once, then cached), which the Vulkan tests run
# on Mesa's software device (crates/corral/tests/vulkan.rs).
CORRAL_TEST_VULKAN=$(scripts/gpu-module.sh vulkan)
export CORRAL_TEST_VULKAN
cargo test --workspace --locked "$@"
