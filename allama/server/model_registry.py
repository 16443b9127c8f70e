"""The served models, by alias, loaded in the background when the app starts."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from allama.llama import Llama
from allama.server.errors import APIError
from allama.server.settings import ModelSettings

log = logging.getLogger("allama.server")


class ModelRegistry:
    """Holds one `Llama` per configured model. `get(alias)` returns a loaded model, or raises
    the API error for an unknown alias (404) or a model still loading (503)."""

    def __init__(self, models: Sequence[ModelSettings]) -> None:
        if not models:
            raise ValueError("no model to serve: give --model PATH or a config file with `models`")
        aliases = [m.alias for m in models]
        if len(set(aliases)) != len(aliases):
            raise ValueError(f"model aliases must be unique: {aliases}")
        self.settings = {m.alias: m for m in models}
        self.default = aliases[0]
        self.models: dict[str, Llama] = {}
        self.errors: dict[str, BaseException] = {}
        self._loading: asyncio.Task[None] | None = None

    def start_loading(self) -> None:
        """Starts loading every model (once); requests meanwhile get 503."""
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load_all())

    async def _load_all(self) -> None:
        for alias, settings in self.settings.items():
            try:
                self.models[alias] = await Llama.load(settings.model, **settings.llama_kwargs())
                log.info("loaded %s from %s", alias, settings.model)
            except Exception as exc:  # noqa: BLE001 - reported by /health and to requests
                log.error("could not load %s: %s", alias, exc)
                self.errors[alias] = exc

    @property
    def loaded(self) -> bool:
        return len(self.models) + len(self.errors) == len(self.settings)

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

    def get(self, name: str | None) -> Llama:
        self.start_loading()
        alias = self.resolve(name)
        if alias in self.errors:
            raise APIError(503, f"model {alias} failed to load: {self.errors[alias]}", code="model_load_failed")
        if alias not in self.models:
            raise APIError(503, f"model {alias} is loading", code="loading", headers={"Retry-After": "1"})
        return self.models[alias]

    async def aclose(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        for model in self.models.values():
            await model.aclose()
        self.models.clear()
