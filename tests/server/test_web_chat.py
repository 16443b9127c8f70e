"""The web chat page at / (docs/web-chat.md), driven in a real headless Chromium: replies
stream in, Stop ends them (and the server's request with them), server errors show, the
model picker lists every model, and the page and its files need no API key.

The browser tests need Debian's chromium and chromium-driver packages and selenium (pip);
without them they skip, unless ALLAMA_REQUIRE_BROWSER=1 (CI), where that is a failure."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from allama.server import ModelSettings, ServerSettings, create_app
from allama.server.cli import settings_from_args

from .live_server import serving

CHAT, OTHER = "tiny-chat", "tiny-chat-small"
TOKEN_LIMIT = 3500  # the tiny model streams for seconds before reaching it (ignore_eos)


def _browser_parts() -> tuple[str | None, str | None, list[str]]:
    """(chromium, chromedriver, what is missing)."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install selenium)")
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if chromium is None:
        missing.append("chromium (apt-get install chromium)")
    if driver is None:
        missing.append("chromedriver (apt-get install chromium-driver)")
    return chromium, driver, missing


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path, missing = _browser_parts()
    if missing:
        reason = "the web chat browser tests need " + ", ".join(missing)
        if os.environ.get("ALLAMA_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (ALLAMA_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1000,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def chat_server(llama_f32_path) -> Iterator[tuple[str, FastAPI]]:
    """Two models (the picker lists both); replies may be long enough to watch them stream."""
    app = create_app(server_settings=ServerSettings(max_tokens_limit=TOKEN_LIMIT),
                     model_settings=[ModelSettings(model=str(llama_f32_path), model_alias=CHAT, n_ctx=4096,
                                                   n_parallel=2, seed=7),
                                     ModelSettings(model=str(llama_f32_path), model_alias=OTHER, n_ctx=256)])
    with serving(app) as url:
        yield url, app


class Page:
    """The chat page in the browser, by its element ids."""

    def __init__(self, driver: Any, url: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver = driver
        self.by = By
        driver.get(url)
        self.wait_for(lambda: self.driver.execute_script("return document.readyState") == "complete")

    def el(self, element_id: str) -> Any:
        return self.driver.find_element(self.by.ID, element_id)

    def wait_for(self, condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}; error shown: {self.error()!r}")
            time.sleep(0.02)

    def models(self) -> list[str]:
        return self.driver.execute_script("return [...document.getElementById('model').options].map(o => o.value)")

    def settings(self, **fields: str) -> None:
        """Fills settings fields (by id) in the Settings panel."""
        self.driver.execute_script("document.getElementById('settings').open = true")
        for element_id, value in fields.items():
            box = self.el(element_id.replace("_", "-"))
            box.clear()
            if value:
                box.send_keys(value)

    def send(self, text: str) -> None:
        self.el("prompt").send_keys(text)
        self.el("send").click()

    def replies(self) -> list[str]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll('.message.assistant .content')].map(e => e.textContent)")

    def reply_length(self) -> int:
        replies = self.replies()
        return len(replies[-1]) if replies else 0

    def streaming(self) -> bool:
        return not self.el("stop").get_attribute("disabled") and bool(self.el("send").get_attribute("disabled"))

    def idle(self) -> bool:
        return bool(self.el("stop").get_attribute("disabled")) and not self.el("send").get_attribute("disabled")

    def error(self) -> str:
        return self.driver.execute_script(
            "const e = document.getElementById('error'); return e && !e.hidden ? e.textContent : ''")


def test_replies_stream_in_and_stop_ends_them(browser, chat_server):
    url, app = chat_server
    llm = app.state.registry.models[CHAT]
    cancelled_before = llm.stats().requests_cancelled
    page = Page(browser, url + "/")
    page.wait_for(lambda: CHAT in page.models(), what="the model list")
    page.settings(max_tokens=str(TOKEN_LIMIT), extra='{"ignore_eos": true}', temperature="1")
    page.send("Tell me a long story.")

    page.wait_for(lambda: page.reply_length() > 0, what="the first streamed text")
    lengths = [page.reply_length()]
    for _ in range(3):  # the reply grows while it streams
        time.sleep(0.25)
        assert page.streaming(), "the reply finished before it could be watched; raise TOKEN_LIMIT"
        lengths.append(page.reply_length())
    assert lengths == sorted(lengths) and lengths[-1] > lengths[0], lengths
    assert llm.stats().active == 1

    page.el("stop").click()
    page.wait_for(page.idle, what="Send enabled and Stop disabled after Stop")
    stopped = page.reply_length()
    time.sleep(0.5)
    assert page.reply_length() == stopped > lengths[-1] - 1  # the partial reply stays and stops growing
    assert "Stopped" in browser.execute_script(
        "return document.querySelector('.message.assistant:last-of-type .note').textContent")
    assert page.error() == ""
    page.wait_for(lambda: llm.stats().active == 0 and llm.stats().queued == 0, timeout=10,
                  what="the server's request to end")
    assert llm.stats().requests_cancelled > cancelled_before
    metrics = httpx.get(url + "/metrics").text
    assert f'allama_sequences_active{{model="{CHAT}"}} 0' in metrics


def test_a_finished_reply_joins_the_conversation(browser, chat_server):
    url, app = chat_server
    page = Page(browser, url + "/")
    page.wait_for(lambda: CHAT in page.models(), what="the model list")
    page.settings(max_tokens="8", extra='{"ignore_eos": true}')
    page.send("Hello")
    page.wait_for(lambda: page.idle() and page.reply_length() > 0, what="the reply")
    assert "token limit" in browser.execute_script(
        "return document.querySelector('.message.assistant .note').textContent")
    page.send("And again")
    page.wait_for(lambda: page.idle() and len(page.replies()) == 2 and page.reply_length() > 0,
                  what="the second reply")
    assert browser.execute_script("return document.querySelectorAll('.message.user').length") == 2
    assert page.error() == ""


def test_a_server_error_shows_its_message(browser, chat_server):
    url, _ = chat_server
    page = Page(browser, url + "/")
    page.wait_for(lambda: CHAT in page.models(), what="the model list")
    page.settings(max_tokens=str(TOKEN_LIMIT + 1000), extra="")
    page.send("Hello")
    message = page.wait_for(page.error, what="the error")
    assert f"max_tokens is {TOKEN_LIMIT + 1000}; this server allows at most {TOKEN_LIMIT}" in message
    assert page.idle()
    assert page.el("prompt").get_attribute("value") == "Hello"  # given back, to send again

    page.settings(max_tokens="4", extra="{not json")
    page.el("prompt").clear()
    page.send("Hello")
    assert "not valid JSON" in page.wait_for(page.error, what="the JSON error")


def test_a_network_failure_shows_an_error(browser, llama_f32_path):
    app = create_app(server_settings=ServerSettings(),
                     model_settings=[ModelSettings(model=str(llama_f32_path), model_alias=CHAT, n_ctx=256)])
    with serving(app) as url:
        page = Page(browser, url + "/")
        page.wait_for(lambda: CHAT in page.models(), what="the model list")
    page.send("Anyone there?")  # the server is gone
    assert "Network error" in page.wait_for(page.error, what="the network error")
    assert page.idle()


def test_the_model_picker_lists_every_model(browser, chat_server):
    url, _ = chat_server
    page = Page(browser, url + "/")
    page.wait_for(lambda: page.models() == [CHAT, OTHER], what="both models")
    from selenium.webdriver.support.ui import Select

    Select(page.el("model")).select_by_value(OTHER)
    page.settings(max_tokens="3", extra="")
    page.send("Hi")
    page.wait_for(lambda: page.idle() and page.reply_length() > 0, what="the other model's reply")
    assert browser.execute_script("return document.querySelector('.message.assistant .role').textContent") == OTHER


def test_replies_render_markdown_and_escape_html(browser, chat_server):
    url, _ = chat_server
    page = Page(browser, url + "/")
    render = ("return import('./static/markdown.js').then(m => m.renderMarkdown(arguments[0]))")
    html = browser.execute_script(render, "# Title\n\nSome **bold**, *italic* and `x < y` code.\n\n"
                                          "```python\nprint('<b>')\n```\n\n- one\n- two\n\n1. first\n\n"
                                          "[a link](https://example.com) [bad](javascript:alert(1))")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<em>italic</em>" in html
    assert "<code>x &lt; y</code>" in html
    assert '<pre><code class="language-python" data-lang="python">print(&#39;&lt;b&gt;&#39;)</code></pre>' in html
    assert "<ul><li>one</li><li>two</li></ul>" in html and "<ol><li>first</li></ol>" in html
    assert '<a href="https://example.com" target="_blank" rel="noopener noreferrer">a link</a>' in html
    assert "javascript:" not in html.replace("[bad](javascript:alert(1))", "")
    unsafe = browser.execute_script(render, '<img src=x onerror="alert(1)"><script>alert(2)</script>')
    assert "<img" not in unsafe and "<script" not in unsafe and "&lt;img" in unsafe


def test_the_api_key_is_asked_for_and_sent(browser, guarded):
    url, _ = guarded  # api_key "s3cret"
    assert httpx.get(url + "/").status_code == 200
    assert httpx.get(url + "/static/chat.js").status_code == 200
    assert httpx.get(url + "/v1/models").status_code == 401
    page = Page(browser, url + "/")
    assert "API key" in page.wait_for(page.error, what="the API key error")
    page.settings(api_key="s3cret", max_tokens="3", extra="")
    page.el("prompt").click()  # the key field's change event reloads the models
    page.wait_for(lambda: page.models() != [] and page.error() == "", what="the models, with the key")
    page.send("Hi")
    page.wait_for(lambda: page.idle() and page.reply_length() > 0, what="the reply")
    assert page.error() == ""


def test_the_page_can_be_turned_off(llama_f32_path):
    assert settings_from_args(["--model", "m.gguf", "--web-ui", "false"]).web_ui is False
    assert settings_from_args(["--model", "m.gguf"]).web_ui is True
    app = create_app(server_settings=ServerSettings(web_ui=False, api_key="k"),
                     model_settings=[ModelSettings(model=str(llama_f32_path), n_ctx=256)])
    with serving(app) as url:
        assert httpx.get(url + "/").status_code == 401  # no page: nothing is open but /health
        assert httpx.get(url + "/static/chat.js", headers={"Authorization": "Bearer k"}).status_code == 404


def test_the_page_works_under_a_mount(llama_f32_path):
    llm_app = create_app(server_settings=ServerSettings(api_key="k"),
                         model_settings=[ModelSettings(model=str(llama_f32_path), n_ctx=256)])
    parent = FastAPI(lifespan=lambda _: llm_app.router.lifespan_context(llm_app))
    parent.mount("/llm", llm_app)
    with serving(parent, ready_path="/llm/health") as url:
        page = httpx.get(url + "/llm/")
        assert page.status_code == 200 and '<base href="/llm/">' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(url + "/llm/static/markdown.js").status_code == 200
        assert httpx.get(url + "/llm/v1/models").status_code == 401
