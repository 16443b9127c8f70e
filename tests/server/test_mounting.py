"""create_app mounted inside a user's own FastAPI app, its lifespan run by the parent's."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from allama.server import ModelSettings, ServerSettings, create_app

from .live_server import serving


def test_mounted_under_a_prefix(llama_f32_path):
    llm_app = create_app(server_settings=ServerSettings(),
                         model_settings=[ModelSettings(model=str(llama_f32_path), model_alias="tiny", n_ctx=256)])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with llm_app.router.lifespan_context(llm_app):  # loads, and at the end closes, the models
            yield

    parent = FastAPI(lifespan=lifespan)

    @parent.get("/hello")
    async def hello() -> dict:
        return {"hello": "world"}

    parent.mount("/llm", llm_app)
    with serving(parent, ready_path="/llm/health") as url:
        assert httpx.get(url + "/hello").json() == {"hello": "world"}
        out = httpx.post(url + "/llm/v1/chat/completions",
                         json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert out.status_code == 200 and out.json()["usage"]["completion_tokens"] == 3
    assert not llm_app.state.registry.models  # closed with the parent
