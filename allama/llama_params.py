"""Llama(...)'s arguments and the native parameters they make: the model's, the engine
context's, the engine's, and those of the blocking twin's single-sequence context."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from allama import _native, arguments
from allama.engine import EngineConfig

log = logging.getLogger("allama")


def default_threads(n_threads: int | None, n_threads_batch: int | None) -> tuple[int, int]:
    """(threads for generation, threads for prompt processing): the arguments, or half the
    CPUs and every CPU where they are None or 0."""
    cpu = os.cpu_count() or 1
    return n_threads or max(cpu // 2, 1), n_threads_batch or cpu


class LlamaParams:
    """Every argument of one Llama(...) call, defaults included, checked when made."""

    def __init__(self, args: Mapping[str, Any]) -> None:
        _check(args)
        self._args = dict(args)

    def __getitem__(self, name: str) -> Any:
        return self._args[name]

    def as_dict(self) -> dict[str, Any]:
        """The arguments (what a pickled Llama keeps: unpickling loads the model again)."""
        return dict(self._args)

    @property
    def n_threads(self) -> int:
        """Threads for generation (the n_threads argument, else half the CPUs)."""
        return default_threads(self["n_threads"], None)[0]

    @property
    def n_threads_batch(self) -> int:
        """Threads for prompt processing (the n_threads_batch argument, else every CPU)."""
        return default_threads(None, self["n_threads_batch"])[1]

    def model(self) -> _native.ModelParams:
        """How the model loads (a LoRA `lora_path` turns mmap off, as llama-cpp-python does)."""
        mp = _native.ModelParams()
        mp.n_gpu_layers = self["n_gpu_layers"]
        mp.split_mode = self["split_mode"]
        mp.main_gpu = self["main_gpu"]
        mp.tensor_split = list(self["tensor_split"] or [])
        mp.vocab_only = self["vocab_only"]
        mp.use_mmap = self["use_mmap"] and self["lora_path"] is None
        mp.use_mlock = self["use_mlock"]
        mp.kv_overrides = dict(self["kv_overrides"] or {})
        rpc_servers = self["rpc_servers"]
        if rpc_servers:
            servers = rpc_servers.split(",") if isinstance(rpc_servers, str) else rpc_servers
            if not isinstance(servers, (list, tuple)) or not all(isinstance(s, str) for s in servers):
                raise TypeError(f"rpc_servers takes 'host:port,...' or a list of 'host:port', got {rpc_servers!r}")
            mp.rpc_servers = [s.strip() for s in servers]
            if mp.n_gpu_layers == 0:
                log.warning("rpc_servers given with n_gpu_layers=0: every layer stays on this machine "
                            "(n_gpu_layers=-1 puts them all on the workers)")
        return mp

    def context(self, n_ctx: int) -> _native.ContextParams:
        """The engine's generation context; `n_ctx` is one request's window (the model's training
        context when the argument is 0). It never pools: embeddings have a context of their own
        (docs/embeddings.md); `embedding` is taken for llama-cpp-python's signature."""
        cp = _native.ContextParams()
        cp.n_ctx = self["kv_size"] if self["kv_size"] is not None else n_ctx
        cp.n_batch = self["n_batch"]
        cp.n_ubatch = min(self["n_ubatch"], self["n_batch"])
        cp.n_threads = self.n_threads
        cp.n_threads_batch = self.n_threads_batch
        cp.rope_scaling_type = -1 if self["rope_scaling_type"] is None else self["rope_scaling_type"]
        for name in ("pooling_type", "attention_type", "rope_freq_base", "rope_freq_scale", "yarn_ext_factor",
                     "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow", "yarn_orig_ctx", "offload_kqv", "no_perf"):
            setattr(cp, name, self[name])
        cp.embeddings = False
        cp.flash_attn_type = 1 if self["flash_attn"] else 0
        for name in ("op_offload", "swa_full", "type_k", "type_v"):  # None: llama.cpp's default
            if self[name] is not None:
                setattr(cp, name, self[name])
        return cp

    def engine(self, n_ctx: int) -> EngineConfig:
        """The scheduler's configuration for one request window of `n_ctx` tokens."""
        n_parallel = self["n_parallel"]
        return EngineConfig(
            n_ctx=n_ctx,
            n_parallel=n_parallel,
            n_batch=self["n_batch"],
            n_keep=EngineConfig.default_n_keep(n_parallel, self["kv_unified"]) if self["n_keep"] is None else self["n_keep"],
            max_queue=self["max_queue"],
            pooling_type=self["pooling_type"],
            embed_max_tokens=max(self["n_batch"], 1),
            kv_unified=self["kv_unified"],
            overlap_outputs=self.overlap_outputs,
        )

    @property
    def overlap_outputs(self) -> bool:
        """The overlap_outputs argument, else whether the decode leaves a CPU free for the output
        thread: generation threads below the CPU count, or layers offloaded to a GPU (on two
        CPUs that both decode, the thread would take one from the decode: docs/benchmarks.md)."""
        if self["overlap_outputs"] is not None:
            return self["overlap_outputs"]  # checked: True or False
        offloaded = self["n_gpu_layers"] != 0 and _native.supports_gpu_offload()
        return offloaded or self.n_threads < (os.cpu_count() or 1)

    def single_sequence_context(self, n_ctx: int) -> _native.ContextParams:
        """The private context of llama-cpp-python's eval/sample/generate API (allama.sequential):
        one sequence of `n_ctx` tokens, decoded n_batch tokens at a time."""
        cp = _native.ContextParams()
        cp.n_ctx = n_ctx
        cp.n_batch = cp.n_ubatch = self["n_batch"]
        cp.n_threads = self.n_threads
        cp.n_threads_batch = self.n_threads_batch
        cp.flash_attn_type = 1 if self["flash_attn"] else 0
        return cp


def _check(args: Mapping[str, Any]) -> None:
    """Llama(...)'s arguments, before anything loads: a TypeError or ValueError naming the
    first bad one (llama.cpp would wrap a negative size to a huge one, or take a NaN)."""
    path = args["model_path"]
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise TypeError(f"model_path must be a str or an os.PathLike of str, not {type(path).__name__}")
    whole = arguments.whole
    whole("n_ctx", args["n_ctx"], 0)  # 0: the model's training context
    whole("n_batch", args["n_batch"], 1)
    whole("n_ubatch", args["n_ubatch"], 1)
    whole("n_parallel", args["n_parallel"], 1)
    whole("max_queue", args["max_queue"], 0)
    whole("last_n_tokens_size", args["last_n_tokens_size"], -1)  # -1: the context size
    whole("yarn_orig_ctx", args["yarn_orig_ctx"], 0)
    for name, low in (("n_threads", 0), ("n_threads_batch", 0), ("kv_size", 1), ("n_keep", 0)):
        if args[name] is not None:
            whole(name, args[name], low)  # n_threads 0 or None: the default
    for name, low in (("rope_freq_base", 0.0), ("rope_freq_scale", 0.0), ("yarn_ext_factor", None),
                      ("yarn_attn_factor", None), ("yarn_beta_fast", None), ("yarn_beta_slow", None),
                      ("lora_scale", None)):
        arguments.real(name, args[name], low)  # rope 0: the model's; yarn_ext_factor < 0: the model's
    for share in args["tensor_split"] or ():
        arguments.real("tensor_split", share, 0.0)
    arguments.seed(args["seed"])
    if args["overlap_outputs"] is not None and not isinstance(args["overlap_outputs"], bool):
        raise TypeError(f"overlap_outputs must be True, False or None, not {type(args['overlap_outputs']).__name__}")
    arguments.optional_mapping("kv_overrides", args["kv_overrides"])
    arguments.optional_mapping("lora_adapters", args["lora_adapters"])
    tokenizer = args["tokenizer"]
    if tokenizer is not None and not (callable(getattr(tokenizer, "tokenize", None))
                                      and callable(getattr(tokenizer, "detokenize", None))):
        raise TypeError("tokenizer must have tokenize() and detokenize() (an allama.LlamaHFTokenizer, say)")
    if not args["kv_unified"] and args["kv_size"] is not None and not args["vocab_only"]:
        raise ValueError("kv_size sizes the unified KV cache; with kv_unified=False every sequence has a "
                         "stream of n_ctx cells")
