"""A Llama's LoRA adapters by name, and the (adapter, scale) set each request decodes with
(the engine decodes requests with different sets in turns: docs/engine.md, "LoRA adapters
per request")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from allama import _native

AdapterSpec = str | os.PathLike[str] | tuple[str | os.PathLike[str], float]
AdapterSet = tuple[tuple[Any, float], ...]


class LoraAdapters:
    """The adapters of `lora_adapters` (name -> path, or (path, default scale)) and of
    llama-cpp-python's `lora_path` / `lora_scale`, loaded onto the model."""

    def __init__(self, model: _native.Model, named: Mapping[str, AdapterSpec] | None = None,
                 lora_path: str | None = None, lora_scale: float = 1.0) -> None:
        self._loaded: dict[str, Any] = {}
        specs = dict(named or {})
        if lora_path is not None:
            specs[os.fspath(lora_path)] = (lora_path, lora_scale)
        default: dict[str, float] = {}
        for name, spec in specs.items():
            path, scale = spec if isinstance(spec, tuple) else (spec, 0.0)
            self._loaded[name] = model.load_lora(os.fspath(path))
            if scale:
                default[name] = float(scale)
        self.default: AdapterSet = self.chosen(default)

    def scales(self) -> dict[str, float]:
        """Every adapter's name -> the scale requests get by default (0: off)."""
        default = {adapter: scale for adapter, scale in self.default}
        return {name: default.get(adapter, 0.0) for name, adapter in self._loaded.items()}

    def for_request(self, scales: Mapping[str, float] | None) -> AdapterSet:
        """The set of a request that names `scales` ({} for none; None: the defaults)."""
        return self.default if scales is None else self.chosen(scales)

    def chosen(self, scales: Mapping[str, float]) -> AdapterSet:
        """(adapter, scale) pairs for `scales`, in load order, adapters at scale 0 left out."""
        unknown = [name for name in scales if name not in self._loaded]
        if unknown:
            raise ValueError(f"unknown LoRA adapter {unknown[0]!r}; loaded: {sorted(self._loaded) or 'none'}")
        out = []
        for name, adapter in self._loaded.items():
            scale = scales.get(name, 0.0)
            if not isinstance(scale, (int, float)) or scale != scale:
                raise ValueError(f"the scale of LoRA adapter {name!r} must be a number")
            if scale:
                out.append((adapter, float(scale)))
        return tuple(out)
