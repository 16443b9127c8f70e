"""allama.sync.Llama: the blocking twin of allama.Llama, with llama-cpp-python's signatures.

It drives the same engine from a private event loop in a background thread, so
calls work from any thread (a web framework's thread pool included) and several
threads calling at once are batched together like async callers. Streams are
plain generators.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from types import TracebackType
from typing import Any

from allama import _native
from allama.cache import BaseLlamaCache
from allama.engine import EngineStats, Scheduler
from allama.hub import download_model
from allama.llama import Llama as AsyncLlama
from allama.llama_params import LlamaParams
from allama.logits_processing import as_logits_processor, as_stopping_criteria
from allama.loop_thread import LoopThread
from allama.sequential import SequentialContext
from allama.state import LlamaState
from allama.sync_session import LlamaSession
from allama.tokenizer import BaseLlamaTokenizer, LlamaTokenizer
from allama.twin_signature import twin_of

__all__ = ["Llama", "LlamaSession"]

class Llama:
    """Blocking API over the continuous-batching engine; see allama.Llama for the parameters."""

    @twin_of(AsyncLlama.__init__)
    def __init__(self, model_path: str | os.PathLike[str], **params: Any) -> None:
        self._llm = AsyncLlama(model_path, **params)
        self._params = params
        self._sequential: SequentialContext | None = None
        self._portal = LoopThread()
        self.model_path = self._llm.model_path
        self.metadata = self._llm.metadata
        self.verbose = self._llm.verbose

    @classmethod
    def from_pretrained(
        cls,
        repo_id: str,
        filename: str | None,
        additional_files: Sequence[str] | None = None,
        local_dir: str | os.PathLike[str] | None = None,
        local_dir_use_symlinks: bool | str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> "Llama":
        """As allama.Llama.from_pretrained, blocking: downloads the matching GGUF file(s) from the
        Hugging Face Hub, then loads the model. Needs huggingface_hub (`pip install 'allama[hf]'`)."""
        path = download_model(repo_id, filename, additional_files, local_dir=local_dir,
                              local_dir_use_symlinks=local_dir_use_symlinks, cache_dir=cache_dir)
        return cls(path, **kwargs)

    @property
    def async_llama(self) -> AsyncLlama:
        """The async object behind this one (same engine)."""
        return self._llm

    # --- llama-cpp-python's attributes ---

    @property
    def chat_format(self) -> str | None:
        """The named chat format of chat completions (None: the model's template). Settable."""
        return self._llm.chat_format

    @chat_format.setter
    def chat_format(self, value: str | None) -> None:
        self._llm.chat_format = value

    @property
    def chat_handler(self) -> Any:
        """The chat completion handler (None: the chat format). Settable."""
        return self._llm.chat_handler

    @chat_handler.setter
    def chat_handler(self, value: Any) -> None:
        self._llm.chat_handler = value

    @property
    def draft_model(self) -> Any:
        """The LlamaDraftModel of speculative decoding, or None. Settable (see allama.Llama)."""
        return self._llm.draft_model

    @draft_model.setter
    def draft_model(self, value: Any) -> None:
        self._llm.draft_model = value

    @property
    def model(self) -> Any:
        """The model handle, as allama.llama_cpp's functions take it (`llama_model_*`,
        `llama_model_get_vocab`, ...). The model is read-only once loaded, so querying it from any
        thread is safe; this Llama owns it: `llama_model_free` on it breaks this Llama."""
        return self._llm.model

    @property
    def ctx(self) -> Any:
        """The context handle of the single-sequence API (eval, sample, generate: llama-cpp-python's
        `llm.ctx`, where `llama_get_logits(llm.ctx)` reads what eval computed); made on first use,
        None for a vocab_only model. Like llama-cpp-python's, it is not safe to use from two threads
        at once. The batching engine's own context belongs to its decode thread and is never handed out."""
        if self._llm.params["vocab_only"]:
            return None
        return self._seq().ctx

    @property
    def model_params(self) -> Any:
        """The llama_model_params the model was loaded with (a copy: changing it changes nothing)."""
        from allama.llama_cpp import llama_model_params

        return _copy_params(self._llm.model_params, llama_model_params())

    @property
    def context_params(self) -> Any:
        """The llama_context_params of the engine's context (a copy: changing it changes nothing;
        n_ctx is the KV cache all sequences share, n_seq_max their number); None for vocab_only."""
        params = self._llm.context_params
        return None if params is None else _copy_params(params, _native.ContextParams())

    @property
    def n_batch(self) -> int:
        """Tokens per decode step (n_batch, at most n_ctx, as llama-cpp-python clamps it)."""
        return min(self.n_ctx(), self._llm.params["n_batch"])

    @property
    def n_threads(self) -> int:
        """Threads for generation (the n_threads argument, else half the CPUs)."""
        return self._llm.params.n_threads

    @property
    def n_threads_batch(self) -> int:
        """Threads for prompt processing (the n_threads_batch argument, else every CPU)."""
        return self._llm.params.n_threads_batch

    @property
    def numa(self) -> bool | int:
        """The numa argument: accepted for llama-cpp-python's signature, it has no effect (llama.cpp's
        NUMA setup is process-wide and would bind the threads of every model in the process)."""
        return self._llm.params["numa"]

    # --- what the async Llama has besides ---

    @property
    def params(self) -> LlamaParams:
        """As allama.Llama.params: the constructor's arguments and the native parameters they make."""
        return self._llm.params

    @property
    def engine(self) -> Scheduler:
        """As allama.Llama.engine: the continuous-batching engine behind both twins."""
        return self._llm.engine

    @property
    def seed(self) -> int:
        """The seed of requests that pass none (the `seed` argument; `set_seed` changes it)."""
        return self._llm.seed

    @property
    def lora_adapters(self) -> dict[str, float]:
        """As allama.Llama.lora_adapters: name -> the scale requests get by default (0: off)."""
        return self._llm.lora_adapters

    def chat_formatter(self) -> Any:
        """As allama.Llama.chat_formatter."""
        return self._llm.chat_formatter()

    def template_formatter(self, template: str, add_generation_prompt: bool = True,
                           writes_special: bool = True) -> Any:
        """As allama.Llama.template_formatter."""
        return self._llm.template_formatter(template, add_generation_prompt, writes_special)

    def chat_template(self, name: str | None = None) -> str | None:
        """As allama.Llama.chat_template."""
        return self._llm.chat_template(name)

    @property
    def _is_recurrent(self) -> bool:
        return bool(self._llm.model.is_recurrent)

    @property
    def _is_hybrid(self) -> bool:
        return bool(self._llm.model.is_hybrid)

    @property
    def tokenizer_(self) -> BaseLlamaTokenizer:
        """The tokenizer in use: `tokenizer=` if given, else the model's own."""
        return self._llm.tokenizer_

    # --- the async Llama's coroutines, blocking (stream=True: a generator) ---

    def _call_or_stream(self, method: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
        """`await method(*args, **kwargs)` on the portal's loop: its result, or with stream=True a
        generator of what the stream it returns yields."""
        call = partial(method, *args, **kwargs)
        if kwargs.get("stream"):
            return self._stream(call)
        return self._portal.call(call)

    def _stream(self, start: Any) -> Iterator[Any]:
        stream = self._portal.call(start)
        yield from self._portal.iterate(stream)

    @twin_of(AsyncLlama.create_completion)
    def create_completion(self, *args: Any, **kwargs: Any) -> Any:
        """As allama.Llama.create_completion; with stream=True, a generator of chunks."""
        return self._call_or_stream(self._llm.create_completion, args, kwargs)

    @twin_of(AsyncLlama.__call__)
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """As create_completion."""
        return self._call_or_stream(self._llm.create_completion, args, kwargs)

    @twin_of(AsyncLlama.create_chat_completion)
    def create_chat_completion(self, *args: Any, **kwargs: Any) -> Any:
        """As allama.Llama.create_chat_completion; with stream=True, a generator of chunks."""
        return self._call_or_stream(self._llm.create_chat_completion, args, kwargs)

    @twin_of(AsyncLlama.create_chat_completion_openai_v1)
    def create_chat_completion_openai_v1(self, *args: Any, **kwargs: Any) -> Any:
        """As allama.Llama.create_chat_completion_openai_v1, blocking: an `openai` ChatCompletion,
        or with stream=True a generator of ChatCompletionChunk."""
        return self._call_or_stream(self._llm.create_chat_completion_openai_v1, args, kwargs)

    @twin_of(AsyncLlama.create_embedding)
    def create_embedding(self, *args: Any, **kwargs: Any) -> Any:
        """As allama.Llama.create_embedding; with stream=True, a generator of items."""
        return self._call_or_stream(self._llm.create_embedding, args, kwargs)

    @twin_of(AsyncLlama.embed)
    def embed(self, *args: Any, **kwargs: Any) -> Any:
        """As allama.Llama.embed (normalize=False, truncate=True, return_count=False)."""
        return self._call_or_stream(self._llm.embed, args, kwargs)

    @twin_of(AsyncLlama.rerank)
    def rerank(self, *args: Any, **kwargs: Any) -> Any:
        """As allama.Llama.rerank."""
        return self._call_or_stream(self._llm.rerank, args, kwargs)

    # plain calls
    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return self._llm.tokenize(text, add_bos, special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        return self._llm.detokenize(tokens, prev_tokens, special)

    def n_ctx(self) -> int:
        return self._llm.n_ctx()

    def n_vocab(self) -> int:
        return self._llm.n_vocab()

    def n_embd(self) -> int:
        return self._llm.n_embd()

    def pooling_type(self) -> int:
        return self._llm.pooling_type()

    logits_to_logprobs = staticmethod(AsyncLlama.logits_to_logprobs)
    longest_token_prefix = staticmethod(AsyncLlama.longest_token_prefix)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as its constructor arguments: unpickling loads the model again."""
        return {"model_path": self.model_path, **self._params}

    def __setstate__(self, state: dict[str, Any]) -> None:
        args = dict(state)
        self.__init__(args.pop("model_path"), **args)  # type: ignore[misc]

    def token_bos(self) -> int:
        return self._llm.token_bos()

    def token_eos(self) -> int:
        return self._llm.token_eos()

    def token_nl(self) -> int:
        return self._llm.token_nl()

    def set_seed(self, seed: int) -> None:
        """The seed of requests that do not pass their own."""
        self._llm.set_seed(seed)
        if self._sequential is not None:
            self._sequential.seed = seed

    def tokenizer(self) -> LlamaTokenizer:
        return LlamaTokenizer(self)

    # --- llama-cpp-python's single-sequence API (a private context; see allama.sequential) ---

    def _seq(self) -> SequentialContext:
        if self._sequential is None:
            params = self._llm.params
            self._sequential = SequentialContext(self._llm.model, params.single_sequence_context(self._llm.n_ctx()),
                                                 bool(params["logits_all"]), self._llm.seed)
        return self._sequential

    @property
    def n_tokens(self) -> int:
        return self._sequential.n_tokens if self._sequential is not None else 0

    @property
    def eval_tokens(self) -> deque[int]:
        """The tokens evaluated last (llama-cpp-python's eval_tokens): the eval/generate history
        once that API is in use, else the last finished completion's prompt and output."""
        if self._sequential is None:
            return self._llm.eval_tokens
        return deque(self._sequential.input_ids[: self._sequential.n_tokens].tolist(), maxlen=self._llm.n_ctx())

    @property
    def eval_logits(self) -> deque[list[float]]:
        """The logits of the eval/generate history (llama-cpp-python's eval_logits): every row
        with logits_all=True, else the last one; empty otherwise (completions keep none)."""
        seq = self._sequential
        if seq is None or seq.n_tokens == 0:
            return deque(maxlen=1)
        rows = seq.scores[: seq.n_tokens] if seq.logits_all else seq.scores[:1]
        return deque(rows.tolist(), maxlen=self._llm.n_ctx() if seq.logits_all else 1)

    @property
    def input_ids(self) -> Any:
        return self._seq().input_ids

    @property
    def scores(self) -> Any:
        return self._seq().scores

    @property
    def _input_ids(self) -> Any:
        return self._seq().input_ids[: self.n_tokens]

    @property
    def _scores(self) -> Any:
        seq = self._seq()
        return seq.scores[: self.n_tokens] if seq.logits_all else seq.scores

    @property
    def logits_all(self) -> bool:
        return self._seq().logits_all

    def eval(self, tokens: Sequence[int]) -> None:
        """Appends tokens to the single-sequence history (llama-cpp-python's eval)."""
        self._seq().eval(tokens)

    def reset(self) -> None:
        if self._sequential is not None:
            self._sequential.reset()

    def _chain(self, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
               temp: float = 0.80, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
               presence_penalty: float = 0.0, mirostat_mode: int = 0, mirostat_eta: float = 0.1,
               mirostat_tau: float = 5.0, grammar: Any = None, **_ignored: Any) -> Any:
        seq = self._seq()
        return seq.chain(
            top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temperature=temp,
            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
            penalty_last_n=self._llm.last_n_tokens_size, mirostat_mode=mirostat_mode, mirostat_eta=mirostat_eta,
            mirostat_tau=mirostat_tau, seed=seq.seed,
            grammar="" if grammar is None else str(grammar))

    def sample(self, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05, typical_p: float = 1.0,
               temp: float = 0.80, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
               presence_penalty: float = 0.0, tfs_z: float = 1.0, mirostat_mode: int = 0,
               mirostat_eta: float = 0.1, mirostat_tau: float = 5.0, penalize_nl: bool = True,
               logits_processor: Any = None, grammar: Any = None, idx: int | None = None) -> int:
        """Samples the next token from the last evaluated logits (llama-cpp-python's sample)."""
        chain = self._chain(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temp=temp,
                            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                            presence_penalty=presence_penalty, mirostat_mode=mirostat_mode,
                            mirostat_eta=mirostat_eta, mirostat_tau=mirostat_tau, grammar=grammar)
        return self._seq().sample(chain, as_logits_processor(logits_processor))

    def generate(self, tokens: Sequence[int], top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 typical_p: float = 1.0, temp: float = 0.80, repeat_penalty: float = 1.0, reset: bool = True,
                 frequency_penalty: float = 0.0, presence_penalty: float = 0.0, tfs_z: float = 1.0,
                 mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1,
                 penalize_nl: bool = True, logits_processor: Any = None, stopping_criteria: Any = None,
                 grammar: Any = None) -> Iterator[int]:
        """Evaluates `tokens`, then yields sampled tokens forever (llama-cpp-python's generate)."""
        chain = self._chain(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, temp=temp,
                            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                            presence_penalty=presence_penalty, mirostat_mode=mirostat_mode,
                            mirostat_eta=mirostat_eta, mirostat_tau=mirostat_tau, grammar=grammar)
        if reset:
            chain.reset()
        return self._seq().generate(tokens, chain, reset, as_logits_processor(logits_processor),
                                    as_stopping_criteria(stopping_criteria))

    def save_state(self) -> LlamaState:
        """The eval/generate history once that API is in use (as llama-cpp-python); otherwise the
        default session's state (as allama.Llama.save_state)."""
        if self._sequential is not None:
            return self._sequential.save_state()
        return self._portal.call(self._llm.save_state)

    def load_state(self, state: LlamaState) -> None:
        """A saved eval/generate history goes back there; one sequence's state (a session's)
        goes into the default session."""
        if state.scope == "context":
            self._seq().load_state(state)
        else:
            self._portal.call(self._llm.load_state, state)

    # --- sessions and the prompt cache ---

    def session(self) -> "LlamaSession":
        """A conversation that keeps its KV between turns (see allama.LlamaSession)."""
        return LlamaSession(self)

    @property
    def cache(self) -> BaseLlamaCache | None:
        return self._llm.cache

    def set_cache(self, cache: BaseLlamaCache | None) -> None:
        """As allama.Llama.set_cache."""
        self._llm.set_cache(cache)

    def stats(self) -> EngineStats:
        return self._llm.stats()

    def close(self) -> None:
        self._llm.close()
        self._portal.close()

    def __enter__(self) -> "Llama":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _copy_params(source: Any, target: Any) -> Any:
    """`target` with every field of the native params object `source`."""
    for name in dir(type(source)):
        if not name.startswith("_") and isinstance(getattr(type(source), name, None), property):
            setattr(target, name, getattr(source, name))
    return target
