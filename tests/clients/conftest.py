"""Shared fixtures: where the Corral server under test listens (set by the Rust harness in
crates/corral/tests/clients.rs, which starts it and creates the models)."""

import json
import math
import os
from pathlib import Path

import pytest


def harness_env(name: str) -> str:
    """A variable the Rust harness sets; without it these tests cannot run."""
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run these through `cargo test --test clients`")
    return value


@pytest.fixture(scope="session")
def base_url() -> str:
    return harness_env("CORRAL_URL")


@pytest.fixture(scope="session")
def api_key() -> str:
    """The key the server asks for. ollama-python finds it in OLLAMA_API_KEY by itself."""
    return harness_env("CORRAL_API_KEY")


# The chat model (SmolLM2-135M-Instruct) and the tools model (Qwen2.5-Coder-0.5B-Instruct).
CHAT = "smollm2"
TOOLS = "qwen"
QUESTION = "What is the capital of France? Answer in one sentence."
WEATHER_QUESTION = "What's the weather like in Paris right now?"
EMBED = "all-minilm"


def goldens():
    """sentence-transformers' vectors for three texts with all-MiniLM-L6-v2."""
    path = Path(__file__).resolve().parents[2] / "crates/corral-testkit/data/minilm-goldens.json"
    data = json.loads(path.read_text())
    return data["texts"], data["vectors"]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))
