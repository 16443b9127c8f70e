"""Image parts in /v1/chat/completions with a projector (`clip_model_path` / `--mmproj`)."""

from __future__ import annotations

import base64
import dataclasses

import httpx
import pytest

from allama.server import ModelSettings, ServerSettings, create_app
from allama.server.cli import settings_from_args
from allama.testing.model_builder import LlamaConfig, ProjectorConfig, build_llama, build_projector

from ..tiny_models import TINY_LLAMA
from ..native.test_media import _png
from .live_server import serving

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture(scope="module")
def url(models_dir):
    model = build_llama(models_dir / "server-vision.gguf", dataclasses.replace(TINY_LLAMA, chat_template=TEMPLATE))[0]
    projector = build_projector(models_dir / "server-projector.gguf", ProjectorConfig(), LlamaConfig())
    app = create_app(server_settings=ServerSettings(),
                     model_settings=[ModelSettings(model=str(model), mmproj=str(projector), n_ctx=512)])
    with serving(app) as base:
        yield base


def chat(url: str, image_url: str) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "What is it? "},
                                                      {"type": "image_url", "image_url": {"url": image_url}}]}],
            "max_tokens": 4}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)


def test_an_image_part_is_answered(url):
    response = chat(url, "data:image/png;base64," + base64.b64encode(_png(40, 30)).decode())
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 16  # the image's 16 tokens and the text


@pytest.mark.parametrize("image_url, message", [
    ("https://example.com/cat.png", "turned off"),
    ("/etc/hostname", "turned off"),  # the server reads no local files unless told to
    ("data:image/png;base64," + base64.b64encode(b"not an image").decode(), "could not be decoded"),
])
def test_refused_images_are_400(url, image_url, message):
    response = chat(url, image_url)
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_mmproj_flag():
    assert settings_from_args(["--model", "m.gguf", "--mmproj", "p.gguf"]).clip_model_path == "p.gguf"


def test_llama_cpp_python_chat_format_names_pick_the_multimodal_presets(llama_f32_path, tmp_path):
    from pydantic import ValidationError

    from allama.chat import Llava15ChatHandler, MTMDChatHandler, Qwen25VLChatHandler
    from allama.server.settings import ModelSettings

    projector = tmp_path / "mmproj.gguf"
    projector.write_bytes(b"GGUF")  # only its existence is checked until a request needs it
    for name, kind in (("llava-1-5", Llava15ChatHandler), ("qwen2.5-vl", Qwen25VLChatHandler),
                       ("mtmd", MTMDChatHandler), (None, MTMDChatHandler)):
        kwargs = ModelSettings(model=str(llama_f32_path), clip_model_path=str(projector), chat_format=name).llama_kwargs()
        assert type(kwargs["chat_handler"]) is kind and kwargs["chat_format"] is None
    with pytest.raises(ValidationError, match="needs clip_model_path"):
        ModelSettings(model=str(llama_f32_path), chat_format="llava-1-6")
