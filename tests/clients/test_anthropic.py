"""The anthropic library against Corral's Messages API."""

import anthropic
import pytest

from conftest import CHAT, QUESTION, TOOLS, WEATHER_QUESTION

# This SDK version has no `temperature` argument; the API field still exists and is sent as is.
GREEDY = {"temperature": 0}

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def client(base_url, api_key):
    return anthropic.Anthropic(base_url=base_url, api_key=api_key)


def test_messages(client):
    r = client.messages.create(model=CHAT, max_tokens=64, extra_body=GREEDY,
                               messages=[{"role": "user", "content": QUESTION}])
    assert r.content[0].type == "text" and "Paris" in r.content[0].text
    assert r.stop_reason == "end_turn"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0


def test_system_and_max_tokens(client):
    r = client.messages.create(model=CHAT, max_tokens=3, system="You are a geography teacher.",
                               messages=[{"role": "user", "content": QUESTION}])
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 3


def test_count_tokens_is_what_the_answer_reads(client):
    system, messages = "You are a geography teacher.", [{"role": "user", "content": QUESTION}]
    counted = client.messages.count_tokens(model=CHAT, system=system, messages=messages)
    r = client.messages.create(model=CHAT, max_tokens=3, system=system, messages=messages)
    # Tokens read from the prompt cache (an earlier test asked the same) are counted apart.
    assert counted.input_tokens == r.usage.input_tokens + (r.usage.cache_read_input_tokens or 0)
    longer = client.messages.count_tokens(model=CHAT, system=system,
                                          messages=[{"role": "user", "content": QUESTION + " Say why."}])
    assert longer.input_tokens > counted.input_tokens


def test_streaming(client):
    with client.messages.stream(model=CHAT, max_tokens=64, extra_body=GREEDY,
                                messages=[{"role": "user", "content": QUESTION}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Paris" in text
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"


def test_tools(client):
    r = client.messages.create(model=TOOLS, max_tokens=128, extra_body=GREEDY, tools=[WEATHER_TOOL],
                               messages=[{"role": "user", "content": WEATHER_QUESTION}])
    assert r.stop_reason == "tool_use"
    use = next(b for b in r.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}

    # The result goes back; the conversation grows by the call and the result.
    second = client.messages.create(model=TOOLS, max_tokens=128, extra_body=GREEDY, tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": WEATHER_QUESTION},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 degrees Celsius"}]},
    ])
    # Anthropic counts prompt-cache reads apart from the input tokens.
    seen = second.usage.input_tokens + (second.usage.cache_read_input_tokens or 0)
    assert seen >= r.usage.input_tokens + 20
    assert second.usage.cache_read_input_tokens > 0
    assert second.stop_reason in ("end_turn", "tool_use")


def test_tools_streaming(client):
    with client.messages.stream(model=TOOLS, max_tokens=128, extra_body=GREEDY, tools=[WEATHER_TOOL],
                                messages=[{"role": "user", "content": WEATHER_QUESTION}]) as stream:
        final = stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_errors(client):
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=CHAT, max_tokens=0, messages=[{"role": "user", "content": "hi"}])
