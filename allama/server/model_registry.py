"""The served models, by alias: loaded in the background when the app starts and, when
several are configured, kept resident up to `max_loaded_models` at a time, swapped in when
a request names one that is not (llama-cpp-python's memory profile: one model at a time)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from allama.llama import Llama
from allama.server.errors import APIError
from allama.server.settings import ModelSettings

log = logging.getLogger("allama.server")


LoadProgress = Callable[[str], Callable[[float], Any]]  # alias -> llama.cpp's progress callback


async def load_model(settings: ModelSettings, progress: Callable[[float], Any] | None = None) -> Llama:
    """A `Llama` for `settings` as llama-cpp-python's server builds it: from the Hub when
    `hf_model_repo_id` is set, with the chat template of `hf_tokenizer_config_path`, and the
    prompt cache of `cache` / `cache_type` / `cache_size`; `progress` gets the loaded fraction."""
    kwargs = await anyio.to_thread.run_sync(settings.llama_kwargs)  # may read a HF tokenizer from disk
    if progress is not None:
        kwargs["progress_callback"] = progress
    template = _tokenizer_config(settings)
    if template is not None:
        from allama.chat import hf_tokenizer_config_to_chat_completion_handler

        kwargs["chat_handler"] = hf_tokenizer_config_to_chat_completion_handler(template)
    if settings.hf_model_repo_id:
        llm = await Llama.from_pretrained(settings.hf_model_repo_id, settings.model, **kwargs)
    else:
        llm = await Llama.load(settings.model, **kwargs)
    if settings.cache:
        from allama.cache import LlamaDiskCache, LlamaRAMCache

        llm.set_cache(LlamaDiskCache(capacity_bytes=settings.cache_size) if settings.cache_type == "disk"
                      else LlamaRAMCache(capacity_bytes=settings.cache_size))
    return llm


def _tokenizer_config(settings: ModelSettings) -> dict[str, Any] | None:
    """The tokenizer_config.json to format chat with, or None."""
    if not settings.hf_tokenizer_config_path or settings.chat_format not in (None, "hf-tokenizer-config"):
        return None
    with open(settings.hf_tokenizer_config_path, encoding="utf-8") as f:
        config = json.load(f)
    if not isinstance(config, dict) or not config.get("chat_template"):
        raise ValueError(f"{settings.hf_tokenizer_config_path} has no chat_template")
    template = config["chat_template"]
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        config = {**config, "chat_template": named.get("default") or next(iter(named.values()), None)}
    return config


class ModelLease:
    """A request's hold on a resident model: the model is not unloaded until every lease
    on it is released (a stream holds its lease until it ends)."""

    def __init__(self, registry: "ModelRegistry", alias: str, model: Llama) -> None:
        self.registry = registry
        self.alias = alias
        self.model = model
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.registry._release(self.alias)


class ModelRegistry:
    """Holds the configured models. `lease(name)` gives a loaded model for a request's
    `model` (swapping it in if needed), or raises the API error for an unknown alias (404),
    a model still loading at start (503) or one that failed to load (503).

    `max_loaded_models` (0: no limit) caps the resident models; at start only the first
    model loads (all of them with no limit or enough room)."""

    def __init__(self, models: Sequence[ModelSettings], max_loaded_models: int = 0,
                 load_progress: LoadProgress | None = None) -> None:
        if not models:
            raise ValueError("no model to serve: give --model PATH or a config file with `models`")
        aliases = [m.alias for m in models]
        if len(set(aliases)) != len(aliases):
            raise ValueError(f"model aliases must be unique: {aliases}")
        self.settings = {m.alias: m for m in models}
        self.default = aliases[0]
        self.max_loaded = max_loaded_models if 0 < max_loaded_models < len(models) else 0
        self.models: dict[str, Llama] = {}
        self.errors: dict[str, BaseException] = {}
        self._load_progress = load_progress  # `allama serve` draws a bar; library use, none
        self._loading: asyncio.Task[None] | None = None
        self._leases: Counter[str] = Counter()
        self._idle: dict[str, asyncio.Event] = {}
        self._last_used: dict[str, float] = {}
        self._evicting: set[str] = set()
        self._swap_lock: asyncio.Lock | None = None
        self._swaps: set[asyncio.Task[None]] = set()
        self.swaps = 0  # models loaded after the start (for tests and logs)

    def start_loading(self) -> None:
        """Starts loading the models to have at start (once); requests meanwhile get 503."""
        if self._loading is None:
            self._swap_lock = asyncio.Lock()
            self._loading = asyncio.get_running_loop().create_task(self._load_initial())

    async def _load_initial(self) -> None:
        initial = [self.default] if self.max_loaded else list(self.settings)
        for alias in initial:
            try:
                self.models[alias] = await self._load(alias)
                self._last_used[alias] = time.monotonic()
                log.info("loaded %s from %s", alias, self.settings[alias].model)
            except Exception as exc:  # noqa: BLE001 - reported by /health and to requests
                log.error("could not load %s: %s", alias, exc)
                self.errors[alias] = exc

    @property
    def loaded(self) -> bool:
        """The models to have at start are loaded (or failed)."""
        return self._loading is not None and self._loading.done()

    async def wait_loaded(self) -> None:
        self.start_loading()
        assert self._loading is not None
        await asyncio.shield(self._loading)

    def resolve(self, name: str | None) -> str:
        """The alias a request's `model` names. With one model served any name reaches it
        (clients send names like "gpt-4o"); with several, an unknown name is a 404."""
        if name is None or name in self.settings:
            return name or self.default
        if len(self.settings) == 1:
            return self.default
        for alias, settings in self.settings.items():
            if name in (settings.model, os.path.basename(settings.model)):
                return alias
        raise APIError(404, f"The model `{name}` does not exist; served: {', '.join(self.settings)}",
                       param="model", code="model_not_found")

    async def lease(self, name: str | None) -> ModelLease:
        """The model a request names, held until the lease is released. A model that is not
        resident is swapped in (after the requests running on the one it replaces finish)."""
        self.start_loading()
        alias = self.resolve(name)
        assert self._loading is not None
        if not self._loading.done():
            raise APIError(503, f"model {alias} is loading", code="loading", headers={"Retry-After": "1"})
        while True:
            if alias in self.errors:
                raise APIError(503, f"model {alias} failed to load: {self.errors[alias]}", code="model_load_failed")
            model = self.models.get(alias)
            if model is not None and alias not in self._evicting:
                self._leases[alias] += 1
                self._last_used[alias] = time.monotonic()
                return ModelLease(self, alias, model)
            swap = asyncio.get_running_loop().create_task(self._swap_in(alias))
            self._swaps.add(swap)
            swap.add_done_callback(self._swaps.discard)
            await asyncio.shield(swap)  # a caller that goes away does not stop a swap half done

    def _release(self, alias: str) -> None:
        self._leases[alias] -= 1
        if self._leases[alias] <= 0:
            del self._leases[alias]
            idle = self._idle.get(alias)
            if idle is not None:
                idle.set()

    async def _swap_in(self, alias: str) -> None:
        assert self._swap_lock is not None
        async with self._swap_lock:
            if alias in self.models and alias not in self._evicting:
                return  # another request swapped it in meanwhile
            while self.max_loaded and len(self.models) >= self.max_loaded:
                victim = min((a for a in self.models if a != alias), key=lambda a: self._last_used.get(a, 0.0))
                self._evicting.add(victim)  # new requests for it wait for the next swap
                try:
                    while self._leases[victim] > 0:
                        idle = self._idle[victim] = asyncio.Event()
                        await idle.wait()
                    model = self.models.pop(victim)
                finally:
                    self._evicting.discard(victim)
                    self._idle.pop(victim, None)
                await model.aclose()
                log.info("unloaded %s to load %s", victim, alias)
            try:
                self.models[alias] = await self._load(alias)
            except Exception as exc:  # noqa: BLE001 - this request gets it; the next one tries again
                log.error("could not load %s: %s", alias, exc)
                raise APIError(503, f"model {alias} failed to load: {exc}", code="model_load_failed") from exc
            self._last_used[alias] = time.monotonic()
            self.swaps += 1
            log.info("loaded %s from %s", alias, self.settings[alias].model)

    async def _load(self, alias: str) -> Llama:
        progress = self._load_progress(alias) if self._load_progress is not None else None
        return await load_model(self.settings[alias], progress)

    async def aclose(self) -> None:
        for task in [self._loading, *self._swaps]:
            if task is not None and not task.done():
                task.cancel()
        for model in list(self.models.values()):
            await model.aclose()
        self.models.clear()
