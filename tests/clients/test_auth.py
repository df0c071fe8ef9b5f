"""API keys (issue 13): the server under test asks for one. Each client library sends it its own
way (the other test modules pass with it); here, a missing or wrong key is each library's own
authentication error, and the liveness probes need none."""

import urllib.request

import anthropic
import ollama
import openai
import pytest

from conftest import CHAT


def test_ollama_wrong_key_is_a_401(base_url):
    client = ollama.Client(host=base_url, headers={"Authorization": "Bearer wrong"})
    with pytest.raises(ollama.ResponseError) as e:
        client.list()
    assert e.value.status_code == 401
    assert e.value.error == "invalid API key"


def test_openai_wrong_key_is_an_authentication_error(base_url):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        client.models.list()
    assert e.value.status_code == 401
    assert "invalid API key" in str(e.value)


def test_anthropic_wrong_key_is_an_authentication_error(base_url):
    client = anthropic.Anthropic(base_url=base_url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        client.messages.create(model=CHAT, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"


def test_no_key_is_refused_but_liveness_probes_answer(base_url):
    with urllib.request.urlopen(f"{base_url}/api/version") as r:
        assert r.status == 200
    with urllib.request.urlopen(f"{base_url}/") as r:
        assert r.read() == b"Ollama is running"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{base_url}/api/tags")
    assert e.value.code == 401
    assert e.value.headers["WWW-Authenticate"] == "Bearer"
