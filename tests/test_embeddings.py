"""Embeddings: OpenAI shapes, llama-cpp-python's embed(), batching across concurrent callers,
and real sentence-transformers weights against their reference vectors."""

from __future__ import annotations

import base64
import json
import os

import anyio
import numpy as np
import pytest

from allama import Llama
from allama.llama_embeddings import rerank_tokens

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def bert(bert_path):
    model = Llama(str(bert_path), n_ctx=512, n_parallel=1)
    yield model
    model.close()


SENTENCES = ["hello world", "a completely different sentence", "short", "the quick brown fox jumps over it"]


async def test_create_embedding_has_the_openai_shape(bert):
    out = await bert.create_embedding(SENTENCES[:2])
    assert out["object"] == "list" and out["model"].endswith("bert.gguf")
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 64 for d in out["data"])
    n_tokens = sum(len(bert.tokenize(s.encode())) for s in SENTENCES[:2])
    assert out["usage"] == {"prompt_tokens": n_tokens, "total_tokens": n_tokens}


async def test_embed_returns_llama_cpp_python_shapes(bert):
    one = await bert.embed("hello world")
    many = await bert.embed(["hello world", "short"])
    assert isinstance(one, list) and len(one) == 64 and isinstance(one[0], float)
    assert len(many) == 2 and many[0] == pytest.approx(one, abs=1e-6)
    vectors, count = await bert.embed(["hello world"], return_count=True)
    assert count == len(bert.tokenize(b"hello world"))


async def test_normalisation_and_dimensions(bert):
    raw = np.array((await bert.embed("hello world")))
    unit = np.array((await bert.embed("hello world", normalize=True)))
    assert np.linalg.norm(raw) != pytest.approx(1.0)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw), atol=1e-6)
    cut = (await bert.create_embedding("hello world", dimensions=16))["data"][0]["embedding"]
    np.testing.assert_allclose(cut, raw[:16] / np.linalg.norm(raw[:16]), atol=1e-6)


async def test_base64_round_trip(bert):
    floats = (await bert.create_embedding("hello world"))["data"][0]["embedding"]
    packed = (await bert.create_embedding("hello world", encoding_format="base64"))["data"][0]["embedding"]
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(packed), dtype="<f4"), np.float32(floats))


async def test_sixty_four_concurrent_callers_get_what_each_gets_alone(bert):
    # Unit vectors: llama.cpp's kernels accumulate in a different order when inputs share a
    # batch, which moves components by up to ~1.1e-5 here (6.5e-5 before normalising).
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(64)]
    alone = [np.array(await bert.embed(t, normalize=True)) for t in texts]
    together = [None] * 64
    before = bert._scheduler.embedder.batches

    async def run(i):
        together[i] = np.array(await bert.embed(texts[i], normalize=True))

    async with anyio.create_task_group() as tg:
        for i in range(64):
            tg.start_soon(run, i)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b, a, atol=2e-5)
    assert bert._scheduler.embedder.batches - before < 64  # inputs were packed into shared batches
    stats = bert.stats()
    assert stats.embedding_inputs >= 128 and stats.embedding_batches < stats.embedding_inputs


async def test_token_id_inputs(bert):
    ids = bert.tokenize(b"hello world")
    np.testing.assert_allclose(await bert.embed(ids), await bert.embed("hello world"), atol=1e-6)
    assert len(await bert.embed([ids, ids])) == 2


async def test_truncation(bert):
    long = "word " * 2000
    vector = await bert.embed(long)
    assert len(vector) == 64
    with pytest.raises(ValueError, match="exceeds the embedding context of 512"):
        await bert.embed(long, truncate=False)


async def test_bad_input_is_rejected(bert):
    with pytest.raises(ValueError, match="empty list"):
        await bert.create_embedding([])
    with pytest.raises(ValueError, match="empty string"):
        await bert.create_embedding("")
    with pytest.raises(ValueError, match="out of range"):
        await bert.embed([1, 10**6])
    with pytest.raises(ValueError, match="encoding_format"):
        await bert.create_embedding("x", encoding_format="int8")
    with pytest.raises(ValueError, match="dimensions"):
        await bert.create_embedding("x", dimensions=1000)


async def test_pooling_none_gives_token_vectors(bert_path):
    async with Llama(str(bert_path), n_ctx=128, pooling_type=0) as per_token:
        vectors = await per_token.embed("hello world")
        assert len(vectors) == len(per_token.tokenize(b"hello world")) and len(vectors[0]) == 64


async def test_a_generative_model_embeds_too(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=128, embedding=True, pooling_type=1) as gen:
        vector = await gen.embed("hello world")
        assert len(vector) == 64
        out = await gen.create_completion("hello", max_tokens=3, temperature=0)  # generation still works
        assert out["usage"]["completion_tokens"] == 3


async def test_embeddings_beside_generation_do_not_disturb_it(llama_f32_path):
    async with Llama(str(llama_f32_path), n_ctx=256, n_parallel=2, pooling_type=1) as llm:
        expected = (await llm.create_completion("keep going", max_tokens=20, temperature=0))["choices"][0]["text"]
        got = {}

        async def generate():
            got["text"] = (await llm.create_completion("keep going", max_tokens=20, temperature=0))["choices"][0]["text"]

        async def embed():
            for i in range(10):
                await llm.embed(f"embedding {i}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(generate)
            tg.start_soon(embed)
        assert got["text"] == expected


REFERENCE = os.environ.get("ALLAMA_TEST_EMBED_REFERENCE")
REAL_MODEL = os.environ.get("ALLAMA_TEST_EMBED_MODEL")


@pytest.mark.skipif(not (REFERENCE and REAL_MODEL),
                    reason="ALLAMA_TEST_EMBED_MODEL / ALLAMA_TEST_EMBED_REFERENCE are not set (.ci/run sets them)")
async def test_all_minilm_matches_sentence_transformers():
    reference = json.loads(open(REFERENCE).read())["sentences"]
    async with Llama(REAL_MODEL, n_ctx=512) as minilm:
        vectors = await minilm.embed([s["text"] for s in reference], normalize=True)
        for sentence, vector in zip(reference, vectors):
            assert minilm.tokenize(sentence["text"].encode()) == sentence["token_ids"]
            expected = np.array(sentence["embedding"])
            cosine = float(np.dot(vector, expected) / (np.linalg.norm(vector) * np.linalg.norm(expected)))
            assert cosine >= 0.999, (sentence["text"], cosine)


async def test_streamed_embeddings_cover_every_input_with_bounded_work_in_flight(bert):
    texts = (f"streamed sentence {i}" for i in range(1000))  # a generator: never a list in memory
    expected = {i: np.array(await bert.embed(f"streamed sentence {i}", normalize=True)) for i in range(0, 1000, 97)}
    stream = await bert.embed(texts, normalize=True, stream=True)
    seen = set()
    peak = 0
    async for item in stream:
        seen.add(item["index"])
        peak = max(peak, sum(len(p.request.inputs) - p.next_input for p in bert._scheduler.embedder._queue))
        if item["index"] in expected:
            np.testing.assert_allclose(item["embedding"], expected[item["index"]], atol=2e-5)
    assert seen == set(range(1000))
    assert peak <= 256


async def test_leaving_an_embedding_stream_early_cancels_the_rest(bert):
    before = bert._scheduler.embedder.inputs_embedded
    stream = await bert.create_embedding([f"item {i}" for i in range(2000)], stream=True)
    got = 0
    async for _ in stream:
        got += 1
        if got == 10:
            break
    await stream.aclose()
    with anyio.fail_after(10):
        while bert._scheduler.embedder.has_work():
            await anyio.sleep(0.01)
    # at most the window in flight when the stream was left was embedded, not all 2,000
    assert bert._scheduler.embedder.inputs_embedded - before <= 10 + 256


@pytest.fixture(scope="module")
def reranker(models_dir):
    from allama.testing.model_builder import BertConfig, build_bert

    path = build_bert(models_dir / "reranker.gguf", BertConfig(pooling_type=4, seed=77))[0]
    model = Llama(str(path), n_ctx=512)
    yield model
    model.close()


DOCS = ["paris is the capital of france", "bananas are yellow", "the eiffel tower is in paris", "cats sleep"]


async def test_rerank_has_the_jina_shape_and_sorts_by_score(reranker):
    out = await reranker.rerank("where is the eiffel tower", DOCS)
    assert set(out) >= {"model", "results", "usage"}
    scores = [r["relevance_score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r["index"] for r in out["results"]) == [0, 1, 2, 3]
    assert all(r["document"]["text"] == DOCS[r["index"]] for r in out["results"])
    assert out["usage"]["prompt_tokens"] > 0


async def test_rerank_scores_are_the_models_rank_output(reranker):
    out = await reranker.rerank("query", DOCS[:2])
    tokens = rerank_tokens(reranker, "query", DOCS[1])
    v = reranker._vocab
    assert tokens[0] == v.bos and tokens.count(v.sep) >= 1
    score = (await reranker.embed(tokens))
    by_index = {r["index"]: r["relevance_score"] for r in out["results"]}
    assert by_index[1] == pytest.approx(score[0], abs=1e-5)


async def test_rerank_top_n_and_errors(reranker, bert):
    out = await reranker.rerank("q", DOCS, top_n=2, return_documents=False)
    assert len(out["results"]) == 2 and "document" not in out["results"][0]
    with pytest.raises(ValueError, match="reranker"):
        await bert.rerank("q", DOCS)
    with pytest.raises(ValueError, match="documents"):
        await reranker.rerank("q", [])


@pytest.mark.parametrize("packing", [3, 7, 36])
async def test_any_packing_mean_pools(llama_f32_path, packing):
    # llama.cpp mean-pools only when n_ubatch is a multiple of n_seq_max; the embedding
    # context is sized so that any packing works (it used to abort the process).
    async with Llama(str(llama_f32_path), n_ctx=128, pooling_type=1) as llm:
        llm._engine().embedder.max_seqs = packing
        alone = [await llm.embed(t) for t in ("a b", "c d e", "f")]
        together = await llm.embed(["a b", "c d e", "f"])
    assert np.allclose(np.array(alone), np.array(together), atol=1e-5)
