"""Images through each official client, the way its users send them (issue 29).

The vision model is SmolLM2 with a random-weight projector of its width (the harness writes it and
two PNGs, and creates the model from a Modelfile with two FROM lines, as Ollama makes one). The
projector's weights are noise, so the answers say nothing true about the pictures; what these
tests check is that each client's image reaches the model: two pictures give two answers, the same
picture the same answer, through every protocol.
"""

import base64
from pathlib import Path

import anthropic
import httpx
import ollama
import openai
import pytest

from conftest import CHAT, harness_env

VISION = "smolvlm"
ASK = "What is in this picture?"
OPTIONS = {"temperature": 0, "num_predict": 12}


def pictures():
    folder = Path(harness_env("CORRAL_TEST_IMAGES"))
    return folder / "a.png", folder / "b.png"


def data_url(path):
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def native(base_url):
    return ollama.Client(host=base_url)


def test_show_reports_vision_and_the_projector(native, base_url, api_key):
    assert "vision" in native.show(VISION).capabilities
    assert "vision" not in native.show(CHAT).capabilities
    # ollama-python's ShowResponse has no field for it: the JSON itself.
    shown = httpx.post(f"{base_url}/api/show", json={"model": VISION},
                       headers={"Authorization": f"Bearer {api_key}"}).json()
    assert shown["projector_info"]["general.architecture"] == "clip"


def test_ollama_chat_with_image_paths(native):
    a, b = pictures()

    def ask(path):
        r = native.chat(model=VISION, messages=[{"role": "user", "content": ASK, "images": [str(path)]}],
                        options=OPTIONS)
        assert r.done and r.message.content
        return r

    first, second, again = ask(a), ask(b), ask(a)
    assert first.message.content != second.message.content
    assert again.message.content == first.message.content
    # The image's tokens are counted as prompt tokens.
    text_only = native.chat(model=VISION, messages=[{"role": "user", "content": ASK}], options=OPTIONS)
    assert first.prompt_eval_count > text_only.prompt_eval_count


def test_webp_is_the_same_picture(native):
    # a.webp holds a.png's pixels: the server decodes WebP itself (llama.cpp cannot).
    a, _ = pictures()
    answers = [native.chat(model=VISION, messages=[{"role": "user", "content": ASK, "images": [str(p)]}],
                           options=OPTIONS).message.content for p in (a, a.with_suffix(".webp"))]
    assert answers[0] and answers[0] == answers[1]


def test_ollama_generate_with_image_bytes(native):
    a, b = pictures()
    answers = [native.generate(model=VISION, prompt=ASK, images=[p.read_bytes()], options=OPTIONS).response
               for p in (a, b)]
    assert all(answers) and answers[0] != answers[1]


def test_ollama_text_model_refuses_images(native):
    a, _ = pictures()
    with pytest.raises(ollama.ResponseError) as e:
        native.chat(model=CHAT, messages=[{"role": "user", "content": ASK, "images": [str(a)]}])
    assert e.value.status_code == 400
    assert "missing data required for image input" in e.value.error


def test_ollama_corrupt_image_is_a_400(native):
    with pytest.raises(ollama.ResponseError) as e:
        native.chat(model=VISION, messages=[{"role": "user", "content": ASK,
                                             "images": [base64.b64encode(b"not a picture").decode()]}])
    assert e.value.status_code == 400
    assert "invalid image input" in e.value.error


def test_openai_image_url_parts(base_url, api_key):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key)

    def ask(path):
        r = client.chat.completions.create(
            model=VISION, temperature=0, max_tokens=12,
            messages=[{"role": "user", "content": [
                {"type": "text", "text": ASK},
                {"type": "image_url", "image_url": {"url": data_url(path)}},
            ]}])
        return r.choices[0].message.content

    a, b = pictures()
    first, second = ask(a), ask(b)
    assert first and second and first != second
    assert ask(a) == first


def test_metrics_count_the_images_sent(base_url, api_key, native):
    def sent():
        text = httpx.get(f"{base_url}/metrics", headers={"Authorization": f"Bearer {api_key}"}).text
        return int(next(line for line in text.splitlines() if line.startswith("corral_media_total ")).split()[1])

    a, b = pictures()
    before = sent()
    native.chat(model=VISION, messages=[{"role": "user", "content": ASK, "images": [str(a), str(b)]}], options=OPTIONS)
    assert sent() == before + 2


def test_openai_remote_image_url_is_refused(base_url, api_key):
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=VISION, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "image URLs are not currently supported" in str(e.value)


def test_anthropic_base64_image_blocks(base_url, api_key):
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key)

    def ask(path):
        r = client.messages.create(
            model=VISION, max_tokens=12, extra_body={"temperature": 0},
            messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": base64.b64encode(path.read_bytes()).decode()}},
                {"type": "text", "text": ASK},
            ]}])
        return "".join(block.text for block in r.content if block.type == "text")

    a, b = pictures()
    first, second = ask(a), ask(b)
    assert first and second and first != second
