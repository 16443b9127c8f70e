"""LlamaState: bytes and files that check themselves."""

from __future__ import annotations

import numpy as np
import pytest

from allama import LlamaState


def sample_state() -> LlamaState:
    return LlamaState(np.array([1, 5, 9, 2], dtype=np.intc), np.arange(6, dtype=np.single).reshape(2, 3), 3,
                      b"kv-bytes" * 10, 80, 42, scope="context")


def test_bytes_round_trip_keeps_every_field():
    state = sample_state()
    back = LlamaState.from_bytes(state.to_bytes())
    assert back.input_ids.tolist() == [1, 5, 9, 2]
    assert back.scores.tolist() == state.scores.tolist()
    assert (back.n_tokens, back.llama_state, back.llama_state_size, back.seed, back.scope) == (
        3, state.llama_state, 80, 42, "context")
    assert back.tokens == [1, 5, 9]


def test_sequence_state_has_its_tokens_and_no_scores():
    state = LlamaState.of_sequence([4, 7], b"abc", seed=3)
    assert (state.tokens, state.n_tokens, state.llama_state_size, state.scope) == ([4, 7], 2, 3, "sequence")
    assert state.scores.size == 0


@pytest.mark.parametrize("cut", [0, 5, 40, -1])
def test_truncated_bytes_are_refused(cut):
    data = sample_state().to_bytes()
    with pytest.raises(ValueError, match="truncated"):
        LlamaState.from_bytes(data[:cut])


def test_a_flipped_byte_is_refused_by_the_checksum():
    data = bytearray(sample_state().to_bytes())
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt"):
        LlamaState.from_bytes(bytes(data))


def test_other_bytes_are_not_a_state():
    with pytest.raises(ValueError, match="not a saved allama state"):
        LlamaState.from_bytes(b"GGUF" + b"\0" * 100)


def test_bad_fields_are_refused():
    with pytest.raises(ValueError, match="scope"):
        LlamaState([1], [], 1, b"", 0, 0, scope="everything")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_tokens"):
        LlamaState([1, 2], [], 3, b"", 0, 0)


@pytest.mark.anyio
async def test_file_round_trip_and_a_truncated_file(tmp_path):
    path = tmp_path / "state.bin"
    await sample_state().save(path)
    back = await LlamaState.load(path)
    assert back.tokens == [1, 5, 9] and back.llama_state == sample_state().llama_state
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]  # no temporary file left behind
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ValueError, match="state.bin.*truncated"):
        await LlamaState.load(path)
