"""LoRA adapters through the server: a request's `lora` field picks the adapters."""

from __future__ import annotations

import httpx
import pytest

from allama.server import create_app
from allama.server.settings import Settings
from allama.testing.model_builder import build_lora

from ..tiny_models import TINY_LLAMA
from .live_server import serving

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def url(tmp_path_factory, llama_f32_path):
    adapter = build_lora(tmp_path_factory.mktemp("lora") / "a.gguf", TINY_LLAMA)
    settings = Settings(model=str(llama_f32_path), model_alias="tiny", n_ctx=256, lora_adapters={"a": str(adapter)})
    with serving(create_app(settings)) as base:
        yield base


async def test_a_request_names_its_adapters(url):
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        body = {"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 6, "temperature": 0}
        plain = (await client.post("/v1/completions", json=body)).json()
        adapted = (await client.post("/v1/completions", json=body | {"lora": {"a": 1.0}})).json()
        off = (await client.post("/v1/completions", json=body | {"lora": {"a": 0.0}})).json()
        assert adapted["choices"][0]["text"] != plain["choices"][0]["text"]
        assert off["choices"][0]["text"] == plain["choices"][0]["text"]
        chat = await client.post("/v1/chat/completions", json={
            "model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "lora": {"a": 0.5}})
        assert chat.status_code == 200
        bad = await client.post("/v1/completions", json=body | {"lora": {"missing": 1.0}})
        assert bad.status_code == 400 and "unknown LoRA adapter" in bad.json()["error"]["message"]
