"""Shared fixtures: where the Corral server under test listens (set by the Rust harness in
crates/corral/tests/clients.rs, which starts it and creates the models)."""

import os

import pytest


@pytest.fixture(scope="session")
def base_url() -> str:
    url = os.environ.get("CORRAL_URL")
    if not url:
        pytest.fail("CORRAL_URL is not set: run these through `cargo test --test clients`")
    return url


# The chat model (SmolLM2-135M-Instruct) and the tools model (Qwen2.5-Coder-0.5B-Instruct).
CHAT = "smollm2"
TOOLS = "qwen"
QUESTION = "What is the capital of France? Answer in one sentence."
WEATHER_QUESTION = "What's the weather like in Paris right now?"
