"""The official clients over HTTPS (issue 31): the Rust harness (crates/corral/tests/clients.rs,
`official_client_libraries_over_https`) starts the server with a certificate from a CA of its own
and names that CA in SSL_CERT_FILE, which httpx (under ollama, openai and anthropic) and Python's
ssl module read. Each client talks to https://localhost:PORT as it would to any server."""

import ssl
import urllib.request

import anthropic
import certifi
import httpx
import ollama
import openai
import pytest

from conftest import CHAT


def test_ollama_streams_a_chat_over_https(base_url):
    assert base_url.startswith("https://")
    client = ollama.Client(host=base_url)
    assert CHAT in [m.model.split(":")[0] for m in client.list().models]
    parts = list(client.chat(model=CHAT, messages=[{"role": "user", "content": "Say hi."}], stream=True,
                             options={"num_predict": 8, "temperature": 0}))
    assert parts[-1].done and "".join(p.message.content for p in parts)


def test_openai_over_https(base_url, api_key):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=0)
    r = client.chat.completions.create(model=CHAT, max_tokens=8, temperature=0,
                                       messages=[{"role": "user", "content": "Say hi."}])
    assert r.choices[0].message.content


def test_anthropic_over_https(base_url, api_key):
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0)
    r = client.messages.create(model=CHAT, max_tokens=8, messages=[{"role": "user", "content": "Say hi."}])
    assert r.content[0].text


def test_python_ssl_module_reaches_the_liveness_probe(base_url):
    with urllib.request.urlopen(f"{base_url}/api/version") as r:
        assert r.status == 200


def test_a_client_that_does_not_trust_the_ca_refuses_the_server(base_url):
    public_only = ssl.create_default_context(cafile=certifi.where())
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{base_url}/api/version", verify=public_only)
    # ollama-python words every connection failure as "Failed to connect to Ollama".
    with pytest.raises(ConnectionError):
        ollama.Client(host=base_url, verify=public_only).list()
