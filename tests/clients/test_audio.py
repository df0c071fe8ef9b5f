"""Sound through the OpenAI client (issue 29): `input_audio` parts and `audio.transcriptions`.

The model is SmolLM2 with a random-weight audio projector (an Ultravox-style Whisper encoder) of
its width, made by the harness with two recordings; its "transcriptions" are noise, so what these
tests check is that each recording reaches the model: two recordings, two answers; the same
recording, the same answer; the shapes and errors OpenAI's client expects.
"""

import base64
from pathlib import Path

import ollama
import openai
import pytest

from conftest import harness_env

AUDIO = "smolaudio"


def recordings():
    folder = Path(harness_env("CORRAL_TEST_IMAGES"))
    return folder / "a.wav", folder / "b.wav"


@pytest.fixture(scope="module")
def client(base_url, api_key):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key)


def test_show_reports_audio(base_url):
    assert "audio" in ollama.Client(host=base_url).show(AUDIO).capabilities


def test_transcriptions(client):
    a, b = recordings()

    def transcribe(path, **kw):
        with open(path, "rb") as f:
            return client.audio.transcriptions.create(model=AUDIO, file=f, **kw)

    first, second = transcribe(a), transcribe(b)
    assert first.text and second.text and first.text != second.text
    assert transcribe(a).text == first.text
    # response_format "text": the words alone, as plain text.
    assert transcribe(a, response_format="text").strip() == first.text


def test_transcription_errors(client):
    a, _ = recordings()
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model=AUDIO, file=("empty.wav", b""))
    assert "audio file is empty" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="smollm2", file=open(a, "rb"))
    assert "missing data required" in str(e.value)


def test_input_audio_parts(client):
    def ask(path):
        data = base64.b64encode(path.read_bytes()).decode()
        r = client.chat.completions.create(
            model=AUDIO, temperature=0, max_tokens=12,
            messages=[{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}},
                {"type": "text", "text": "What is said in this recording?"},
            ]}])
        return r.choices[0].message.content

    a, b = recordings()
    first, second = ask(a), ask(b)
    assert first and second and first != second
