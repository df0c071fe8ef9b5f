"""The openai library against Corral's /v1 API."""

import json

import openai
import pytest

from conftest import CHAT, EMBED, QUESTION, TOOLS, WEATHER_QUESTION, cosine, goldens

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def client(base_url, api_key):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key)


def test_chat(client):
    r = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": QUESTION}], temperature=0)
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_with_usage(client):
    chunks = list(client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": QUESTION}], temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_max_tokens_cuts_the_answer(client):
    r = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": QUESTION}], max_tokens=2)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 2


def test_json_schema(client):
    schema = {"type": "object", "properties": {"capital": {"type": "string"}}, "required": ["capital"]}
    r = client.chat.completions.create(
        model=CHAT, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France? Reply in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
    assert "Paris" in json.loads(r.choices[0].message.content)["capital"]


def test_tools_round_trip(client):
    messages = [{"role": "user", "content": WEATHER_QUESTION}]
    r = client.chat.completions.create(model=TOOLS, messages=messages, tools=[WEATHER_TOOL], temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    # The result goes back, tied to the call by its id; the conversation grows by both. (What
    # this 0.5B model says next at greedy is another call, so only the prompt is checked.)
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees Celsius"})
    second = client.chat.completions.create(model=TOOLS, messages=messages, tools=[WEATHER_TOOL], temperature=0)
    assert second.usage.prompt_tokens >= r.usage.prompt_tokens + 20
    assert second.usage.prompt_tokens_details.cached_tokens > 0, "the shared history came from the prompt cache"
    assert second.choices[0].finish_reason in ("stop", "tool_calls")


def test_tools_streaming(client):
    chunks = list(client.chat.completions.create(
        model=TOOLS, messages=[{"role": "user", "content": WEATHER_QUESTION}], tools=[WEATHER_TOOL],
        temperature=0, stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_completions(client):
    # As in Ollama, the prompt goes through the model's template.
    r = client.completions.create(model=CHAT, prompt=QUESTION, max_tokens=20, temperature=0)
    assert "Paris" in r.choices[0].text
    assert r.object == "text_completion"


def test_completions_fill_in_the_middle(client):
    r = client.completions.create(model=TOOLS, prompt="def add(a, b):\n    return ", suffix="\n\nprint(add(2, 3))\n",
                                  max_tokens=8, temperature=0)
    assert "a + b" in r.choices[0].text


def test_models(client):
    ids = {m.id for m in client.models.list()}
    assert {f"{CHAT}:latest", f"{TOOLS}:latest"} <= ids
    # The id is the name as asked, as Ollama answers.
    m = client.models.retrieve(CHAT)
    assert m.id == CHAT and m.owned_by == "library"
    assert client.models.retrieve(f"{CHAT}:latest").id == f"{CHAT}:latest"


def test_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=CHAT, messages=[])
    assert "too short" in str(e.value)


def test_embeddings(client):
    texts, want = goldens()
    r = client.embeddings.create(model=EMBED, input=texts)
    assert [d.index for d in r.data] == [0, 1, 2]
    for d, ref in zip(r.data, want):
        assert cosine(d.embedding, ref) > 0.999
    # The library asks for base64 by default when numpy is around; ask explicitly for both forms.
    one = client.embeddings.create(model=EMBED, input=texts[0], encoding_format="float")
    assert len(one.data[0].embedding) == 384
    assert r.usage.prompt_tokens > 20


def test_responses(client):
    r = client.responses.create(model=CHAT, input=QUESTION, temperature=0)
    assert "Paris" in r.output_text
    assert r.status == "completed" and r.usage.output_tokens > 0


def test_responses_streaming(client):
    events = list(client.responses.create(model=CHAT, input=QUESTION, temperature=0, stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "Paris" in text
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.output_text == text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_tools(client):
    tool = {"type": "function", "name": "get_weather", "description": "Get the current weather for a city",
            "parameters": WEATHER_TOOL["function"]["parameters"]}
    r = client.responses.create(model=TOOLS, input=WEATHER_QUESTION, tools=[tool], temperature=0)
    call = next(o for o in r.output if o.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    # The call and its output go back as input items.
    second = client.responses.create(model=TOOLS, tools=[tool], temperature=0, input=[
        {"role": "user", "content": WEATHER_QUESTION},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 21 degrees Celsius"},
    ])
    assert second.usage.input_tokens >= r.usage.input_tokens + 20
