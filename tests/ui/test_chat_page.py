"""The chat page (/ui/) in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver. The steps run in order on one page, as a person would use it, and each
leaves a screenshot in CORRAL_UI_SHOTS.

Set by the harness (crates/corral/tests/ui.rs): CORRAL_URL (a server that asks for CORRAL_API_KEY,
with SmolLM2 as `smollm2` and SmolLM2 with a random-weight vision projector as `smolvlm`),
`smolaudio` (SmolLM2 with a random-weight audio projector), CORRAL_TEST_IMAGE (a PNG),
CORRAL_TEST_SOUND (a WAV), CORRAL_PULL (a model on a loopback registry that is not installed).
"""

import json
import os
import time

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

URL = os.environ["CORRAL_URL"]
KEY = os.environ["CORRAL_API_KEY"]
SHOTS = os.environ["CORRAL_UI_SHOTS"]
# SmolLM2 on one CPU thread: an answer of a few dozen tokens takes seconds, a model load more.
SLOW = 180


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def shot(driver, name):
    driver.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def wait(driver, timeout=20):
    return WebDriverWait(driver, timeout, poll_frequency=0.1)


def find(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css)


def severe(driver):
    """The console's errors since the last call (reading the log empties it)."""
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def answers(driver):
    return driver.find_elements(By.CSS_SELECTOR, "article.msg.assistant")


def wait_answered(driver, count):
    """Waits until the page has `count` answers and the last one is finished (its figures shown)."""
    wait(driver, SLOW).until(lambda d: len(answers(d)) == count and find(d, "#stop").get_attribute("hidden") is not None)
    last = answers(driver)[-1]
    return last


def streaming_text(driver):
    """The last answer's text, read in one step (each streamed piece redraws it)."""
    return driver.execute_script("return [...document.querySelectorAll('article.msg.assistant .markdown')].at(-1).textContent")


def tokens_in(answer):
    return int(answer.find_element(By.CSS_SELECTOR, ".figures").text.split(" tokens in")[0])


def set_option(driver, name, value):
    field = find(driver, f"#opt-{name}")
    field.clear()
    field.send_keys(str(value))
    field.send_keys(Keys.TAB)  # the change event


def send(driver, text):
    box = find(driver, "#prompt")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def test_the_page_asks_for_the_key_and_accepts_the_right_one(browser):
    browser.get(f"{URL}/ui/")
    wait(browser).until(EC.visibility_of_element_located((By.ID, "key-dialog")))
    find(browser, "#key").send_keys("not-the-key" + Keys.ENTER)
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "key-error"), "did not accept"))
    shot(browser, "01-key")
    key = find(browser, "#key")
    key.clear()
    key.send_keys(KEY + Keys.ENTER)
    wait(browser).until(EC.invisibility_of_element_located((By.ID, "key-dialog")))
    names = [o.text for o in Select(find(browser, "#model")).options]
    assert "smollm2:latest" in names and "smolvlm:latest" in names, names
    # The refused requests show in the console as failed loads (401), and nothing else.
    errors = severe(browser)
    assert all("401" in e["message"] for e in errors), errors


def test_a_streamed_answer_with_its_figures(browser):
    Select(find(browser, "#model")).select_by_value("smollm2:latest")
    find(browser, "#toggle-settings").click()
    set_option(browser, "temperature", 0)
    send(browser, "Write one sentence about the sea.")
    # The answer appears while it streams: the stop button shows, and text arrives before the end.
    wait(browser).until(lambda d: find(d, "#stop").is_displayed())
    last = wait_answered(browser, 1)
    text = last.find_element(By.CSS_SELECTOR, ".markdown").text
    assert text.strip(), last.text
    figures = last.find_element(By.CSS_SELECTOR, ".figures").text
    assert "tokens in" in figures and "tokens/s" in figures, figures
    shot(browser, "02-answer")
    assert severe(browser) == []


def test_stop_ends_an_answer_mid_stream(browser):
    find(browser, "#new-chat").click()
    set_option(browser, "temperature", 0)
    set_option(browser, "num_predict", 3000)
    # Alone in a conversation at temperature 0, SmolLM2 repeats it for 600 tokens and more: still
    # going when it is stopped.
    send(browser, "Repeat the word hello 500 times.")
    wait(browser, SLOW).until(lambda d: len(answers(d)) == 1 and len(streaming_text(d)) > 20)
    # Esc stops, as the stop button does.
    find(browser, "#prompt").send_keys(Keys.ESCAPE)
    last = wait_answered(browser, 1)
    assert "Stopped." in last.text, last.text
    assert find(browser, "#send").is_displayed()
    shot(browser, "03-stopped")


def test_regenerate_replaces_the_last_answer(browser):
    # The stopped answer is replaced by a whole one (24 tokens), not followed by it.
    set_option(browser, "num_predict", 24)
    answers(browser)[-1].find_element(By.CSS_SELECTOR, "button.regenerate").click()
    last = wait_answered(browser, 1)
    assert last.find_element(By.CSS_SELECTOR, ".markdown").text.strip(), last.text
    assert "Stopped." not in last.text and " 24 out," in last.text, last.text
    assert severe(browser) == []


def test_edit_a_question_and_answer_again(browser):
    first = browser.find_elements(By.CSS_SELECTOR, "article.msg.user")[0]
    first.find_element(By.CSS_SELECTOR, "button.edit").click()
    editor = first.find_element(By.CSS_SELECTOR, "textarea.editor")
    editor.clear()
    editor.send_keys("Name one colour.")
    first.find_element(By.CSS_SELECTOR, "button.save-edit").click()
    # Everything after the edited question is gone; one new answer follows it.
    wait_answered(browser, 1)
    users = browser.find_elements(By.CSS_SELECTOR, "article.msg.user")
    assert [u.find_element(By.CSS_SELECTOR, ".plain").text for u in users] == ["Name one colour."]


def test_an_image_for_a_vision_model(browser):
    find(browser, "#new-chat").click()
    Select(find(browser, "#model")).select_by_value("smolvlm:latest")
    wait(browser).until(lambda d: find(d, "#attach").is_displayed())
    find(browser, "#file").send_keys(os.environ["CORRAL_TEST_IMAGE"])
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attachments img"))
    set_option(browser, "num_predict", 8)
    send(browser, "What is in this picture?")
    last = wait_answered(browser, 1)
    question = browser.find_elements(By.CSS_SELECTOR, "article.msg.user")[0]
    assert question.find_elements(By.CSS_SELECTOR, ".thumbs img"), question.text
    assert "Error" not in last.text and not last.find_elements(By.CSS_SELECTOR, ".error"), last.text
    shot(browser, "04-image")
    # The picture went to the model: the same question alone is fewer tokens.
    with_picture = tokens_in(last)
    find(browser, "#new-chat").click()
    set_option(browser, "num_predict", 8)
    send(browser, "What is in this picture?")
    alone = tokens_in(wait_answered(browser, 1))
    assert alone < with_picture, (alone, with_picture)
    # SmolLM2 alone cannot read pictures: no attach button.
    Select(find(browser, "#model")).select_by_value("smollm2:latest")
    wait(browser).until(lambda d: not find(d, "#attach").is_displayed())
    assert severe(browser) == []


def test_drop_and_paste_attach_pictures(browser):
    Select(find(browser, "#model")).select_by_value("smolvlm:latest")
    wait(browser).until(lambda d: find(d, "#attach").is_displayed())
    # A picture made in the page, dropped on the conversation, then pasted into the message box.
    browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const canvas = document.createElement('canvas');
        canvas.width = 32; canvas.height = 24;
        canvas.getContext('2d').fillRect(0, 0, 16, 12);
        canvas.toBlob((blob) => {
          const file = new File([blob], 'dropped.png', { type: 'image/png' });
          const drop = new DataTransfer();
          drop.items.add(file);
          document.getElementById('main').dispatchEvent(new DragEvent('drop', { dataTransfer: drop, bubbles: true, cancelable: true }));
          const paste = new DataTransfer();
          paste.items.add(new File([blob], 'pasted.png', { type: 'image/png' }));
          document.getElementById('prompt').dispatchEvent(new ClipboardEvent('paste', { clipboardData: paste, bubbles: true, cancelable: true }));
          done();
        }, 'image/png');
    """)
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#attachments img")) == 2)
    alts = sorted(i.get_attribute("alt") for i in browser.find_elements(By.CSS_SELECTOR, "#attachments img"))
    assert alts == ["dropped.png", "pasted.png"], alts
    for _ in range(2):
        find(browser, "#attachments button.remove-attachment").click()
    wait(browser).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#attachments li"))
    assert severe(browser) == []


def test_a_sound_for_a_model_that_hears(browser):
    find(browser, "#new-chat").click()
    Select(find(browser, "#model")).select_by_value("smolaudio:latest")
    # (A projector makes a model count as seeing as well, as in Ollama's capabilities.)
    wait(browser).until(lambda d: find(d, "#attach").is_displayed() and "sound" in find(d, "#attach").text)
    find(browser, "#file").send_keys(os.environ["CORRAL_TEST_SOUND"])
    wait(browser).until(lambda d: "sound.wav" in find(d, "#attachments").text)
    set_option(browser, "num_predict", 8)
    send(browser, "What do you hear?")
    last = wait_answered(browser, 1)
    assert not last.find_elements(By.CSS_SELECTOR, ".error"), last.text
    question = browser.find_elements(By.CSS_SELECTOR, "article.msg.user")[0]
    assert question.find_elements(By.CSS_SELECTOR, ".thumbs audio"), question.text
    assert tokens_in(last) > 40, last.text
    assert severe(browser) == []


def test_pull_a_model_with_a_progress_bar(browser):
    name = os.environ["CORRAL_PULL"]
    find(browser, "#open-models").click()
    wait(browser).until(EC.visibility_of_element_located((By.ID, "models-dialog")))
    # What is loaded shows, as `ps` does.
    wait(browser).until(lambda d: "smollm2:latest" in find(d, "#loaded").text or "smolvlm:latest" in find(d, "#loaded").text)
    find(browser, "#pull-name").send_keys(name + Keys.ENTER)
    wait(browser, 60).until(EC.text_to_be_present_in_element((By.ID, "pull-status"), "success"))
    bar = find(browser, "#pull-progress")
    assert bar.is_displayed() and float(bar.get_attribute("value")) == float(bar.get_attribute("max")), bar.get_attribute("outerHTML")
    wait(browser).until(lambda d: name in find(d, "#installed").text)
    shot(browser, "05-pulled")
    names = [o.get_attribute("value") for o in Select(find(browser, "#model")).options]
    assert name in names, names
    # And delete it again (after a confirmation).
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#installed tbody tr") if name in r.text)
    row.find_element(By.CSS_SELECTOR, "button.delete-model").click()
    wait(browser).until(EC.alert_is_present()).accept()
    wait(browser).until(lambda d: name not in find(d, "#installed").text)
    names = [o.get_attribute("value") for o in Select(find(browser, "#model")).options]
    assert name not in names, names
    find(browser, "#close-models").click()
    assert severe(browser) == []


def test_conversations_are_kept_across_a_reload(browser):
    browser.refresh()
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversations li")) == 5)
    titles = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#conversations .open")]
    expected = ["What do you hear?", "What is in this picture?", "What is in this picture?", "Repeat the word hello 500 times.",
                "Write one sentence about the sea."]
    assert titles == expected, titles
    find(browser, "#search").send_keys("colour")
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversations li")) == 1)
    find(browser, "#conversations .open").click()
    wait(browser).until(lambda d: len(answers(d)) == 1)
    assert "Name one colour." in find(browser, "#messages").text
    shot(browser, "06-reloaded")
    saved = json.loads(browser.execute_script("return localStorage.getItem('corral.conversations')"))
    assert len(saved) == 5 and all(c["messages"] for c in saved)
    assert severe(browser) == []


def test_markdown_code_thinking_and_tool_calls(browser):
    # A saved conversation as a thinking, tool-calling model leaves it, with hostile markup.
    answer = {
        "role": "assistant",
        "thinking": "The user wants **code**.",
        "content": "Here:\n\n```python\ndef add(a, b):\n    return a + b  # sum\n```\n\n<img src=x onerror=alert(1)> "
        "[bad](javascript:alert(1)) [good](https://example.com)",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        "stats": {"prompt_eval_count": 5, "eval_count": 10, "eval_duration": 1000000000},
    }
    conv = {"id": "x1", "title": "Crafted", "model": "smollm2:latest", "system": "", "options": {}, "think": False,
            "messages": [{"role": "user", "content": "add?"}, answer], "created": "2026-01-01T00:00:00Z", "updated": "2099-01-01T00:00:00Z"}
    browser.execute_script(
        "const l = JSON.parse(localStorage.getItem('corral.conversations')); l.push(arguments[0]);"
        "localStorage.setItem('corral.conversations', JSON.stringify(l));", conv)
    browser.refresh()
    wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#conversations .open"))
    find(browser, "#conversations .open").click()
    last = wait(browser).until(lambda d: answers(d) and answers(d)[-1])
    code = last.find_element(By.CSS_SELECTOR, ".code pre code")
    assert "def add(a, b):" in code.text
    assert [k.text for k in code.find_elements(By.CSS_SELECTOR, ".tok-kw")][:2] == ["def", "return"]
    assert code.find_elements(By.CSS_SELECTOR, ".tok-com")
    assert last.find_element(By.CSS_SELECTOR, ".code button.copy").is_displayed()
    thinking = last.find_element(By.CSS_SELECTOR, "details.thinking")
    assert thinking.get_attribute("open") is None and not last.find_element(By.CSS_SELECTOR, ".thought").is_displayed()
    thinking.find_element(By.CSS_SELECTOR, "summary").click()
    assert "The user wants code." in last.find_element(By.CSS_SELECTOR, ".thought").text
    assert 'get_weather({"city":"Paris"})' in last.find_element(By.CSS_SELECTOR, ".tool-call").text
    # Markup from the model is text; only http(s) links are links.
    assert "<img src=x onerror=alert(1)>" in last.text and not last.find_elements(By.CSS_SELECTOR, ".markdown img")
    links = [a.get_attribute("href") for a in last.find_elements(By.CSS_SELECTOR, ".markdown a")]
    assert links == ["https://example.com/"], links
    assert "10.0 tokens/s" in last.find_element(By.CSS_SELECTOR, ".figures").text
    shot(browser, "07-markdown")
    assert severe(browser) == []


def test_rename_export_and_delete_a_conversation(browser):
    find(browser, "#search").clear()
    find(browser, "#search").send_keys(Keys.BACKSPACE)  # the input event
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversations li")) == 6)
    first = find(browser, "#conversations li")
    first.find_element(By.CSS_SELECTOR, "button.rename").click()
    alert = wait(browser).until(EC.alert_is_present())
    alert.send_keys("Adding numbers")
    alert.accept()
    wait(browser).until(lambda d: find(d, "#conversations .open").text == "Adding numbers")
    find(browser, "#conversations .open").click()
    # The exports are downloads of a Blob: the test reads the Blob each makes (headless chromium
    # here leaves blob downloads unfinished), and the name the link gives it.
    browser.execute_script(
        "window.exported = []; const make = URL.createObjectURL;"
        "URL.createObjectURL = (blob) => { window.exported.push(blob); return make(blob); };"
        "HTMLAnchorElement.prototype.click = function () { window.exportedName = this.download; };")
    read = "const done = arguments[arguments.length - 1]; window.exported.at(-1).text().then(done);"
    find(browser, "#export-md").click()
    text = browser.execute_async_script(read)
    assert browser.execute_script("return window.exportedName") == "Adding_numbers.md"
    assert text.startswith("# Adding numbers\n") and "## User\n\nadd?" in text and "get_weather" in text, text
    find(browser, "#export-json").click()
    assert browser.execute_script("return window.exportedName") == "corral-conversations.json"
    assert len(json.loads(browser.execute_async_script(read))) == 6
    find(browser, "#conversations li button.delete").click()
    wait(browser).until(EC.alert_is_present()).accept()
    wait(browser).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversations li")) == 5)
    assert "Adding numbers" not in find(browser, "#conversations").text
    assert severe(browser) == []


def test_dark_and_light_follow_the_system(browser):
    background = "return getComputedStyle(document.body).backgroundColor"
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    light = browser.execute_script(background)
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    dark = browser.execute_script(background)
    assert light == "rgb(251, 251, 249)" and dark == "rgb(21, 23, 22)", (light, dark)
    shot(browser, "09-dark")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_a_phone_width_screen(browser):
    browser.set_window_size(390, 844)
    assert not find(browser, "#sidebar").is_displayed() or find(browser, "#sidebar").rect["x"] < 0
    find(browser, "#open-sidebar").click()
    wait(browser).until(lambda d: find(d, "#sidebar").rect["x"] >= 0)
    shot(browser, "10-phone")
    find(browser, "#close-sidebar").click()
    assert severe(browser) == []
