"""Llama's embeddings and reranking: inputs tokenized and truncated to the embedding context,
submitted to the engine's embedder (which packs inputs of concurrent calls into one batch),
and the vectors shaped as llama-cpp-python, OpenAI or a reranker's response."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from allama import arguments
from allama.arguments import is_int
from allama.engine import Output
from allama.engine.embedding import EmbedRequest
from allama.engine.loop_handle import LoopHandle
from allama.engine.output_sink import OutputSink
from allama.stream import AsyncStream
from allama.token_ids import checked_token_ids

if TYPE_CHECKING:
    from allama.llama import Llama
    from allama.types import CreateEmbeddingResponse, RerankResponse

_EMBEDDING_TYPES = "input must be a string, a list of token ids, or a list of those"


def _embedding_inputs(llm: Llama, input: Any, truncate: bool) -> tuple[list[list[int]], bool]:
    """Token lists for str / list[str] / list[int] / list[list[int]] input; and whether it was one item."""
    if isinstance(input, (str, bytes)):
        items, single = [input], True
    else:
        if isinstance(input, Mapping) or not isinstance(input, Iterable):
            raise TypeError(f"{_EMBEDDING_TYPES}, not {type(input).__name__}")
        items = list(input)
        if not items:
            raise ValueError("input must not be an empty list")
        single = all(is_int(t) for t in items)
        if single:
            items = [items]
    return [_embedding_tokens(llm, item, truncate) for item in items], single


def _embedding_tokens(llm: Llama, item: Any, truncate: bool) -> list[int]:
    """One input (text or token ids) as the tokens to embed, truncated to the embedding context."""
    limit = min(llm._engine().config.embed_max_tokens, llm._model.n_ctx_train or 1 << 30)
    if isinstance(item, (str, bytes)):
        if not item:
            raise ValueError("input must not be an empty string")
        tokens = llm.tokenize(item.encode("utf-8") if isinstance(item, str) else item, True, False)
    elif isinstance(item, (list, tuple, np.ndarray)) and all(is_int(t) for t in item):
        tokens = [int(t) for t in item]
        if not tokens:
            raise ValueError("input must not hold an empty token list")
        checked_token_ids(tokens, llm._vocab.n_tokens)
    else:
        raise TypeError(f"{_EMBEDDING_TYPES}; this one holds a {type(item).__name__}")
    if len(tokens) > limit:
        if not truncate:
            raise ValueError(f"input of {len(tokens)} tokens exceeds the embedding context of {limit}")
        tokens = tokens[:limit]
    return tokens


async def _embedding_stream(llm: Llama, inputs: Any, normalize: bool, truncate: bool,
                            window: int = 256) -> AsyncIterator[dict[str, Any]]:
    """{"index", "embedding"} items in completion order, keeping at most `window` inputs
    tokenized and in flight, so memory stays bounded for any number of inputs."""
    engine = llm._engine()
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
                request = EmbedRequest([_embedding_tokens(llm, item, truncate) for item in chunk])
                engine.submit_embedding(request, OffsetSink(sink, next_index), loop)
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
            vector = l2_normalise(out.embeddings) if normalize else out.embeddings
            yield {"index": out.index, "embedding": vector.tolist()}
            if len(live) > 64:
                live = live[-64:]  # older chunks have long finished
    finally:
        for request in live:
            engine.cancel(request)  # type: ignore[arg-type]


async def _embed_tokens(llm: Llama, inputs: list[list[int]]) -> list[np.ndarray]:
    engine = llm._engine()
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


async def embed(llm: Llama, input: Any, normalize: bool = False, truncate: bool = True,
                return_count: bool = False, stream: bool = False) -> Any:
    """Llama.embed's work (see there)."""
    if stream:
        return AsyncStream(_embedding_stream(llm, input, normalize, truncate))
    inputs, single = _embedding_inputs(llm, input, truncate)
    vectors = await _embed_tokens(llm, inputs)
    if normalize:
        vectors = [l2_normalise(v) for v in vectors]
    data = [v.tolist() for v in vectors]
    result: Any = data[0] if single else data
    count = sum(len(t) for t in inputs)
    return (result, count) if return_count else result


async def create_embedding(llm: Llama, input: Any, model: str | None = None, encoding_format: str = "float",
                           dimensions: int | None = None, normalize: bool = False,
                           truncate: bool = True, stream: bool = False
                           ) -> "CreateEmbeddingResponse | AsyncStream[dict[str, Any]]":
    """Llama.create_embedding's work (see there)."""
    if encoding_format not in ("float", "base64"):
        raise ValueError("encoding_format must be 'float' or 'base64'")
    if stream:
        if dimensions is not None or encoding_format != "float":
            raise ValueError("a streamed embedding takes neither dimensions nor base64")
        return AsyncStream(_embedding_stream(llm, input, normalize, truncate))
    if dimensions is not None:
        arguments.whole("dimensions", dimensions, 1, None)
    inputs, _ = _embedding_inputs(llm, input, truncate)
    vectors = await _embed_tokens(llm, inputs)
    if dimensions is not None:
        size = vectors[0].shape[-1] if vectors else 0
        if not 1 <= dimensions <= size:
            raise ValueError(f"dimensions must be between 1 and {size}")
        vectors = [l2_normalise(v[..., :dimensions]) for v in vectors]
    elif normalize:
        vectors = [l2_normalise(v) for v in vectors]
    data = []
    for i, v in enumerate(vectors):
        if encoding_format == "base64":
            embedding: Any = base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")
        else:
            embedding = v.tolist()
        data.append({"object": "embedding", "embedding": embedding, "index": i})
    count = sum(len(t) for t in inputs)
    return {"object": "list", "data": data, "model": model if model is not None else llm.model_path,
            "usage": {"prompt_tokens": count, "total_tokens": count}}


async def rerank(llm: Llama, query: str, documents: Sequence[str], top_n: int | None = None,
                 return_documents: bool = True, model: str | None = None) -> "RerankResponse":
    """Llama.rerank's work (see there)."""
    engine = llm._engine()
    if engine.embedder.context().pooling_type != 4:
        raise ValueError("rerank needs a reranker model (pooling type rank); this one pools "
                         "for embeddings: load a reranker, or pass pooling_type=4 if it has a classifier head")
    if not documents:
        raise ValueError("documents must not be empty")
    if top_n is not None and top_n < 1:
        raise ValueError("top_n must be at least 1")
    pairs = [rerank_tokens(llm, query, doc) for doc in documents]
    inputs, _ = _embedding_inputs(llm, pairs, truncate=True)
    scores = await _embed_tokens(llm, inputs)
    results = [{"index": i, "relevance_score": float(np.asarray(s).reshape(-1)[0])}
               for i, s in enumerate(scores)]
    if return_documents:
        for result in results:
            result["document"] = {"text": documents[result["index"]]}
    results.sort(key=lambda r: r["relevance_score"], reverse=True)
    count = sum(len(t) for t in inputs)
    return {"model": model if model is not None else llm.model_path, "object": "list",
            "results": results[:top_n] if top_n is not None else results,
            "usage": {"prompt_tokens": count, "total_tokens": count}}


def rerank_tokens(llm: Llama, query: str, document: str) -> list[int]:
    """A (query, document) pair as rerankers read it: the model's `rerank` template when it
    has one, else BOS query EOS SEP document EOS as the vocabulary adds them."""
    template = llm._model.chat_template("rerank")
    v = llm._vocab
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


def l2_normalise(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(norm == 0, 1, norm)


class OffsetSink:
    """Routes one chunk's embedding outputs into a shared sink, shifting their input index."""

    __slots__ = ("sink", "base")

    def __init__(self, sink: OutputSink, base: int) -> None:
        self.sink = sink
        self.base = base

    def push(self, outputs: list[Output], final: bool = False) -> None:
        for out in outputs:
            out.index += self.base
        self.sink.push(outputs, final)
