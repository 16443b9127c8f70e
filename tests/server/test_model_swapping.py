"""Several models in a config: by default one is resident at a time, as in llama-cpp-python's
server, swapped in when a request names another; requests running on the old one finish
first; requests to the resident model are still batched. max_loaded_models=0 loads all."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest

from allama.server import ConfigFileSettings, create_app

from .live_server import serving

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def swapping(llama_f32_path, llama_f16_path):
    settings = ConfigFileSettings.model_validate({"models": [
        {"model": str(llama_f32_path), "model_alias": "a", "n_ctx": 512, "n_parallel": 4},
        {"model": str(llama_f16_path), "model_alias": "b", "n_ctx": 512, "n_parallel": 4},
    ]})
    assert settings.max_loaded_models == 1
    app = create_app(settings)
    with serving(app) as url:
        yield url, app.state.registry


async def _stream(client: httpx.AsyncClient, base_url: str, model: str, tokens: int,
                  started: anyio.Event | None = None) -> dict:
    body = {"model": model, "prompt": "Once", "max_tokens": tokens, "ignore_eos": True, "stream": True}
    arrivals, texts, done = [], [], False
    async with client.stream("POST", base_url + "/v1/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                texts.append(json.loads(line[6:]))
                arrivals.append(time.monotonic())
                if started is not None:
                    started.set()
    return {"done": done, "chunks": texts, "first": arrivals[0], "last": arrivals[-1]}


async def test_one_model_is_resident_and_a_request_to_another_swaps_it(swapping):
    base_url, registry = swapping
    if set(registry.models) != {"a"}:  # another test of this module ran first
        httpx.post(base_url + "/v1/completions", json={"model": "a", "prompt": "x", "max_tokens": 1}, timeout=60)
    assert set(registry.models) == {"a"}
    models = httpx.get(base_url + "/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["a", "b"]  # every configured model is listed
    swaps = registry.swaps
    response = httpx.post(base_url + "/v1/completions", json={"model": "b", "prompt": "x", "max_tokens": 2},
                          timeout=60)
    assert response.status_code == 200 and response.json()["model"] == "b"
    assert set(registry.models) == {"b"} and registry.swaps == swaps + 1
    assert httpx.get(base_url + "/health").json()["status"] == "ok"


async def test_a_running_stream_on_the_old_model_finishes_before_the_swap(swapping):
    base_url, registry = swapping
    httpx.post(base_url + "/v1/completions", json={"model": "a", "prompt": "x", "max_tokens": 1}, timeout=60)
    assert set(registry.models) == {"a"}
    results: dict[str, dict] = {}
    started = anyio.Event()
    async with httpx.AsyncClient(timeout=120) as client:
        async def old() -> None:
            results["a"] = await _stream(client, base_url, "a", 500, started)

        async def new() -> None:
            await started.wait()  # a's stream is running (500 tokens: it has a while to go)
            results["sent"] = {"at": time.monotonic()}
            response = await client.post(base_url + "/v1/completions",
                                         json={"model": "b", "prompt": "x", "max_tokens": 2})
            results["b"] = {"status": response.status_code, "at": time.monotonic()}

        async with anyio.create_task_group() as tg:
            tg.start_soon(old)
            tg.start_soon(new)
    assert results["a"]["done"] and results["a"]["first"] < results["sent"]["at"] < results["a"]["last"]
    assert results["a"]["chunks"][-1]["choices"][0]["finish_reason"] == "length"  # not cut
    assert results["b"]["status"] == 200 and results["b"]["at"] >= results["a"]["last"]
    assert set(registry.models) == {"b"}


async def test_concurrent_requests_to_the_resident_model_are_batched(swapping):
    base_url, registry = swapping
    async with httpx.AsyncClient(timeout=120) as client:
        results: list[dict] = [{}] * 4

        async def run(i: int) -> None:
            results[i] = await _stream(client, base_url, "b", 40)

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(run, i)
    assert all(r["done"] for r in results)
    assert max(r["first"] for r in results) < min(r["last"] for r in results)  # they ran together
    assert set(registry.models) == {"b"}


def test_max_loaded_models_zero_loads_every_model_at_start(llama_f32_path, llama_f16_path):
    app = create_app(ConfigFileSettings.model_validate({"max_loaded_models": 0, "models": [
        {"model": str(llama_f32_path), "model_alias": "a", "n_ctx": 256},
        {"model": str(llama_f16_path), "model_alias": "b", "n_ctx": 256}]}))
    with serving(app) as base_url:
        assert set(app.state.registry.models) == {"a", "b"}
        for model in ("b", "a"):
            assert httpx.post(base_url + "/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 1},
                              timeout=60).status_code == 200
        assert app.state.registry.swaps == 0
