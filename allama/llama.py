"""Llama: the asyncio-native high-level API.

Every model call is awaitable and every stream is an async iterator; concurrent
calls share the model through the engine's continuous batching. Parameter names
and defaults follow llama-cpp-python.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from allama import _native, arguments
from allama.completion import ChoiceText, chunk, completion_id, logprobs_block, now, usage
from allama.engine import EngineConfig, EngineStats, Output, Request, Scheduler
from allama.engine.request import MediaSpan
from allama.engine.engine_call import EngineCall
from allama.engine.loop_handle import LoopHandle
from allama.engine.output_sink import OutputSink
from allama.cache import BaseLlamaCache
from allama.errors import ContextOverflowError, EngineClosedError
from allama.gbnf import checked_gbnf
from allama.logits_processing import as_logits_processor, as_stopping_criteria
from allama.session import LlamaSession
from allama.session_turn import current_turn_slot
from allama.state import LlamaState
from allama.stream import AsyncStream
from allama.token_prefix import common_prefix
from allama.tokenizer import BaseLlamaTokenizer, LlamaTokenizer, TokenPieces

LLAMA_DEFAULT_SEED = 0xFFFFFFFF

Prompt = str | bytes | Sequence[int]


if TYPE_CHECKING:
    from allama.types import (
        CreateChatCompletionResponse,
        CreateChatCompletionStreamResponse,
        CreateCompletionResponse,
        CreateCompletionStreamResponse,
        CreateEmbeddingResponse,
        RerankResponse,
    )


class Llama:
    """A GGUF model served by a continuous-batching engine.

    `Llama(model_path, ...)` loads in the calling thread; `await Llama.load(...)`
    loads off the event loop. `n_ctx` is the context window of one request; the
    KV cache holds `kv_size` cells (default `n_ctx`: the memory llama-cpp-python takes for
    the same arguments), shared by up to `n_parallel` concurrent sequences. When they fill
    up, the newest request is preempted and recomputed later; a larger `kv_size` (up to
    `n_ctx * n_parallel`) trades memory for fewer preemptions under load. `kv_unified=False`
    gives every sequence id a KV stream of `n_ctx` cells of its own instead (memory for
    `n_parallel + n_keep` windows; much faster decoding of many streams at once).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        # model
        n_gpu_layers: int = 0,
        split_mode: int = 1,
        main_gpu: int = 0,
        tensor_split: Sequence[float] | None = None,
        rpc_servers: str | Sequence[str] | None = None,
        vocab_only: bool = False,
        use_mmap: bool = True,
        use_mlock: bool = False,
        kv_overrides: dict[str, bool | int | float | str] | None = None,
        # context
        seed: int = LLAMA_DEFAULT_SEED,
        n_ctx: int = 512,
        n_batch: int = 512,
        n_ubatch: int = 512,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        rope_scaling_type: int | None = -1,
        pooling_type: int = -1,
        attention_type: int = -1,
        rope_freq_base: float = 0.0,
        rope_freq_scale: float = 0.0,
        yarn_ext_factor: float = -1.0,
        yarn_attn_factor: float = 1.0,
        yarn_beta_fast: float = 32.0,
        yarn_beta_slow: float = 1.0,
        yarn_orig_ctx: int = 0,
        logits_all: bool = False,
        embedding: bool = False,
        offload_kqv: bool = True,
        flash_attn: bool = False,
        op_offload: bool | None = None,
        swa_full: bool | None = None,
        no_perf: bool = False,
        last_n_tokens_size: int = 64,
        type_k: int | None = None,
        type_v: int | None = None,
        # adapters
        lora_base: str | None = None,
        lora_scale: float = 1.0,
        lora_path: str | None = None,
        lora_adapters: Mapping[str, str | os.PathLike[str] | tuple[str | os.PathLike[str], float]] | None = None,
        # chat and misc (accepted for llama-cpp-python compatibility)
        numa: bool | int = False,
        chat_format: str | None = None,
        chat_handler: Any = None,
        draft_model: Any = None,
        tokenizer: BaseLlamaTokenizer | None = None,
        spm_infill: bool = False,
        verbose: bool = False,
        # allama
        n_parallel: int = 4,
        max_queue: int = 1024,
        kv_size: int | None = None,
        kv_unified: bool = True,
        n_keep: int | None = None,
        progress_callback: Callable[[float], bool | None] | None = None,
        **kwargs: Any,
    ) -> None:
        # the constructor's arguments, for pickling (a copy loads the model again)
        self._init_args = {k: v for k, v in locals().items() if k not in ("self", "kwargs")} | kwargs
        _check_constructor_arguments(self._init_args)
        if verbose:
            _native.set_log_level(logging.INFO)
        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        self.chat_format = chat_format
        self.chat_handler = chat_handler
        self.draft_model = draft_model
        if tokenizer is not None and not (callable(getattr(tokenizer, "tokenize", None))
                                          and callable(getattr(tokenizer, "detokenize", None))):
            raise TypeError("tokenizer must have tokenize() and detokenize() (an allama.LlamaHFTokenizer, say)")
        self._custom_tokenizer = tokenizer  # None: the model's own vocabulary, on the fast path
        self.spm_infill = spm_infill
        self.logits_all = logits_all
        self.last_n_tokens_size = last_n_tokens_size
        self.lora_path = lora_path
        self.lora_scale = lora_scale
        self._seed = seed
        self._closed = False
        self.cache: BaseLlamaCache | None = None
        self._default_session: LlamaSession | None = None

        mp = _native.ModelParams()
        mp.n_gpu_layers = n_gpu_layers
        mp.split_mode = split_mode
        mp.main_gpu = main_gpu
        mp.tensor_split = list(tensor_split or [])
        mp.vocab_only = vocab_only
        mp.use_mmap = use_mmap and lora_path is None
        mp.use_mlock = use_mlock
        mp.kv_overrides = dict(kv_overrides or {})
        if rpc_servers:
            mp.rpc_servers = rpc_servers.split(",") if isinstance(rpc_servers, str) else list(rpc_servers)
        self._model = _native.Model.load(self.model_path, mp, progress_callback)
        self._model_params = mp  # as loaded (allama.sync.Llama.model_params reports a copy)
        self._context_params: _native.ContextParams | None = None  # vocab_only: no context
        self._vocab = _native.Vocab(self._model)
        self.tokenizer_: BaseLlamaTokenizer = tokenizer if tokenizer is not None else LlamaTokenizer(self)
        self.metadata: dict[str, str] = self._model.metadata
        self._n_ctx = n_ctx if n_ctx > 0 else self._model.n_ctx_train
        self._n_parallel = n_parallel
        self._scheduler: Scheduler | None = None
        self._lora: dict[str, Any] = {}
        self._lora_default: tuple[tuple[Any, float], ...] = ()
        if vocab_only:
            return

        if n_parallel < 1:
            raise ValueError("n_parallel must be at least 1")
        if not kv_unified and kv_size is not None:
            raise ValueError("kv_size sizes the unified KV cache; with kv_unified=False every sequence has a "
                             "stream of n_ctx cells")
        cpu = os.cpu_count() or 1
        cp = _native.ContextParams()
        cp.n_ctx = kv_size if kv_size is not None else self._n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = min(n_ubatch, n_batch)
        cp.n_threads = n_threads or max(cpu // 2, 1)
        cp.n_threads_batch = n_threads_batch or cpu
        cp.rope_scaling_type = -1 if rope_scaling_type is None else rope_scaling_type
        cp.pooling_type = pooling_type
        cp.attention_type = attention_type
        cp.rope_freq_base = rope_freq_base
        cp.rope_freq_scale = rope_freq_scale
        cp.yarn_ext_factor = yarn_ext_factor
        cp.yarn_attn_factor = yarn_attn_factor
        cp.yarn_beta_fast = yarn_beta_fast
        cp.yarn_beta_slow = yarn_beta_slow
        cp.yarn_orig_ctx = yarn_orig_ctx
        # Embeddings run on a context of their own (docs/embeddings.md): the generation
        # context never pools. `embedding` is taken for llama-cpp-python's signature.
        cp.embeddings = False
        cp.offload_kqv = offload_kqv
        cp.flash_attn_type = 1 if flash_attn else 0
        cp.no_perf = no_perf
        if op_offload is not None:
            cp.op_offload = op_offload
        if swa_full is not None:
            cp.swa_full = swa_full
        if type_k is not None:
            cp.type_k = type_k
        if type_v is not None:
            cp.type_v = type_v
        config = EngineConfig(
            n_ctx=self._n_ctx,
            n_parallel=n_parallel,
            n_batch=n_batch,
            n_keep=n_parallel if n_keep is None else n_keep,
            max_queue=max_queue,
            pooling_type=pooling_type,
            embed_max_tokens=max(n_batch, 1),
            kv_unified=kv_unified,
        )
        if draft_model is not None and not callable(draft_model):
            raise TypeError("draft_model must be a LlamaDraftModel (called with the sequence's token ids)")
        self._scheduler = Scheduler(self._model, cp, config, tokenizer=tokenizer, draft_model=draft_model)
        self._context_params = cp  # as the engine's context was made (allama.sync.Llama.context_params)
        # Dropped without close(): the engine's thread stops and the memory is freed.
        weakref.finalize(self, self._scheduler.close)
        # LoRA adapters by name; requests pick theirs (create_completion(lora=...)), the
        # engine decodes requests with different sets in turns (docs/engine.md, "LoRA adapters per request").
        default: dict[str, float] = {}
        named = dict(lora_adapters or {})
        if lora_path is not None:
            named[os.fspath(lora_path)] = (lora_path, lora_scale)
        for name, spec in named.items():
            path, scale = spec if isinstance(spec, tuple) else (spec, 0.0)
            self._lora[name] = self._model.load_lora(os.fspath(path))
            if scale:
                default[name] = float(scale)
        self._lora_default = self._lora_set(default)

    @property
    def draft_model(self) -> Any:
        """The LlamaDraftModel proposing tokens for speculative decoding, or None. Settable: the
        engine switches to the new one between two decode steps (a recurrent model never drafts)."""
        return self._draft_model

    @draft_model.setter
    def draft_model(self, value: Any) -> None:
        if value is not None and not callable(value):
            raise TypeError("draft_model must be a LlamaDraftModel (called with the sequence's token ids)")
        self._draft_model = value
        scheduler = getattr(self, "_scheduler", None)
        if scheduler is not None and not scheduler._recurrent:
            try:  # the decode thread reads it during a step: set it there, between steps
                scheduler._queue_call(EngineCall(partial(setattr, scheduler, "draft_model", value), None))
            except EngineClosedError:
                pass

    @property
    def seed(self) -> int:
        """The seed of requests that pass none (the `seed` argument; `set_seed` changes it)."""
        return self._seed

    @property
    def lora_adapters(self) -> dict[str, float]:
        """The loaded LoRA adapters (name -> the scale requests get by default; 0: off)."""
        default = {adapter: scale for adapter, scale in self._lora_default}
        return {name: default.get(adapter, 0.0) for name, adapter in self._lora.items()}

    def _lora_set(self, scales: Mapping[str, float]) -> tuple[tuple[Any, float], ...]:
        """(adapter, scale) pairs for a request, in load order, adapters at scale 0 left out."""
        unknown = [name for name in scales if name not in self._lora]
        if unknown:
            raise ValueError(f"unknown LoRA adapter {unknown[0]!r}; loaded: {sorted(self._lora) or 'none'}")
        out = []
        for name, adapter in self._lora.items():
            scale = scales.get(name, 0.0)
            if not isinstance(scale, (int, float)) or scale != scale:
                raise ValueError(f"the scale of LoRA adapter {name!r} must be a number")
            if scale:
                out.append((adapter, float(scale)))
        return tuple(out)

    @classmethod
    async def load(cls, model_path: str | os.PathLike[str], **params: Any) -> "Llama":
        """Loads the model in a worker thread, keeping the event loop free."""
        return await anyio.to_thread.run_sync(partial(cls, model_path, **params))

    @classmethod
    async def from_pretrained(
        cls,
        repo_id: str,
        filename: str | None,
        additional_files: Sequence[str] | None = None,
        local_dir: str | os.PathLike[str] | None = None,
        local_dir_use_symlinks: bool | str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> "Llama":
        """Downloads the GGUF file of a Hugging Face Hub repo that matches the glob `filename`
        (every part of a split model) and `additional_files`, off the event loop, then loads it
        as `Llama.load(path, **kwargs)` does. Needs huggingface_hub (`pip install 'allama[hf]'`)."""
        from allama.hub import download_model

        path = await anyio.to_thread.run_sync(partial(
            download_model, repo_id, filename, additional_files, local_dir=local_dir,
            local_dir_use_symlinks=local_dir_use_symlinks, cache_dir=cache_dir))
        return await cls.load(path, **kwargs)

    # ------------------------------------------------------------------ plain calls

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of UTF-8 `text` (bytes, as llama-cpp-python takes it)."""
        if not isinstance(text, (bytes, bytearray)):
            raise TypeError(f"tokenize takes bytes (text.encode('utf-8')), not {type(text).__name__}")
        if self._custom_tokenizer is None:
            return self._vocab.tokenize(bytes(text), add_bos, special)
        tokens = list(self._custom_tokenizer.tokenize(bytes(text), add_bos, special))
        n_vocab = self._vocab.n_tokens
        for t in tokens:
            if not 0 <= t < n_vocab:
                raise ValueError(f"the tokenizer gave token id {t}, outside this model's vocabulary [0, {n_vocab}): "
                                 "it is not the model's tokenizer")
        return tokens

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        tokens = self._in_vocabulary(tokens, "tokens")
        if prev_tokens is not None:
            prev_tokens = self._in_vocabulary(prev_tokens, "prev_tokens")
        return self.tokenizer_.detokenize(tokens, prev_tokens=prev_tokens, special=special)

    def _in_vocabulary(self, tokens: Iterable[int], name: str = "the token ids") -> list[int]:
        """`tokens` as a list of ints, each a token id of this model."""
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
            raise TypeError(f"{name} must be a list of token ids (ints), not {type(tokens).__name__}")
        out = list(tokens)
        n_vocab = self._vocab.n_tokens
        for t in out:
            if not _is_token(t):
                raise TypeError(f"{name} must be a list of token ids (ints); it holds a {type(t).__name__}")
            if not 0 <= t < n_vocab:
                raise ValueError(f"token id {t} is out of range [0, {n_vocab})")
        return [int(t) for t in out]

    def tokenizer(self) -> LlamaTokenizer:
        """The model's own tokenizer (as llama-cpp-python: even when `tokenizer=` replaced it)."""
        return LlamaTokenizer(self)

    def _token_pieces(self) -> Any:
        """What gives one token's text for logprobs: the vocabulary, or the `tokenizer=` one."""
        return self._vocab if self._custom_tokenizer is None else TokenPieces(self._custom_tokenizer)

    def n_ctx(self) -> int:
        """The context window one request may use."""
        return self._n_ctx

    def n_vocab(self) -> int:
        return self._vocab.n_tokens

    def n_embd(self) -> int:
        return self._model.n_embd

    def pooling_type(self) -> int:
        """The pooling embeddings use: 0 none, 1 mean, 2 cls, 3 last, 4 rank (the model's unless
        `pooling_type` was given)."""
        return self._engine().embedder.context().pooling_type

    @staticmethod
    def logits_to_logprobs(logits: np.ndarray | Sequence[float], axis: int = -1) -> np.ndarray:
        """Log-softmax of logits along `axis` (float32), as llama-cpp-python's helper."""
        x = np.asarray(logits, dtype=np.float32)
        shifted = x - np.max(x, axis=axis, keepdims=True)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))

    @staticmethod
    def longest_token_prefix(a: Sequence[int], b: Sequence[int]) -> int:
        """How many leading tokens a and b share."""
        return common_prefix(a, b)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as its constructor arguments: unpickling loads the model again."""
        return dict(self._init_args)

    def __setstate__(self, state: dict[str, Any]) -> None:
        args = dict(state)
        self.__init__(args.pop("model_path"), **args)  # type: ignore[misc]

    def token_bos(self) -> int:
        return self._vocab.bos

    def token_eos(self) -> int:
        return self._vocab.eos

    def token_nl(self) -> int:
        return self._vocab.nl

    def stats(self) -> EngineStats:
        """A snapshot of the engine's counters."""
        return self._engine().stats()

    def reset(self) -> None:
        """Kept for llama-cpp-python compatibility: the engine keeps no single token history."""

    # ------------------------------------------------------------------ sessions, states, caches

    def session(self) -> LlamaSession:
        """A conversation that owns one sequence and keeps its KV between turns (see LlamaSession);
        its sequence is taken at its first use or `async with`."""
        return LlamaSession(self)

    async def save_state(self) -> LlamaState:
        """What the last call evaluated: the tokens of the most recently finished completion
        (prompt and output) with their KV, as llama-cpp-python's save_state after `llm(prompt)`;
        after load_state() and before any later completion, the loaded state; with neither,
        an empty state. AllamaError if that completion's KV was dropped for room since (kept
        sequences are: `n_keep`), where a session (`llm.session()`) keeps it for sure."""
        last = await self._engine().save_last_completion(self._seed)
        if last is not None:
            return last
        return await self._default().save_state()

    async def load_state(self, state: LlamaState) -> None:
        """Loads a state into this Llama's default session. Its KV then serves every request
        whose prompt starts with the state's tokens (llama-cpp-python's load_state)."""
        await self._default().load_state(state)
        await self._engine().forget_last_completion()

    def _default(self) -> LlamaSession:
        self._engine()
        if self._default_session is None:
            self._default_session = LlamaSession(self)
        return self._default_session

    def set_cache(self, cache: BaseLlamaCache | None) -> None:
        """Keeps prompt states in `cache` (LlamaRAMCache, LlamaDiskCache), or stops with None.
        A completion restores the cached state that shares the longest prefix with its prompt,
        when the engine holds no longer one, and stores the state of prompt + completion."""
        if cache is not None and not isinstance(cache, BaseLlamaCache):
            raise TypeError("set_cache takes an allama LlamaRAMCache or LlamaDiskCache (or None)")
        self.cache = cache

    async def _bind_requests(self, requests: list[Request]) -> None:
        """Ties the requests to the session whose turn this is and to the prompt cache."""
        slot = current_turn_slot()
        if slot is not None:
            if len(requests) != 1 or requests[0].n != 1:
                raise ValueError("a session turn continues one prompt with n=1")
            requests[0].session = slot
        cache = self.cache
        if cache is None:
            return
        engine = self._engine()
        for request in requests:
            if request.media or request.prompt_logprobs or request.lora:
                # placeholder ids of media are not worth keeping; echo needs every prompt row;
                # states do not record the LoRA adapters their KV was computed with
                continue
            request.keep_state = True
            state = await cache.lookup(request.prompt, longer_than=engine.held_prefix(request.prompt))
            if state is not None and state.scope == "sequence":
                request.restore = state

    async def _keep_state(self, state: LlamaState) -> None:
        cache = self.cache
        if cache is not None:
            state.seed = self._seed
            await cache.store(state.tokens, state)

    # ------------------------------------------------------------------ lifecycle

    async def aclose(self) -> None:
        """Fails pending requests with EngineClosedError and frees the native memory."""
        if self._closed:
            return
        self._closed = True
        if self._scheduler is not None:
            await anyio.to_thread.run_sync(self._scheduler.close)
        self._model.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.close()
        self._model.close()

    async def __aenter__(self) -> "Llama":
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    @property
    def engine(self) -> Scheduler:
        """The continuous-batching engine that runs this model's requests (sessions open their
        sequences on it). EngineClosedError once closed; ValueError for a vocab_only model."""
        return self._engine()

    def _engine(self) -> Scheduler:
        if self._closed:
            raise EngineClosedError("the model is closed")
        if self._scheduler is None:
            raise ValueError("this model was loaded with vocab_only=True: it can tokenize but not generate")
        return self._scheduler

    # ------------------------------------------------------------------ completions

    async def __call__(self, prompt: Prompt | list[str], **kwargs: Any) -> Any:
        return await self.create_completion(prompt, **kwargs)

    async def create_completion(
        self,
        prompt: Prompt | list[str] | list[list[int]],
        suffix: str | None = None,
        max_tokens: int | None = 16,
        temperature: float = 0.8,
        top_p: float = 0.95,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        logprobs: int | None = None,
        echo: bool = False,
        stop: str | Sequence[str] | None = None,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0,
        repeat_last_n: int | None = None,
        top_k: int = 40,
        stream: bool = False,
        seed: int | None = None,
        tfs_z: float = 1.0,
        mirostat_mode: int = 0,
        mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1,
        model: str | None = None,
        stopping_criteria: Callable[[np.ndarray, np.ndarray], bool] | None = None,
        logits_processor: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        grammar: Any = None,
        logit_bias: dict[int | str, float] | None = None,
        n: int = 1,
        xtc_probability: float = 0.0,
        xtc_threshold: float = 0.1,
        dry_multiplier: float = 0.0,
        dry_base: float = 1.75,
        dry_allowed_length: int = 2,
        dry_penalty_last_n: int = 0,
        dry_sequence_breakers: Sequence[str] | None = None,
        top_n_sigma: float = -1.0,
        ignore_eos: bool = False,
        priority: int = 0,
        timeout: float | None = None,
        stream_options: dict[str, Any] | None = None,
        max_prompt_tokens: int | None = None,
        media: Sequence[MediaSpan] = (),
        lora: Mapping[str, float] | None = None,
    ) -> "CreateCompletionResponse | AsyncStream[CreateCompletionStreamResponse]":
        """Continues one prompt, or several (a list of prompts), as OpenAI's legacy completions do.

        Returns the response dict, or with `stream=True` an AsyncStream of chunks.
        `max_prompt_tokens` refuses longer prompts (ContextOverflowError), as a server's limit.
        `media` (with a token-id prompt) names the prompt positions that images or audio fill:
        placeholder ids there, evaluated by the projector when the prefill reaches them.
        `lora` names the LoRA adapters to decode with and their scales ({} for none; None: the
        Llama's defaults).
        """
        engine = self._engine()
        arguments.check_sampling(locals())  # the sampling values, by their parameter names
        n = arguments.whole("n", n, 1)
        if n > self._n_parallel:  # before a sampler chain is built for each choice
            raise ValueError(f"n={n} is more than n_parallel={self._n_parallel}")
        for name, value, low in (("max_tokens", max_tokens, None), ("logprobs", logprobs, 0),
                                 ("max_prompt_tokens", max_prompt_tokens, 0)):
            if value is not None:
                arguments.whole(name, value, low, None)
        arguments.whole("priority", priority, None, None)
        if timeout is not None and arguments.real("timeout", timeout) <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
        arguments.seed(seed)
        arguments.optional_str("suffix", suffix)
        arguments.optional_mapping("stream_options", stream_options)
        logits_processor = as_logits_processor(logits_processor)  # a callable, or a list of them
        stopping_criteria = as_stopping_criteria(stopping_criteria)
        stops = arguments.stop_strings(stop)
        if media:
            if not (isinstance(prompt, list) and all(isinstance(t, (int, np.integer)) for t in prompt)):
                raise ValueError("a prompt with media must be one list of token ids")
            if echo or suffix is not None:
                raise ValueError("echo and suffix are not available for prompts with media")
            self._prompt_tokens(_without_media(prompt, media), None)  # validates the text tokens
            prompts = [[int(t) for t in prompt]]
        else:
            prompts = self._prompt_token_lists(prompt, suffix)
        for tokens in prompts:
            if len(tokens) >= self._n_ctx:
                raise ContextOverflowError(
                    f"Requested tokens ({len(tokens)}) exceed context window of {self._n_ctx}")
            if max_prompt_tokens is not None and len(tokens) > max_prompt_tokens:
                raise ContextOverflowError(
                    f"the prompt has {len(tokens)} tokens; at most {max_prompt_tokens} are allowed")
        params = self._sampler_params(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            penalty_last_n=self._last_n(self.last_n_tokens_size if repeat_last_n is None else repeat_last_n),
            mirostat_mode=mirostat_mode, mirostat_tau=mirostat_tau, mirostat_eta=mirostat_eta,
            xtc_probability=xtc_probability, xtc_threshold=xtc_threshold, top_n_sigma=top_n_sigma,
            dry_multiplier=dry_multiplier, dry_base=dry_base, dry_allowed_length=dry_allowed_length,
            dry_penalty_last_n=self._last_n(dry_penalty_last_n))
        if dry_sequence_breakers is not None:
            params.dry_sequence_breakers = arguments.string_list("dry_sequence_breakers", dry_sequence_breakers)
        if logit_bias is not None:
            params.logit_bias = arguments.logit_bias(logit_bias)
        if grammar is not None:
            params.grammar = checked_gbnf(str(grammar))  # GBNF text or a LlamaGrammar
        base_seed = self._seed if seed is None else seed
        adapters = self._lora_default if lora is None else self._lora_set(lora)
        requests = []
        for tokens in prompts:
            chains = []
            for i in range(n):
                params.seed = base_seed if base_seed == LLAMA_DEFAULT_SEED else (base_seed + i) & 0xFFFFFFFF
                chains.append(_native.SamplerChain(self._model, params))
            requests.append(Request(
                prompt=tokens, chains=chains,
                max_tokens=max_tokens if max_tokens is not None and max_tokens > 0 else None,
                stop=stops, logprobs=logprobs, prompt_logprobs=echo and logprobs is not None,
                ignore_eos=ignore_eos, priority=priority, timeout=timeout,
                logits_processor=logits_processor, stopping_criteria=stopping_criteria, media=tuple(media),
                lora=adapters))
        await self._bind_requests(requests)
        model_name = model if model is not None else self.model_path
        job = _CompletionJob(self, engine, requests, n, model_name, echo, logprobs, suffix, prompts,
                             [""] if media else self._prompt_texts(prompt, prompts))
        job.submit(stream)
        if stream:
            include_usage = bool(stream_options and stream_options.get("include_usage"))
            return AsyncStream(job.chunks(include_usage), on_abandon=job.cancel)
        return await job.result()

    # ------------------------------------------------------------------ embeddings

    def _embedding_inputs(self, input: Any, truncate: bool) -> tuple[list[list[int]], bool]:
        """Token lists for str / list[str] / list[int] / list[list[int]] input; and whether it was one item."""
        if isinstance(input, (str, bytes)):
            items, single = [input], True
        else:
            if isinstance(input, Mapping) or not isinstance(input, Iterable):
                raise TypeError(f"{_EMBEDDING_TYPES}, not {type(input).__name__}")
            items = list(input)
            if not items:
                raise ValueError("input must not be an empty list")
            single = all(_is_token(t) for t in items)
            if single:
                items = [items]
        return [self._embedding_tokens(item, truncate) for item in items], single

    def _embedding_tokens(self, item: Any, truncate: bool) -> list[int]:
        """One input (text or token ids) as the tokens to embed, truncated to the embedding context."""
        limit = min(self._engine().config.embed_max_tokens, self._model.n_ctx_train or 1 << 30)
        if isinstance(item, (str, bytes)):
            if not item:
                raise ValueError("input must not be an empty string")
            tokens = self.tokenize(item.encode("utf-8") if isinstance(item, str) else item, True, False)
        elif isinstance(item, (list, tuple, np.ndarray)) and all(_is_token(t) for t in item):
            tokens = [int(t) for t in item]
            if not tokens:
                raise ValueError("input must not hold an empty token list")
            self._in_vocabulary(tokens)
        else:
            raise TypeError(f"{_EMBEDDING_TYPES}; this one holds a {type(item).__name__}")
        if len(tokens) > limit:
            if not truncate:
                raise ValueError(f"input of {len(tokens)} tokens exceeds the embedding context of {limit}")
            tokens = tokens[:limit]
        return tokens

    async def _embedding_stream(self, inputs: Any, normalize: bool, truncate: bool,
                                window: int = 256) -> AsyncIterator[dict[str, Any]]:
        """{"index", "embedding"} items in completion order, keeping at most `window` inputs
        tokenized and in flight, so memory stays bounded for any number of inputs."""
        import itertools

        from allama.engine.embedding import EmbedRequest

        engine = self._engine()
        loop = LoopHandle.current()
        sink = OutputSink()
        source = iter([inputs] if isinstance(inputs, (str, bytes)) else inputs)
        live: list[EmbedRequest] = []
        in_flight = 0
        next_index = 0
        exhausted = False
        try:
            while True:
                while not exhausted and in_flight < window:
                    chunk = list(itertools.islice(source, min(64, window - in_flight)))
                    if not chunk:
                        exhausted = True
                        break
                    request = EmbedRequest([self._embedding_tokens(item, truncate) for item in chunk])
                    engine.submit_embedding(request, _Offset(sink, next_index), loop)
                    live.append(request)
                    next_index += len(chunk)
                    in_flight += len(chunk)
                if in_flight == 0:
                    if next_index == 0:
                        raise ValueError("input must not be an empty list")
                    return
                out = await sink.get()
                if out.error is not None:
                    raise out.error
                in_flight -= 1
                vector = _l2_normalise(out.embeddings) if normalize else out.embeddings
                yield {"index": out.index, "embedding": vector.tolist()}
                if len(live) > 64:
                    live = live[-64:]  # older chunks have long finished
        finally:
            for request in live:
                engine.cancel(request)  # type: ignore[arg-type]

    async def _embed_tokens(self, inputs: list[list[int]]) -> list[np.ndarray]:
        from allama.engine.embedding import EmbedRequest

        engine = self._engine()
        request = EmbedRequest(inputs)
        sink = OutputSink(eager=False)
        engine.submit_embedding(request, sink, LoopHandle.current())
        results: list[np.ndarray | None] = [None] * len(inputs)
        remaining = len(inputs)
        try:
            while remaining:
                out = await sink.get()
                if out.error is not None:
                    raise out.error
                results[out.index] = out.embeddings
                remaining -= 1
        finally:
            if remaining:
                engine.cancel(request)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]

    async def embed(self, input: Any, normalize: bool = False, truncate: bool = True,
                    return_count: bool = False, stream: bool = False) -> Any:
        """Embeddings as lists of floats (llama-cpp-python's embed): one vector per input, or one
        per token with pooling none; a single input gives its embedding alone. Inputs from
        concurrent calls are batched together on the model's decode thread.

        `stream=True` returns an AsyncStream of {"index", "embedding"} in completion order, for
        any number of inputs (any iterable) with bounded memory; leaving it early cancels the rest."""
        if stream:
            return AsyncStream(self._embedding_stream(input, normalize, truncate))
        inputs, single = self._embedding_inputs(input, truncate)
        vectors = await self._embed_tokens(inputs)
        if normalize:
            vectors = [_l2_normalise(v) for v in vectors]
        data = [v.tolist() for v in vectors]
        result: Any = data[0] if single else data
        count = sum(len(t) for t in inputs)
        return (result, count) if return_count else result

    async def create_embedding(self, input: Any, model: str | None = None, encoding_format: str = "float",
                               dimensions: int | None = None, normalize: bool = False,
                               truncate: bool = True, stream: bool = False
                               ) -> "CreateEmbeddingResponse | AsyncStream[dict[str, Any]]":
        """OpenAI's embeddings response: {"object": "list", "data": [...], "model", "usage"}.

        Vectors are returned as llama-cpp-python returns them (not normalised unless
        `normalize=True`); `dimensions` keeps the first d values and normalises them;
        `encoding_format="base64"` packs little-endian float32, as OpenAI does."""
        if encoding_format not in ("float", "base64"):
            raise ValueError("encoding_format must be 'float' or 'base64'")
        if stream:
            if dimensions is not None or encoding_format != "float":
                raise ValueError("a streamed embedding takes neither dimensions nor base64")
            return AsyncStream(self._embedding_stream(input, normalize, truncate))
        if dimensions is not None:
            arguments.whole("dimensions", dimensions, 1, None)
        inputs, _ = self._embedding_inputs(input, truncate)
        vectors = await self._embed_tokens(inputs)
        if dimensions is not None:
            size = vectors[0].shape[-1] if vectors else 0
            if not 1 <= dimensions <= size:
                raise ValueError(f"dimensions must be between 1 and {size}")
            vectors = [_l2_normalise(v[..., :dimensions]) for v in vectors]
        elif normalize:
            vectors = [_l2_normalise(v) for v in vectors]
        data = []
        for i, v in enumerate(vectors):
            if encoding_format == "base64":
                import base64

                embedding: Any = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
            else:
                embedding = v.tolist()
            data.append({"object": "embedding", "embedding": embedding, "index": i})
        count = sum(len(t) for t in inputs)
        return {"object": "list", "data": data, "model": model if model is not None else self.model_path,
                "usage": {"prompt_tokens": count, "total_tokens": count}}

    async def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None,
                     return_documents: bool = True, model: str | None = None) -> "RerankResponse":
        """Scores documents against a query with a reranker model (pooling rank), in the shape
        llama-server and Jina use: {"model", "results": [{"index", "relevance_score",
        "document"}], "usage"}, best first."""
        engine = self._engine()
        if engine.embedder.context().pooling_type != 4:
            raise ValueError("rerank needs a reranker model (pooling type rank); this one pools "
                             "for embeddings: load a reranker, or pass pooling_type=4 if it has a classifier head")
        if not documents:
            raise ValueError("documents must not be empty")
        if top_n is not None and top_n < 1:
            raise ValueError("top_n must be at least 1")
        pairs = [self._rerank_tokens(query, doc) for doc in documents]
        inputs, _ = self._embedding_inputs(pairs, truncate=True)
        scores = await self._embed_tokens(inputs)
        results = [{"index": i, "relevance_score": float(np.asarray(s).reshape(-1)[0])}
                   for i, s in enumerate(scores)]
        if return_documents:
            for result in results:
                result["document"] = {"text": documents[result["index"]]}
        results.sort(key=lambda r: r["relevance_score"], reverse=True)
        count = sum(len(t) for t in inputs)
        return {"model": model if model is not None else self.model_path, "object": "list",
                "results": results[:top_n] if top_n is not None else results,
                "usage": {"prompt_tokens": count, "total_tokens": count}}

    def _rerank_tokens(self, query: str, document: str) -> list[int]:
        """A (query, document) pair as rerankers read it: the model's `rerank` template when it
        has one, else BOS query EOS SEP document EOS as the vocabulary adds them."""
        template = self._model.chat_template("rerank")
        v = self._vocab
        if template is not None:
            text = template.replace("{query}", query).replace("{document}", document)
            return v.tokenize(text, False, True)
        eos = v.eos if v.eos >= 0 else v.sep
        tokens = [v.bos] if v.add_bos and v.bos >= 0 else []
        tokens += v.tokenize(query, False, False)
        if v.add_eos and eos >= 0:
            tokens.append(eos)
        if v.add_sep and v.sep >= 0:
            tokens.append(v.sep)
        tokens += v.tokenize(document, False, False)
        if v.add_eos and eos >= 0:
            tokens.append(eos)
        return tokens

    # ------------------------------------------------------------------ chat

    def chat_formatter(self) -> Any:
        """The formatter chat requests use (when no chat_handler is set): chat_format, then a
        named format recognised from the GGUF template, then that template, then llama-2."""
        cached = getattr(self, "_chat_formatter_cache", None)
        if cached is None or cached[0] != self.chat_format:
            # kept: compiling a real template takes milliseconds
            cached = self._chat_formatter_cache = (self.chat_format, self._build_chat_formatter())
        return cached[1]

    def _build_chat_formatter(self) -> Any:
        from allama.chat import get_chat_format, guess_chat_format

        if self.chat_format is not None:
            return get_chat_format(self.chat_format)
        template = self._model.chat_template()
        known = guess_chat_format(template)
        if known is not None:
            return get_chat_format(known)
        if template:
            return self.template_formatter(template)
        return get_chat_format("llama-2")

    def template_formatter(self, template: str, add_generation_prompt: bool = True, writes_special: bool = True) -> Any:
        """A Jinja2ChatFormatter for `template` with this model's BOS/EOS texts and end tokens
        (`writes_special`: the template writes BOS itself, as model templates do)."""
        from allama.chat import Jinja2ChatFormatter

        v = self._vocab
        eos = v.token_to_piece(v.eos, special=True).decode("utf-8", "ignore") if v.eos >= 0 else ""
        bos = v.token_to_piece(v.bos, special=True).decode("utf-8", "ignore") if v.bos >= 0 else ""
        stop_ids = [t for t in (v.eos, v.eot) if t >= 0]
        return Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos, add_generation_prompt=add_generation_prompt,
                                   stop_token_ids=stop_ids, writes_special=writes_special)

    def _starts_with_bos(self, text: str) -> bool:
        v = self._vocab
        if v.bos < 0:
            return False
        bos = v.token_to_piece(v.bos, special=True).decode("utf-8", "ignore")
        return bool(bos) and text.startswith(bos)

    def chat_template(self, name: str | None = None) -> str | None:
        """The GGUF's chat template (`tokenizer.chat_template`, or a named one such as
        `tool_use`), or None."""
        return self._model.chat_template(name) if name else self._model.chat_template()

    async def create_chat_completion(
        self,
        messages: Sequence[dict[str, Any]],
        functions: Any = None,
        function_call: Any = None,
        tools: Any = None,
        tool_choice: Any = None,
        temperature: float = 0.2,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        typical_p: float = 1.0,
        stream: bool = False,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        max_tokens: int | None = None,
        max_completion_tokens: int | None = None,
        logprobs: bool | None = None,
        top_logprobs: int | None = None,
        response_format: dict[str, Any] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        reasoning_effort: str | None = None,
        **sampling: Any,
    ) -> "CreateChatCompletionResponse | AsyncStream[CreateChatCompletionStreamResponse]":
        """An OpenAI chat completion: the messages rendered with the chat format, then completed.

        Takes create_completion's sampling options too (penalties, mirostat, logit_bias,
        grammar, n, ...). Returns the response dict, or with `stream=True` an AsyncStream of
        `chat.completion.chunk` dicts.
        """
        from allama.chat.completion import chat_chunks, chat_response, tool_chat_chunks, tool_chat_response
        from allama.chat.reasoning import starts_in_thought
        from allama.chat.request import (check_messages, check_tools, legacy_functions_as_tools, normalise_messages,
                                         response_format_grammar)
        from allama.chat.tool_calls import tool_call_grammar

        check_messages(messages)
        user_stops = arguments.stop_strings(stop)
        arguments.optional_mapping("chat_template_kwargs", chat_template_kwargs)
        if max_completion_tokens is not None:
            arguments.whole("max_tokens (max_completion_tokens)", max_completion_tokens, None, None)
        from allama.chat.multimodal import MTMDChatHandler

        # set by a ChatFormatterHandler (a chat format used as a handler): the usual path with that format
        chosen_formatter = sampling.pop("_chat_formatter", None)
        handler = self.chat_handler if chosen_formatter is None else None
        media_handler = handler if isinstance(handler, MTMDChatHandler) else None
        if media_handler is not None:
            handler = None  # the usual chat path, with the media read and evaluated
        if handler is None and self.chat_format is not None and chosen_formatter is None:
            from allama.chat.registry import chat_format_handler

            handler = chat_format_handler(self.chat_format)
        if handler is not None:
            if isinstance(handler, str):
                from allama.chat import get_chat_completion_handler

                handler = get_chat_completion_handler(handler)
            from allama.chat.handler_call import call_chat_handler

            return await call_chat_handler(
                handler, llama=self, messages=messages, functions=functions, function_call=function_call, tools=tools,
                tool_choice=tool_choice, reasoning_effort=reasoning_effort, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
                typical_p=typical_p, stream=stream, stop=stop, seed=seed, max_tokens=max_tokens,
                max_completion_tokens=max_completion_tokens, logprobs=logprobs, top_logprobs=top_logprobs,
                response_format=response_format, chat_template_kwargs=chat_template_kwargs, **sampling)
        media: list[bytes] = []
        formatter = None
        if media_handler is not None:
            from allama.chat.media_parts import extract_media, mark_media

            formatter = media_handler.formatter(self)
            if formatter is None:
                messages, media = await extract_media(messages, _native.default_media_marker(), media_handler.source)
            else:  # the handler's template places the media itself
                messages, media = await mark_media(messages, _native.default_media_marker(), media_handler.source)
                messages = media_handler.with_default_system(normalise_messages(messages, keep_parts=True))
        if formatter is None:
            messages = normalise_messages(messages)
            formatter = chosen_formatter or self.chat_formatter()
        tools, tool_choice = legacy_functions_as_tools(tools, tool_choice, functions, function_call)
        check_tools(tools, tool_choice)
        parallel = bool(sampling.pop("parallel_tool_calls", True))
        offered = tools if tools and tool_choice != "none" else None
        template_vars = dict(chat_template_kwargs or {})
        if reasoning_effort is not None:
            template_vars.setdefault("reasoning_effort", reasoning_effort)
        last = messages[-1]
        if last["role"] == "assistant" and not last.get("tool_calls"):
            # Continue the final assistant message (prefill) instead of opening a new reply:
            # render it with a marker, cut the prompt there and put the real text back.
            marked = messages[:-1] + [{**last, "content": _PREFILL_MARK}]
            template_vars["add_generation_prompt"] = False
            rendered = formatter(messages=marked, tools=offered, tool_choice=tool_choice, **template_vars)
            cut = rendered.prompt.find(_PREFILL_MARK)
            if cut < 0:
                raise ValueError("this chat format cannot continue a final assistant message")
            rendered.prompt = rendered.prompt[:cut] + (last.get("content") or "")
        else:
            rendered = formatter(messages=messages, tools=offered, tool_choice=tool_choice, **template_vars)
        in_thought = starts_in_thought(rendered.prompt)
        # BOS (and whatever else the vocabulary adds) unless the rendered text starts with it:
        # a template that writes special tokens may still leave BOS to the tokenizer, as
        # llama-server and llama-mtmd-cli assume
        add_special = not rendered.added_special or not self._starts_with_bos(rendered.prompt)
        spans: Sequence[MediaSpan] = ()
        if media:
            from allama.engine.media_prompt import media_prompt

            context = await media_handler.media_context(self)  # type: ignore[union-attr]
            bitmaps = await media_handler.bitmaps(self, media)  # type: ignore[union-attr]
            # preprocessing (resizing images, audio spectrograms) takes a while: off the loop
            chunks = await anyio.to_thread.run_sync(context.tokenize, rendered.prompt, bitmaps, add_special, True)
            prompt, spans = media_prompt(chunks, context)
        else:
            prompt = self.tokenize(rendered.prompt.encode("utf-8"), add_special, True)
        stops = [rendered.stop] if isinstance(rendered.stop, str) else list(rendered.stop or [])
        stops += user_stops
        limit = max_completion_tokens if max_completion_tokens is not None else max_tokens
        if response_format is not None:
            sampling["grammar"] = response_format_grammar(response_format) or sampling.get("grammar")
        forced = offered is not None and (tool_choice == "required" or isinstance(tool_choice, dict))
        if forced:
            name = tool_choice["function"]["name"] if isinstance(tool_choice, dict) else None
            template = getattr(formatter, "template", "") or ""
            sampling["grammar"] = tool_call_grammar(offered, name, "<tool_call>" in template, parallel)
        completion = await self.create_completion(
            prompt, max_tokens=limit, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
            typical_p=typical_p, stream=stream, stop=stops, seed=seed,
            logprobs=(top_logprobs or 0) if logprobs else None,
            stopping_criteria=sampling.pop("stopping_criteria", None) or rendered.stopping_criteria, media=spans,
            **sampling)
        if offered is not None:
            # Tool calls are read out of the reply; their markup never reaches content.
            if stream:
                return AsyncStream(tool_chat_chunks(completion), on_abandon=completion.abandon)
            return tool_chat_response(completion)
        if stream:
            return AsyncStream(chat_chunks(completion, in_thought), on_abandon=completion.abandon)
        return chat_response(completion, in_thought)

    async def create_chat_completion_openai_v1(self, *args: Any, **kwargs: Any) -> Any:
        """create_chat_completion returning the `openai` package's types (ChatCompletion, or an
        async iterator of ChatCompletionChunk); needs `pip install openai`."""
        try:
            from openai.types.chat import ChatCompletion, ChatCompletionChunk
        except ImportError as exc:
            raise ImportError("create_chat_completion_openai_v1 needs the openai package") from exc
        result = await self.create_chat_completion(*args, **kwargs)
        if isinstance(result, AsyncStream):
            return AsyncStream(_validated(result, ChatCompletionChunk), on_abandon=result.abandon)
        return ChatCompletion.model_validate(result)

    def _prompt_texts(self, prompt: Any, token_lists: list[list[int]]) -> list[str]:
        """Each prompt as text, for echo: the caller's string itself, else the detokenized ids."""
        items = [prompt] if isinstance(prompt, (str, bytes)) or (
            prompt and all(isinstance(t, (int, np.integer)) for t in prompt)) else list(prompt)
        texts = []
        for item, tokens in zip(items, token_lists):
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, bytes):
                texts.append(item.decode("utf-8", errors="ignore"))
            else:
                text = (self._vocab.detokenize(tokens, True, False) if self._custom_tokenizer is None
                        else self._custom_tokenizer.detokenize(tokens))
                texts.append(text.decode("utf-8", errors="ignore"))
        return texts

    def _prompt_token_lists(self, prompt: Any, suffix: str | None) -> list[list[int]]:
        if isinstance(prompt, (str, bytes)):
            return [self._prompt_tokens(prompt, suffix)]
        if not isinstance(prompt, (list, tuple, np.ndarray)):
            raise TypeError(f"{_PROMPT_TYPES}, not {type(prompt).__name__}")
        items = list(prompt)
        if not items:
            raise ValueError("the prompt is empty")
        if all(_is_token(t) for t in items):
            return [self._prompt_tokens([int(t) for t in items], suffix)]
        lists = []
        for p in items:
            if isinstance(p, (str, bytes)):
                lists.append(self._prompt_tokens(p, suffix))
            elif isinstance(p, (list, tuple, np.ndarray)) and all(_is_token(t) for t in p):
                lists.append(self._prompt_tokens([int(t) for t in p], suffix))
            else:
                raise TypeError(f"{_PROMPT_TYPES}; this one holds a {type(p).__name__}")
        return lists

    def _prompt_tokens(self, prompt: str | bytes | list[int], suffix: str | None) -> list[int]:
        if isinstance(prompt, list):
            tokens = self._in_vocabulary(prompt)
        else:
            text = prompt.encode("utf-8") if isinstance(prompt, str) else prompt
            tokens = self.tokenize(text, True, suffix is None) if text else (
                [self._vocab.bos] if self._vocab.bos >= 0 else [])
        if suffix is not None:
            tokens = self._fim_tokens(tokens, suffix)
        if not tokens:
            raise ValueError("the prompt is empty")
        return tokens

    def _fim_tokens(self, prefix: list[int], suffix: str) -> list[int]:
        v = self._vocab
        if min(v.fim_pre, v.fim_suf, v.fim_mid) < 0:
            raise ValueError("suffix (fill-in-the-middle) needs a model with FIM tokens; this vocabulary has none")
        if prefix and prefix[0] == v.bos:
            prefix = prefix[1:]
        suffix_tokens = self.tokenize(suffix.encode("utf-8"), False, False)
        head = [v.bos] if v.add_bos and v.bos >= 0 else []
        if self.spm_infill:
            return head + [v.fim_suf] + suffix_tokens + [v.fim_pre] + prefix + [v.fim_mid]
        return head + [v.fim_pre] + prefix + [v.fim_suf] + suffix_tokens + [v.fim_mid]

    def _last_n(self, value: int) -> int:
        """A penalty window: -1 is the context size (llama.cpp's meaning)."""
        return self._n_ctx if value == -1 else value

    @staticmethod
    def _sampler_params(**fields: Any) -> _native.SamplerParams:
        params = _native.SamplerParams()
        for key, value in fields.items():
            setattr(params, key, value)
        return params


def _check_constructor_arguments(args: dict[str, Any]) -> None:
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
    arguments.optional_mapping("kv_overrides", args["kv_overrides"])
    arguments.optional_mapping("lora_adapters", args["lora_adapters"])


_PROMPT_TYPES = "prompt must be a string, bytes, a list of token ids, or a list of those"
_EMBEDDING_TYPES = "input must be a string, a list of token ids, or a list of those"


def _is_token(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _without_media(prompt: list[int], media: Sequence[MediaSpan]) -> list[int]:
    """The prompt's text tokens (to validate), media placeholders left out."""
    inside = {p for span in media for p in range(span.start, span.end)}
    return [int(t) for i, t in enumerate(prompt) if i not in inside]


def _l2_normalise(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm == 0, 1, norm)


async def _validated(stream: AsyncStream[dict[str, Any]], model: Any) -> AsyncIterator[Any]:
    async with stream:
        async for chunk in stream:
            yield model.model_validate(chunk)


_PREFILL_MARK = "\x00allama-prefill\x00"


class _CompletionJob:
    """Runs the requests of one create_completion call and shapes what they return."""

    def __init__(self, llm: Llama, engine: Scheduler, requests: list[Request], n: int, model: str,
                 echo: bool, logprobs: int | None, suffix: str | None, prompts: list[list[int]],
                 prompt_texts: list[str]) -> None:
        self.llm = llm
        self.engine = engine
        self.requests = requests
        self.n = n
        self.model = model
        self.echo = echo
        self.logprobs = logprobs
        self.suffix = suffix
        self.prompts = prompts
        self.prompt_texts = prompt_texts
        self.id = completion_id()
        self.created = now()

    def submit(self, stream: bool) -> None:
        """Hands the requests to the engine now (so queue errors raise at the call)."""
        self.loop = LoopHandle.current()
        self.sink = OutputSink(eager=stream)
        self.submitted: list[Request] = []
        self.remaining = sum(r.n for r in self.requests)
        try:
            for number, request in enumerate(self.requests):
                self.engine.submit(request, _Tagged(self.sink, number), self.loop)
                self.submitted.append(request)
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Frees whatever is still running (safe to call more than once, from any thread)."""
        if self.remaining:
            self.remaining = 0
            for request in self.submitted:
                self.engine.cancel(request)

    async def _outputs(self) -> AsyncIterator[tuple[int, Output]]:
        """Yields (request number, output) until every choice has finished."""
        try:
            while self.remaining:
                number, out = await self.sink.get()
                if out.error is not None:
                    raise out.error
                if out.finish_reason is not None:
                    self.remaining -= 1
                if out.state is not None:
                    await self.llm._keep_state(out.state)
                yield number, out
        finally:
            self.cancel()

    def _prompt_text(self, number: int) -> str:
        return self.prompt_texts[number]

    def _choice_index(self, number: int, index: int) -> int:
        return number * self.n + index

    async def result(self) -> dict[str, Any]:
        texts: dict[tuple[int, int], ChoiceText] = {}
        usages: dict[int, dict[str, int]] = {}
        async with aclosing(self._outputs()) as outputs:
            async for number, out in outputs:
                key = (number, out.index)
                texts.setdefault(key, ChoiceText(out.index)).add(out)
                if out.usage is not None:
                    usages[number] = out.usage
        choices = []
        for (number, index), acc in sorted(texts.items()):
            prompt_text = self._prompt_text(number) if self.echo else ""
            text = prompt_text + acc.text
            if self.suffix is not None and self.llm._vocab.fim_suf < 0:
                text += self.suffix
            choices.append({
                "text": text,
                "index": self._choice_index(number, index),
                "logprobs": self._logprobs(number, acc),
                "finish_reason": acc.finish_reason,
            })
        prompt_tokens = sum(len(p) for p in self.prompts)
        completion_tokens = sum(len(a.tokens) for a in texts.values())
        cached = sum(u.get("cached_tokens", 0) for u in usages.values())
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": usage(prompt_tokens, completion_tokens, cached),
        }

    def _logprobs(self, number: int, acc: ChoiceText) -> dict[str, Any] | None:
        if self.logprobs is None:
            return None
        vocab = self.llm._vocab
        entries: list[tuple[int, Any]] = []
        text_offset = 0
        if self.echo:
            prompt = self.prompts[number]
            start = 1 if prompt and prompt[0] == vocab.bos else 0
            scored = acc.prompt_logprobs or []
            for pos in range(start, len(prompt)):
                entries.append((prompt[pos], scored[pos] if pos < len(scored) and pos > start else None))
        else:
            text_offset = len(self._prompt_text(number))
        for token, lp in zip(acc.tokens, acc.logprobs):
            entries.append((token, lp))
        return logprobs_block(self.llm._token_pieces(), entries, text_offset, self.logprobs)

    async def chunks(self, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
        vocab = self.llm._token_pieces()
        offsets: dict[tuple[int, int], int] = {}
        completion_tokens = 0
        cached = 0
        if self.echo:
            for number in range(len(self.requests)):
                for index in range(self.n):
                    text = self._prompt_text(number)
                    offsets[(number, index)] = len(text)
                    yield chunk(self.id, self.created, self.model, self._choice_index(number, index), text, None)
        async with aclosing(self._outputs()) as outputs:
            async for number, out in outputs:
                completion_tokens += len(out.tokens)
                if out.usage is not None:
                    cached += out.usage.get("cached_tokens", 0)
                logprobs = None
                if self.logprobs is not None and out.logprobs:
                    key = (number, out.index)
                    start = offsets.get(key, 0)
                    logprobs = logprobs_block(vocab, list(zip(out.tokens, out.logprobs)), start, self.logprobs)
                    offsets[key] = start + len(out.text)
                if out.text or out.finish_reason is not None or logprobs is not None:
                    yield chunk(self.id, self.created, self.model, self._choice_index(number, out.index),
                                out.text, out.finish_reason, logprobs)
        if include_usage:
            prompt_tokens = sum(len(p) for p in self.prompts)
            yield {
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": [], "usage": usage(prompt_tokens, completion_tokens, cached),
            }


class _Offset:
    """Routes one chunk's embedding outputs into a shared sink, shifting their input index."""

    __slots__ = ("sink", "base")

    def __init__(self, sink: OutputSink, base: int) -> None:
        self.sink = sink
        self.base = base

    def push(self, outputs: list[Output], final: bool = False) -> None:
        for out in outputs:
            out.index += self.base
        self.sink.push(outputs, final)


class _Tagged:
    """Routes one request's outputs into a sink shared by several requests, tagged by number."""

    __slots__ = ("sink", "number")

    def __init__(self, sink: OutputSink, number: int) -> None:
        self.sink = sink
        self.number = number

    def push(self, outputs: list[Output], final: bool = False) -> None:
        self.sink.push([(self.number, out) for out in outputs], final)
