"""Tokenizer: llama.cpp's own tokenizer vectors, special tokens, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from allama import _native
from allama.testing.model_builder import vocab_dir

SEPARATOR = "\n__ggml_vocab_test__\n"


def vocab_files_with_vectors() -> list[Path]:
    return sorted(p for p in vocab_dir().glob("ggml-vocab-*.gguf") if p.with_name(p.name + ".inp").exists())


def load_vectors(path: Path) -> dict[str, list[int]]:
    """The .inp/.out pairs as llama.cpp's test-tokenizer-0 reads them (later duplicates win)."""
    raw = path.with_name(path.name + ".inp").read_text(encoding="utf-8")
    inputs = raw.split(SEPARATOR)
    if inputs and inputs[-1].endswith("\n__ggml_vocab_test__"):
        inputs[-1] = inputs[-1][: -len("\n__ggml_vocab_test__")]
    outputs = path.with_name(path.name + ".out").read_text(encoding="utf-8").split("\n")
    assert len(outputs) >= len(inputs)
    return {text: [int(t) for t in line.split()] for text, line in zip(inputs, outputs)}


def load_vocab(path: Path) -> _native.Vocab:
    params = _native.ModelParams()
    params.vocab_only = True
    return _native.Vocab(_native.Model.load(str(path), params))


def test_there_are_tokenizer_vectors_to_check():
    assert len(vocab_files_with_vectors()) >= 10


@pytest.mark.parametrize("path", vocab_files_with_vectors(), ids=lambda p: p.name[len("ggml-vocab-"):-len(".gguf")])
def test_tokenize_matches_llama_cpp_vectors(path: Path):
    vocab = load_vocab(path)
    vectors = load_vectors(path)
    assert vectors
    mismatches = []
    for text, expected in vectors.items():
        got = vocab.tokenize(text.encode("utf-8"), add_special=False, parse_special=False)
        if got != expected:
            mismatches.append((text, expected, got))
    assert not mismatches, mismatches[:3]


def test_spm_detokenize_round_trips_every_token():
    """As llama.cpp's test-tokenizer-1-spm: piece -> tokens -> text gives the piece back."""
    vocab = load_vocab(vocab_dir() / "ggml-vocab-llama-spm.gguf")
    failures = []
    for token in range(vocab.n_tokens):
        text = vocab.detokenize([token], remove_special=False, unparse_special=True)
        again = vocab.tokenize(text, add_special=False, parse_special=True)
        check = vocab.detokenize(again, remove_special=False, unparse_special=True)
        if check != text:
            failures.append(token)
    assert not failures, failures[:10]


def test_tokenize_accepts_str_and_bytes_alike(llama_vocab):
    assert llama_vocab.tokenize("héllo wörld") == llama_vocab.tokenize("héllo wörld".encode())


def test_add_special_adds_bos(llama_vocab):
    with_bos = llama_vocab.tokenize("hi", add_special=True)
    without = llama_vocab.tokenize("hi", add_special=False)
    assert with_bos[0] == llama_vocab.bos == 1
    assert with_bos[1:] == without


def test_parse_special_turns_marker_text_into_the_special_token(llama_vocab):
    parsed = llama_vocab.tokenize("</s>", add_special=False, parse_special=True)
    literal = llama_vocab.tokenize("</s>", add_special=False, parse_special=False)
    assert parsed == [llama_vocab.eos]
    assert llama_vocab.eos not in literal


def test_special_tokens_of_the_spm_vocab(llama_vocab):
    assert (llama_vocab.bos, llama_vocab.eos) == (1, 2)
    assert llama_vocab.is_eog(llama_vocab.eos)
    assert not llama_vocab.is_eog(100)
    assert llama_vocab.is_control(llama_vocab.bos)
    assert llama_vocab.eos in llama_vocab.eog_tokens
    assert llama_vocab.type == 1  # SPM
    assert llama_vocab.n_tokens == 32000
    assert llama_vocab.add_bos is True
    # Tokens this vocabulary lacks read as -1, as in llama.cpp.
    assert llama_vocab.fim_pre == -1


def test_token_to_piece_renders_special_tokens_only_when_asked(llama_vocab):
    assert llama_vocab.token_to_piece(llama_vocab.eos, special=True) == b"</s>"
    assert llama_vocab.token_to_piece(llama_vocab.eos, special=False) == b""


def test_token_pieces_concatenate_to_the_text(llama_vocab):
    text = "Streaming detokenization: ünïcödé and emoji 🦙 too."
    tokens = llama_vocab.tokenize(text, add_special=False)
    pieces = b"".join(llama_vocab.token_to_piece(t) for t in tokens)
    assert pieces.decode("utf-8").strip() == text
    assert llama_vocab.detokenize(tokens).decode("utf-8").strip() == text


def test_long_text_round_trips(llama_vocab):
    paragraph = "word " * 20000  # long enough to take the GIL-released path
    tokens = llama_vocab.tokenize(paragraph, add_special=False)
    assert len(tokens) >= 20000
    assert llama_vocab.detokenize(tokens).decode().strip() == paragraph.strip()


def test_bert_vocab_adds_cls_and_sep(bert_path):
    vocab = _native.Vocab(_native.Model.load(str(bert_path)))
    tokens = vocab.tokenize("hello world", add_special=True)
    assert vocab.type == 3  # WPM
    assert tokens[0] == vocab.bos and tokens[-1] == vocab.sep
