"""LlamaTokenizer (the model's vocabulary) and LlamaHFTokenizer (a Hugging Face tokenizer)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from allama import LlamaHFTokenizer, LlamaTokenizer
from allama.tokenizer import BaseLlamaTokenizer
from tests.hf_tokenizers import build_byte_level_bpe, build_sentencepiece_bpe

pytest.importorskip("transformers", reason="LlamaHFTokenizer tests need the `hf` extra (in `test`)")

TEXTS = [
    "Hello world",
    " leading space",
    "  two  spaces  ",
    "héllo wörld, ça va?",
    "日本語のテキスト、とても長い文章です。" * 3,   # characters split over several byte tokens
    "🦙" * 9 + " end",                              # 4-byte characters, a long run of byte tokens
    "line\n\nbreaks\tand tabs",
]


# ------------------------------------------------------------------ the model's own tokenizer

@pytest.fixture(scope="module")
def llama_tokenizer(llama_f32_path: Path) -> LlamaTokenizer:
    return LlamaTokenizer.from_ggml_file(llama_f32_path)


def test_llama_tokenizer_round_trips_text_after_bos(llama_tokenizer):
    tokens = llama_tokenizer.tokenize(b"Hello world")
    assert tokens[0] == llama_tokenizer._vocab.bos
    assert llama_tokenizer.detokenize(tokens) == b"Hello world"
    assert llama_tokenizer.decode(llama_tokenizer.encode("héllo 日本")) == "héllo 日本"


def test_llama_tokenizer_keeps_a_words_leading_space_without_bos(llama_tokenizer):
    world = llama_tokenizer.tokenize(b"Hello world", add_bos=False)[-1]
    assert llama_tokenizer.detokenize([world]) == b" world"


def test_llama_tokenizer_pieces_after_prev_tokens_join_up_to_the_whole_text(llama_tokenizer):
    for text in TEXTS:
        tokens = llama_tokenizer.tokenize(text.encode())
        pieces = b"".join(llama_tokenizer.detokenize([t], prev_tokens=tokens[:i]) for i, t in enumerate(tokens))
        assert pieces == llama_tokenizer.detokenize(tokens), text


def test_llama_tokenizer_writes_special_tokens_only_when_asked(llama_tokenizer):
    tokens = llama_tokenizer.tokenize(b"<s>hi</s>", add_bos=False, special=True)
    assert tokens[0] == llama_tokenizer._vocab.bos and tokens[-1] == llama_tokenizer._vocab.eos
    assert llama_tokenizer.detokenize(tokens, special=True) == b"<s> hi</s>"
    assert llama_tokenizer.detokenize(tokens) == b"hi"
    assert llama_tokenizer.tokenize(b"<s>", add_bos=False, special=False) != [llama_tokenizer._vocab.bos]


def test_llama_tokenizer_rejects_ids_outside_the_vocabulary(llama_tokenizer):
    with pytest.raises(ValueError, match="token id 40000"):
        llama_tokenizer.detokenize([1, 40000])


def test_llama_tokenizer_needs_an_allama_llama():
    with pytest.raises(TypeError, match="allama Llama"):
        LlamaTokenizer(object())


# ------------------------------------------------------------------ Hugging Face tokenizers

@pytest.fixture(scope="module", params=["byte_level", "sentencepiece"])
def hf_tokenizer(request, tmp_path_factory) -> LlamaHFTokenizer:
    build = build_byte_level_bpe if request.param == "byte_level" else build_sentencepiece_bpe
    return LlamaHFTokenizer.from_pretrained(build(tmp_path_factory.mktemp(request.param)))


def test_hf_tokenizer_is_a_llama_tokenizer_with_the_same_interface(hf_tokenizer):
    assert isinstance(hf_tokenizer, BaseLlamaTokenizer)
    assert hf_tokenizer.tokenize(b"Hello world") == hf_tokenizer.hf_tokenizer.encode("Hello world")


@pytest.mark.parametrize("text", TEXTS)
def test_hf_tokenizer_round_trips_text(hf_tokenizer, text):
    tokens = hf_tokenizer.tokenize(text.encode())
    assert hf_tokenizer.detokenize(tokens) == text.encode()


@pytest.mark.parametrize("text", TEXTS)
def test_hf_tokenizer_pieces_after_prev_tokens_join_up_to_the_whole_text(hf_tokenizer, text):
    tokens = hf_tokenizer.tokenize(text.encode())
    pieces = [hf_tokenizer.detokenize([t], prev_tokens=tokens[:i]) for i, t in enumerate(tokens)]
    assert b"".join(pieces) == text.encode()
    for piece in pieces:
        piece.decode("utf-8")  # every piece is whole characters: a cut one waits for its end


def test_hf_tokenizer_splits_characters_over_tokens_in_these_tests(hf_tokenizer):
    """The incremental tests above are only meaningful if some characters span tokens."""
    tokens = hf_tokenizer.tokenize("🦙".encode(), add_bos=False)
    assert len(tokens) > 1
    assert hf_tokenizer.detokenize(tokens[:1], prev_tokens=[]) == b""
    assert hf_tokenizer.detokenize(tokens[1:], prev_tokens=tokens[:1]) == "🦙".encode()


def test_sentencepiece_word_loses_its_space_alone_but_not_after_prev_tokens(tmp_path):
    tokenizer = LlamaHFTokenizer.from_pretrained(build_sentencepiece_bpe(tmp_path))
    tokens = tokenizer.tokenize(b"Hello world, the quick brown fox", add_bos=False)
    names = tokenizer.hf_tokenizer.convert_ids_to_tokens(tokens)
    words = [i for i in range(1, len(tokens)) if names[i].startswith("\u2581") and len(names[i]) > 1]
    assert words, names
    for i in words:
        assert not tokenizer.detokenize(tokens[i:i + 1]).startswith(b" ")  # a text's first space is stripped
        assert tokenizer.detokenize(tokens[i:i + 1], prev_tokens=tokens[:i]).startswith(b" ")


def test_hf_tokenizer_add_bos_adds_the_tokenizers_special_tokens(tmp_path):
    tokenizer = LlamaHFTokenizer.from_pretrained(build_sentencepiece_bpe(tmp_path))
    bos = tokenizer.hf_tokenizer.bos_token_id
    assert tokenizer.tokenize(b"hi")[0] == bos
    assert bos not in tokenizer.tokenize(b"hi", add_bos=False)


def test_hf_tokenizer_parses_special_token_text_only_when_special(hf_tokenizer):
    eos = hf_tokenizer.hf_tokenizer.eos_token_id
    assert eos in hf_tokenizer.tokenize(b"hi</s>", add_bos=False, special=True)
    assert eos not in hf_tokenizer.tokenize(b"hi</s>", add_bos=False, special=False)
    tokens = hf_tokenizer.tokenize(b"hi</s>", add_bos=False, special=True)
    assert hf_tokenizer.detokenize(tokens) == b"hi"
    assert hf_tokenizer.detokenize(tokens, special=True) == b"hi</s>"


def test_hf_tokenizer_from_pretrained_names_the_extra_when_transformers_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"allama\[hf\]"):
        LlamaHFTokenizer.from_pretrained("any/tokenizer")
