"""What a bad-input case's child runs (imported once by the fork server, see runner.py).

Each scenario loads its model in the child, feeds it one bad input, and then proves that
the model still serves a good request and holds no sequence: an error must leave nothing
behind. Values come back summarised (a case's child reports through a pipe)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from allama import Llama
from allama.server import ModelSettings, ServerSettings, create_app
from allama.stream import AsyncStream

# A small engine: one thread, a short context, two sequences.
SMALL: dict[str, Any] = dict(n_ctx=128, n_batch=64, n_ubatch=64, n_parallel=2, n_threads=1, n_threads_batch=1)
PROBE_TIMEOUT = 20.0


class EngineLeftBroken(AssertionError):
    """After the bad input, the model no longer served a good request, or kept a sequence."""


@dataclass(frozen=True)
class Ref:
    """A callable of this module, named (lambdas do not cross to the child)."""

    name: str


@dataclass(frozen=True)
class Nested:
    """A JSON schema nested `depth` levels deep, built in the child (pickling it would recurse
    as deep): kind "array", "object", "anyOf", "allOf" or "refs" (a chain of $defs)."""

    kind: str
    depth: int

    def build(self) -> Any:
        if self.kind == "refs":
            defs: dict[str, Any] = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(self.depth)}
            defs[f"d{self.depth}"] = {"type": "integer"}
            return {"$defs": defs, "$ref": "#/$defs/d0"}
        wrap = {"array": lambda s: {"type": "array", "items": s},
                "object": lambda s: {"type": "object", "properties": {"a": s}, "required": ["a"]},
                "anyOf": lambda s: {"anyOf": [s, {"type": "null"}]},
                "allOf": lambda s: {"allOf": [s]}}[self.kind]
        schema: Any = {"type": "string"}
        for _ in range(self.depth):
            schema = wrap(schema)
        return schema


def _resolve(value: Any) -> Any:
    if isinstance(value, Ref):
        return globals()[value.name]
    if isinstance(value, Nested):
        return value.build()
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_resolve(v) for v in value)
    return value


# ------------------------------------------------------------------ callables for the cases

def processor_returning_none(input_ids: np.ndarray, scores: np.ndarray) -> Any:
    return None


def processor_with_the_wrong_shape(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return scores[:10]


def processor_that_raises(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    raise RuntimeError("a processor bug")


def criteria_that_raises(input_ids: np.ndarray, scores: np.ndarray) -> bool:
    raise RuntimeError("a stopping-criteria bug")


# ------------------------------------------------------------------ summaries

def summary(value: Any) -> Any:
    """A small picture of what a call returned."""
    if isinstance(value, dict) and "choices" in value:
        choices = value["choices"]
        return {"finish_reasons": [c.get("finish_reason") for c in choices],
                "texts": [(c.get("text") if "text" in c else (c.get("message") or {}).get("content")) for c in choices],
                "usage": value.get("usage")}
    if isinstance(value, dict) and "data" in value:
        data = value["data"]
        first = data[0]["embedding"] if data else None
        return {"n": len(data), "dims": len(first) if isinstance(first, list) else first}
    if isinstance(value, (list, tuple)):
        return {"len": len(value)}
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)[:200]


async def _settle(value: Any) -> Any:
    """Awaits a coroutine and drains a stream; the final value."""
    if isinstance(value, Awaitable):
        value = await value
    if isinstance(value, AsyncStream):
        chunks = [chunk async for chunk in value]
        reasons = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
        return {"chunks": len(chunks), "finish_reasons": [r for r in reasons if r is not None]}
    return summary(value)


async def _still_serves(llm: Llama, probe: str) -> None:
    """A good request still works, and afterwards no sequence is active or queued."""
    try:
        if probe == "embed":
            await asyncio.wait_for(llm.create_embedding("fine"), PROBE_TIMEOUT)
        else:
            out = await asyncio.wait_for(llm.create_completion("Hi", max_tokens=1, temperature=0), PROBE_TIMEOUT)
            assert out["usage"]["completion_tokens"] == 1, out
    except Exception as exc:  # noqa: BLE001 - reported as the case's failure
        raise EngineLeftBroken(f"a good request failed after the bad input: {type(exc).__name__}: {exc}") from exc
    for _ in range(100):
        stats = llm.stats()
        if stats.active == 0 and stats.queued == 0:
            return
        await asyncio.sleep(0.01)
    raise EngineLeftBroken(f"sequences left after the bad input: active={stats.active} queued={stats.queued}")


# ------------------------------------------------------------------ scenarios

def load(path: str, kwargs: dict[str, Any]) -> Any:
    """Llama(path, **kwargs) and, when it loads, a two-token completion ("loads": the file is
    accepted, and decodes)."""
    llm = Llama(path, **{**SMALL, **kwargs})
    try:
        return asyncio.run(_settle(llm.create_completion("Hello", max_tokens=2, temperature=0)))
    finally:
        llm.close()


def call(path: str, init: dict[str, Any], method: str, args: tuple[Any, ...], kwargs: dict[str, Any],
         probe: str = "complete") -> Any:
    """Llama(path, **init).method(*args, **kwargs) (awaited, streams drained), then the
    `probe` ("complete", "embed" or "none") that shows the model still serves."""
    llm = Llama(path, **{**SMALL, **init})

    async def main() -> Any:
        try:
            return await _settle(getattr(llm, method)(*args, **_resolve(kwargs)))
        finally:
            if probe != "none":
                await _still_serves(llm, probe)

    try:
        return asyncio.run(main())
    finally:
        llm.close()


def call_chat_with_media(path: str, projector: str, kwargs: dict[str, Any]) -> Any:
    """A chat completion on a model with an MTMD projector (files allowed, http(s) not)."""
    from allama.chat.multimodal import MTMDChatHandler

    llm = Llama(path, **{**SMALL, "n_ctx": 512, "n_batch": 512, "n_ubatch": 512},
                chat_handler=MTMDChatHandler(projector, n_threads=1))

    async def main() -> Any:
        try:
            return await _settle(llm.create_chat_completion(**kwargs))
        finally:
            await _still_serves(llm, "complete")

    try:
        return asyncio.run(main())
    finally:
        llm.close()


def plain(function: str, args: tuple[Any, ...]) -> Any:
    """A call that needs no model, by dotted name: `allama.LlamaGrammar.from_string`, say."""
    import importlib

    parts = function.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return summary(target(*_resolve(args)))
    raise ImportError(function)


def http(models: list[dict[str, Any]], server: dict[str, Any], method: str, path: str,
         request: dict[str, Any]) -> dict[str, Any]:
    """One HTTP request to the app serving `models` (ModelSettings fields) in-process, then a good
    request to its first model: {"status", "body" (the JSON, or None), "text", "content_type"}."""
    app = create_app(server_settings=ServerSettings(**server),
                     model_settings=[ModelSettings(**{"n_threads": 1, "n_threads_batch": 1, "n_parallel": 2,
                                                      "n_ctx": 128, "n_batch": 64, "n_ubatch": 64, **m})
                                     for m in models])
    registry = app.state.registry

    async def main() -> dict[str, Any]:
        await registry.wait_loaded()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://allama.test") as client:
                response = await asyncio.wait_for(client.request(method, path, **request), PROBE_TIMEOUT)
                try:
                    body = response.json()
                except ValueError:
                    body = None
                result = {"status": response.status_code, "body": body, "text": response.text[:2000],
                          "content_type": response.headers.get("content-type", "")}
                first = next(iter(registry.models.values()), None)
                if first is not None:
                    await _still_serves(first, "embed" if first.metadata.get("general.architecture") == "bert"
                                        else "complete")
                return result
        finally:
            await registry.aclose()

    return asyncio.run(main())


__all__ = ["SMALL", "EngineLeftBroken", "Nested", "Ref", "call", "call_chat_with_media", "http", "load", "plain",
           "summary"]
