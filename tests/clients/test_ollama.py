"""ollama-python against Corral's native API."""

import json

import ollama
import pytest

from conftest import CHAT, EMBED, QUESTION, TOOLS, WEATHER_QUESTION, cosine, goldens


@pytest.fixture(scope="module")
def client(base_url):
    return ollama.Client(host=base_url)


def test_chat(client):
    r = client.chat(model=CHAT, messages=[{"role": "user", "content": QUESTION}], options={"temperature": 0})
    assert "Paris" in r.message.content
    assert r.done and r.eval_count > 0 and r.prompt_eval_count > 0


def test_chat_streaming(client):
    parts = list(client.chat(model=CHAT, messages=[{"role": "user", "content": QUESTION}],
                             options={"temperature": 0}, stream=True))
    assert len(parts) > 2
    assert "Paris" in "".join(p.message.content for p in parts)
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert not any(p.done for p in parts[:-1])


def test_generate(client):
    r = client.generate(model=CHAT, prompt=QUESTION, options={"temperature": 0})
    assert "Paris" in r.response
    assert r.context


def test_fill_in_the_middle(client):
    # Qwen2.5-Coder's vocabulary has FIM tokens: the answer is what goes between prompt and suffix.
    assert "insert" in client.show(TOOLS).capabilities
    r = client.generate(model=TOOLS, prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(2, 3))\n",
                        options={"temperature": 0, "num_predict": 8})
    assert "a + b" in r.response
    with pytest.raises(ollama.ResponseError) as e:
        client.generate(model=CHAT, prompt="x", suffix="y")
    assert e.value.status_code == 400 and "insert" in str(e.value)


def test_structured_output(client):
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    r = client.chat(model=CHAT, messages=[{"role": "user", "content": "What is the capital of France? Reply in JSON."}],
                    format=schema, options={"temperature": 0})
    answer = json.loads(r.message.content)
    assert "Paris" in answer["capital"]


def test_tools(client):
    def get_weather(city: str) -> str:
        """Get the current weather for a city.

        Args:
          city: The name of the city
        """
        return "Sunny, 21 C"

    r = client.chat(model=TOOLS, messages=[{"role": "user", "content": WEATHER_QUESTION}], tools=[get_weather],
                    options={"temperature": 0})
    assert r.message.tool_calls, r.message
    call = r.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"city": "Paris"}


def test_list_and_show(client):
    names = {m.model for m in client.list().models}
    assert {f"{CHAT}:latest", f"{TOOLS}:latest"} <= names
    shown = client.show(TOOLS)
    assert "tools" in shown.capabilities
    assert shown.details.family == "qwen2"
    assert shown.modelinfo["general.architecture"] == "qwen2"


def test_missing_model(client):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 404


def test_embed(client):
    texts, want = goldens()
    r = client.embed(model=EMBED, input=texts)
    assert len(r.embeddings) == 3
    for got, ref in zip(r.embeddings, want):
        assert cosine(got, ref) > 0.999
    assert r.prompt_eval_count > 20
