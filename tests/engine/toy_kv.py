"""A stand-in for a native context's KV bookkeeping: how many leading positions each
sequence holds (llama.cpp keeps them contiguous), and every call made, for unit tests of
the engine's prefix and session logic without a model."""

from __future__ import annotations


class ToyKV:
    def __init__(self, capacity: int = 1 << 20) -> None:
        self.held: dict[int, int] = {}  # seq id -> positions 0..n-1 held
        self.calls: list[tuple] = []
        self.capacity = capacity        # cells: a state load beyond it fails as llama.cpp's does

    @property
    def n_ctx(self) -> int:
        return self.capacity

    def seq_rm(self, seq_id: int, p0: int = -1, p1: int = -1) -> bool:
        self.calls.append(("rm", seq_id, p0, p1))
        if p0 <= 0 and p1 < 0:
            self.held.pop(seq_id, None)
        elif p1 < 0:
            self.held[seq_id] = min(self.held.get(seq_id, 0), p0)
        else:
            raise AssertionError("the engine only cuts a sequence's tail")
        return True

    def seq_cp(self, src: int, dst: int, p0: int = -1, p1: int = -1) -> None:
        self.calls.append(("cp", src, dst, p0, p1))
        assert self.held.get(dst, 0) == 0, "copies go into empty sequences"
        n = self.held.get(src, 0)
        self.held[dst] = n if p1 < 0 else min(n, p1)

    def seq_pos_min(self, seq_id: int) -> int:
        return 0 if self.held.get(seq_id, 0) else -1

    def seq_pos_max(self, seq_id: int) -> int:
        return self.held.get(seq_id, 0) - 1

    def seq_state_get(self, seq_id: int) -> bytes:
        return self.held.get(seq_id, 0).to_bytes(4, "little")

    def seq_state_set(self, data: bytes, seq_id: int) -> None:
        n = int.from_bytes(data, "little")
        if sum(self.held.values()) + n > self.capacity:
            raise ValueError("failed to find available cells in kv cache")
        self.held[seq_id] = n
