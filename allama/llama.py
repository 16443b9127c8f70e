"""Llama: the asyncio-native high-level API.

Every model call is awaitable and every stream is an async iterator; concurrent
calls share the model through the engine's continuous batching. Parameter names
and defaults follow llama-cpp-python.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from allama import _native
from allama import llama_embeddings as embeddings
from allama.cache import BaseLlamaCache
from allama.engine import EngineStats, Scheduler
from allama.engine.request import MediaSpan
from allama.errors import EngineClosedError
from allama.hub import download_model
from allama.llama_completions import LLAMA_DEFAULT_SEED, create_completion
from allama.llama_params import LlamaParams
from allama.logprobs import log_softmax
from allama.lora_adapters import LoraAdapters
from allama.session import LlamaSession
from allama.state import LlamaState
from allama.stream import AsyncStream
from allama.token_ids import checked_token_ids, first_outside
from allama.token_prefix import common_prefix
from allama.tokenizer import BaseLlamaTokenizer, LlamaTokenizer, TokenPieces


Prompt = str | bytes | Sequence[int]

# The chat methods import allama.chat (Jinja2) on first call: `import allama` stays fast.

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
    `n_parallel + n_keep` windows, `n_keep` then defaulting to `n_parallel // 4`; much faster
    decoding of many streams at once). `overlap_outputs` turns a step's tokens into text on a
    thread of its own while the next step decodes; by default it is on where that thread has
    a CPU the decode leaves free (`n_threads` below the CPU count, or layers on a GPU).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        # model
        n_gpu_layers: int = 0, split_mode: int = 1, main_gpu: int = 0, tensor_split: Sequence[float] | None = None,
        rpc_servers: str | Sequence[str] | None = None, vocab_only: bool = False, use_mmap: bool = True,
        use_mlock: bool = False, kv_overrides: dict[str, bool | int | float | str] | None = None,
        # context
        seed: int = LLAMA_DEFAULT_SEED, n_ctx: int = 512, n_batch: int = 512, n_ubatch: int = 512,
        n_threads: int | None = None, n_threads_batch: int | None = None, rope_scaling_type: int | None = -1,
        pooling_type: int = -1, attention_type: int = -1, rope_freq_base: float = 0.0, rope_freq_scale: float = 0.0,
        yarn_ext_factor: float = -1.0, yarn_attn_factor: float = 1.0, yarn_beta_fast: float = 32.0,
        yarn_beta_slow: float = 1.0, yarn_orig_ctx: int = 0, logits_all: bool = False, embedding: bool = False,
        offload_kqv: bool = True, flash_attn: bool = False, op_offload: bool | None = None,
        swa_full: bool | None = None, no_perf: bool = False, last_n_tokens_size: int = 64, type_k: int | None = None,
        type_v: int | None = None,
        # adapters
        lora_base: str | None = None, lora_scale: float = 1.0, lora_path: str | None = None,
        lora_adapters: Mapping[str, str | os.PathLike[str] | tuple[str | os.PathLike[str], float]] | None = None,
        # chat and misc (accepted for llama-cpp-python compatibility)
        numa: bool | int = False, chat_format: str | None = None, chat_handler: Any = None, draft_model: Any = None,
        tokenizer: BaseLlamaTokenizer | None = None, spm_infill: bool = False, verbose: bool = False,
        # allama
        n_parallel: int = 4, max_queue: int = 1024, kv_size: int | None = None, kv_unified: bool = True,
        n_keep: int | None = None, progress_callback: Callable[[float], bool | None] | None = None,
        overlap_outputs: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self._params = LlamaParams({k: v for k, v in locals().items() if k not in ("self", "kwargs")} | kwargs)
        if verbose:
            _native.set_log_level(logging.INFO)
        self.model_path = os.fspath(model_path)
        self.verbose = verbose
        self.chat_format = chat_format
        self.chat_handler = chat_handler
        self.draft_model = draft_model
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

        self._model_params = self._params.model()
        self._model = _native.Model.load(self.model_path, self._model_params, progress_callback)
        self._context_params: _native.ContextParams | None = None  # vocab_only: no context
        self._vocab = _native.Vocab(self._model)
        self.tokenizer_: BaseLlamaTokenizer = tokenizer if tokenizer is not None else LlamaTokenizer(self)
        self.metadata: dict[str, str] = self._model.metadata
        self._n_ctx = n_ctx if n_ctx > 0 else self._model.n_ctx_train
        self._n_parallel = n_parallel
        self._scheduler: Scheduler | None = None
        self._lora = LoraAdapters(self._model)  # vocab_only: none
        if vocab_only:
            return

        self._context_params = self._params.context(self._n_ctx)  # the engine sets n_seq_max, kv_unified
        self._scheduler = Scheduler(self._model, self._context_params, self._params.engine(self._n_ctx),
                                    tokenizer=tokenizer, draft_model=draft_model)
        # Dropped without close(): the engine's thread stops and the memory is freed.
        weakref.finalize(self, self._scheduler.close)
        self._lora = LoraAdapters(self._model, lora_adapters, lora_path, lora_scale)

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
        if scheduler is not None:
            scheduler.set_draft_model_soon(value)

    @property
    def params(self) -> LlamaParams:
        """The constructor's arguments (defaults filled in) and the native parameters they make."""
        return self._params

    @property
    def model_params(self) -> _native.ModelParams:
        """The parameters the model was loaded with."""
        return self._model_params

    @property
    def context_params(self) -> _native.ContextParams | None:
        """The parameters of the engine's context as it was made (n_ctx: the KV cells all sequences
        share; n_seq_max: their number); None for a vocab_only model."""
        return self._context_params

    @property
    def seed(self) -> int:
        """The seed of requests that pass none (the `seed` argument; `set_seed` changes it)."""
        return self._seed

    def set_seed(self, seed: int) -> None:
        """The seed of requests that do not pass their own."""
        self._seed = seed

    @property
    def model(self) -> _native.Model:
        """The loaded model: the handle allama.llama_cpp's `llama_model_*` functions take."""
        return self._model

    @property
    def lora_adapters(self) -> dict[str, float]:
        """The loaded LoRA adapters (name -> the scale requests get by default; 0: off)."""
        return self._lora.scales()

    @classmethod
    async def load(cls, model_path: str | os.PathLike[str], **params: Any) -> "Llama":
        """Loads the model in a worker thread, keeping the event loop free."""
        return await anyio.to_thread.run_sync(partial(cls, model_path, **params))

    @classmethod
    async def from_pretrained(
        cls, repo_id: str, filename: str | None, additional_files: Sequence[str] | None = None,
        local_dir: str | os.PathLike[str] | None = None, local_dir_use_symlinks: bool | str = "auto",
        cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any,
    ) -> "Llama":
        """Downloads the GGUF file of a Hugging Face Hub repo that matches the glob `filename`
        (every part of a split model) and `additional_files`, off the event loop, then loads it
        as `Llama.load(path, **kwargs)` does. Needs huggingface_hub (`pip install 'allama[hf]'`)."""
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
        bad = first_outside(tokens, self._vocab.n_tokens)
        if bad is not None:
            raise ValueError(f"the tokenizer gave token id {bad}, outside this model's vocabulary "
                             f"[0, {self._vocab.n_tokens}): it is not the model's tokenizer")
        return tokens

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        tokens = checked_token_ids(tokens, self._vocab.n_tokens, "tokens")
        if prev_tokens is not None:
            prev_tokens = checked_token_ids(prev_tokens, self._vocab.n_tokens, "prev_tokens")
        return self.tokenizer_.detokenize(tokens, prev_tokens=prev_tokens, special=special)

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
        return log_softmax(logits, axis)

    @staticmethod
    def longest_token_prefix(a: Sequence[int], b: Sequence[int]) -> int:
        """How many leading tokens a and b share."""
        return common_prefix(a, b)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as its constructor arguments: unpickling loads the model again."""
        return self._params.as_dict()

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

    @property
    def eval_tokens(self) -> deque[int]:
        """The last finished completion's prompt and output tokens, which save_state() saves
        (llama-cpp-python's eval_tokens after `llm(prompt)`); empty before any, kept after close()."""
        tokens = self._scheduler.last_completion_tokens if self._scheduler is not None else []
        return deque(tokens, maxlen=self._n_ctx)

    async def save_state(self) -> LlamaState:
        """What the last call evaluated: the tokens of the most recently finished completion
        (prompt and output) with their KV, as llama-cpp-python's save_state after `llm(prompt)`;
        after load_state() and before any later completion, the loaded state; with neither,
        an empty state. AllamaError if that completion's KV was dropped for room since (a finished
        sequence is kept until its id or cells are needed, docs/engine.md), where a session
        (`llm.session()`) keeps it for sure."""
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
        suffix: str | None = None, max_tokens: int | None = 16, temperature: float = 0.8, top_p: float = 0.95,
        min_p: float = 0.05, typical_p: float = 1.0, logprobs: int | None = None, echo: bool = False,
        stop: str | Sequence[str] | None = None, frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
        repeat_penalty: float = 1.0, repeat_last_n: int | None = None, top_k: int = 40, stream: bool = False,
        seed: int | None = None, tfs_z: float = 1.0, mirostat_mode: int = 0, mirostat_tau: float = 5.0,
        mirostat_eta: float = 0.1, model: str | None = None,
        stopping_criteria: Callable[[np.ndarray, np.ndarray], bool] | None = None,
        logits_processor: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None, grammar: Any = None,
        logit_bias: dict[int | str, float] | None = None, n: int = 1, xtc_probability: float = 0.0,
        xtc_threshold: float = 0.1, dry_multiplier: float = 0.0, dry_base: float = 1.75, dry_allowed_length: int = 2,
        dry_penalty_last_n: int = 0, dry_sequence_breakers: Sequence[str] | None = None, top_n_sigma: float = -1.0,
        ignore_eos: bool = False, priority: int = 0, timeout: float | None = None,
        stream_options: dict[str, Any] | None = None, max_prompt_tokens: int | None = None,
        media: Sequence[MediaSpan] = (), lora: Mapping[str, float] | None = None,
    ) -> "CreateCompletionResponse | AsyncStream[CreateCompletionStreamResponse]":
        """Continues one prompt, or several (a list of prompts), as OpenAI's legacy completions do.

        Returns the response dict, or with `stream=True` an AsyncStream of chunks.
        `max_prompt_tokens` refuses longer prompts (ContextOverflowError), as a server's limit.
        `media` (with a token-id prompt) names the prompt positions that images or audio fill:
        placeholder ids there, evaluated by the projector when the prefill reaches them.
        `lora` names the LoRA adapters to decode with and their scales ({} for none; None: the
        Llama's defaults).
        """
        return await create_completion(self, _arguments(locals()))

    # ------------------------------------------------------------------ embeddings

    async def embed(self, input: Any, normalize: bool = False, truncate: bool = True,
                    return_count: bool = False, stream: bool = False) -> Any:
        """Embeddings as lists of floats (llama-cpp-python's embed): one vector per input, or one
        per token with pooling none; a single input gives its embedding alone. Inputs from
        concurrent calls are batched together on the model's decode thread.

        `stream=True` returns an AsyncStream of {"index", "embedding"} in completion order, for
        any number of inputs (any iterable) with bounded memory; leaving it early cancels the rest."""
        return await embeddings.embed(self, input, normalize, truncate, return_count, stream)

    async def create_embedding(self, input: Any, model: str | None = None, encoding_format: str = "float",
                               dimensions: int | None = None, normalize: bool = False,
                               truncate: bool = True, stream: bool = False
                               ) -> "CreateEmbeddingResponse | AsyncStream[dict[str, Any]]":
        """OpenAI's embeddings response: {"object": "list", "data": [...], "model", "usage"}.

        Vectors are returned as llama-cpp-python returns them (not normalised unless
        `normalize=True`); `dimensions` keeps the first d values and normalises them;
        `encoding_format="base64"` packs little-endian float32, as OpenAI does."""
        return await embeddings.create_embedding(self, input, model, encoding_format, dimensions, normalize,
                                                 truncate, stream)

    async def rerank(self, query: str, documents: Sequence[str], top_n: int | None = None,
                     return_documents: bool = True, model: str | None = None) -> "RerankResponse":
        """Scores documents against a query with a reranker model (pooling rank), in the shape
        llama-server and Jina use: {"model", "results": [{"index", "relevance_score",
        "document"}], "usage"}, best first."""
        return await embeddings.rerank(self, query, documents, top_n, return_documents, model)

    # ------------------------------------------------------------------ chat

    def chat_formatter(self) -> Any:
        """The formatter chat requests use (when no chat_handler is set): chat_format, then a
        named format recognised from the GGUF template, then that template, then llama-2."""
        cached = getattr(self, "_chat_formatter_cache", None)
        if cached is None or cached[0] != self.chat_format:
            from allama.chat.model_formatter import model_chat_formatter

            # kept: compiling a real template takes milliseconds
            formatter = model_chat_formatter(self.chat_format, self._model, self._vocab)
            cached = self._chat_formatter_cache = (self.chat_format, formatter)
        return cached[1]

    def template_formatter(self, template: str, add_generation_prompt: bool = True,
                           writes_special: bool = True) -> Any:
        """A Jinja2ChatFormatter for `template` with this model's BOS/EOS texts and end tokens
        (`writes_special`: the template writes BOS itself, as model templates do)."""
        from allama.chat.model_formatter import template_formatter

        return template_formatter(self._vocab, template, add_generation_prompt, writes_special)

    def chat_template(self, name: str | None = None) -> str | None:
        """The GGUF's chat template (`tokenizer.chat_template`, or a named one such as
        `tool_use`), or None."""
        return self._model.chat_template(name) if name else self._model.chat_template()

    async def create_chat_completion(
        self,
        messages: Sequence[dict[str, Any]],
        functions: Any = None, function_call: Any = None, tools: Any = None, tool_choice: Any = None,
        temperature: float = 0.2, top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05, typical_p: float = 1.0,
        stream: bool = False, stop: str | Sequence[str] | None = None, seed: int | None = None,
        max_tokens: int | None = None, max_completion_tokens: int | None = None, logprobs: bool | None = None,
        top_logprobs: int | None = None, response_format: dict[str, Any] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None, reasoning_effort: str | None = None,
        **sampling: Any,
    ) -> "CreateChatCompletionResponse | AsyncStream[CreateChatCompletionStreamResponse]":
        """An OpenAI chat completion: the messages rendered with the chat format, then completed.

        Takes create_completion's sampling options too (penalties, mirostat, logit_bias,
        grammar, n, ...). Returns the response dict, or with `stream=True` an AsyncStream of
        `chat.completion.chunk` dicts.
        """
        arguments = _arguments(locals(), "sampling")
        from allama.chat.handler_choice import complete_chat

        return await complete_chat(self, arguments)

    async def create_chat_completion_openai_v1(self, *args: Any, **kwargs: Any) -> Any:
        """create_chat_completion returning the `openai` package's types (ChatCompletion, or an
        async iterator of ChatCompletionChunk); needs `pip install openai`."""
        from allama.chat.openai_types import as_openai_types, openai_chat_types

        types = openai_chat_types()
        return as_openai_types(await self.create_chat_completion(*args, **kwargs), types)


def _arguments(local_names: dict[str, Any], extra: str | None = None) -> dict[str, Any]:
    """A method's arguments by parameter name, from the locals() it takes first thing (`self`
    left out, the keyword arguments collected in `extra` merged in)."""
    args = dict(local_names)
    del args["self"]
    if extra is not None:
        args.update(args.pop(extra))
    return args

