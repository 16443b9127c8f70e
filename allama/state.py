"""LlamaState: a saved token history and its KV memory, in memory or in a file.

A state of scope "sequence" holds one engine sequence's KV (a session's, or a
completion's for the prompt cache); one of scope "context" holds a whole private
context (the sync twin's eval/generate history). Files carry a checksum, so a
truncated or damaged file is refused with ValueError instead of being restored.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Literal

import anyio
import numpy as np

Scope = Literal["sequence", "context"]

_MAGIC = b"ALLAMAST"
_VERSION = 1
# magic, version, scope, seed, n_tokens, ids, score rows, score columns, KV bytes
_HEADER = struct.Struct("<8sIBQIIIIQ")
_DIGEST_SIZE = 16
_SCOPES: tuple[Scope, ...] = ("sequence", "context")


class LlamaState:
    """A token history and the KV memory that goes with it (llama-cpp-python's fields).

    `input_ids[:n_tokens]` are the tokens whose KV `llama_state` holds; `scores` are
    saved logits where the history keeps them (the sync twin's eval), else empty.
    """

    __slots__ = ("input_ids", "scores", "n_tokens", "llama_state", "llama_state_size", "seed", "scope")

    def __init__(self, input_ids: np.ndarray, scores: np.ndarray, n_tokens: int, llama_state: bytes,
                 llama_state_size: int, seed: int, scope: Scope = "sequence") -> None:
        if scope not in _SCOPES:
            raise ValueError(f"scope must be one of {_SCOPES}, not {scope!r}")
        self.input_ids = np.asarray(input_ids, dtype=np.intc)
        self.scores = np.asarray(scores, dtype=np.single)
        self.n_tokens = int(n_tokens)
        self.llama_state = bytes(llama_state)
        self.llama_state_size = int(llama_state_size)
        self.seed = int(seed)
        self.scope: Scope = scope
        if not 0 <= self.n_tokens <= len(self.input_ids):
            raise ValueError(f"n_tokens ({self.n_tokens}) must be within input_ids ({len(self.input_ids)} ids)")

    @classmethod
    def of_sequence(cls, tokens: list[int], kv: bytes, seed: int) -> "LlamaState":
        """The state of one engine sequence: its tokens and seq_state_get() bytes."""
        return cls(np.asarray(tokens, dtype=np.intc), np.zeros((0, 0), dtype=np.single), len(tokens), kv,
                   len(kv), seed)

    @property
    def tokens(self) -> list[int]:
        """The tokens whose KV this state holds."""
        return self.input_ids[: self.n_tokens].tolist()

    def __repr__(self) -> str:
        return f"LlamaState(scope={self.scope!r}, n_tokens={self.n_tokens}, llama_state_size={self.llama_state_size})"

    # --- bytes ---------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The state as one self-checking blob (see from_bytes)."""
        scores = np.ascontiguousarray(self.scores, dtype="<f4")
        if scores.ndim != 2:
            scores = scores.reshape(len(scores), -1) if scores.size else scores.reshape(0, 0)
        header = _HEADER.pack(_MAGIC, _VERSION, _SCOPES.index(self.scope), self.seed & 0xFFFFFFFFFFFFFFFF,
                              self.n_tokens, len(self.input_ids), scores.shape[0], scores.shape[1],
                              len(self.llama_state))
        body = b"".join((header, np.ascontiguousarray(self.input_ids, dtype="<i4").tobytes(), scores.tobytes(),
                         self.llama_state))
        return body + hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LlamaState":
        """Reads to_bytes() output; ValueError if it is not one, or truncated or damaged."""
        n_ids, rows, cols, kv_len = _read_header(data)
        expected = _HEADER.size + 4 * n_ids + 4 * rows * cols + kv_len + _DIGEST_SIZE
        if len(data) != expected:
            raise ValueError(f"the saved state is truncated or has trailing bytes ({len(data)} bytes, "
                             f"{expected} expected)")
        body, digest = data[:-_DIGEST_SIZE], data[-_DIGEST_SIZE:]
        if hashlib.blake2b(body, digest_size=_DIGEST_SIZE).digest() != digest:
            raise ValueError("the saved state is corrupt (checksum mismatch)")
        _, _, scope, seed, n_tokens, *_ = _HEADER.unpack_from(data)
        offset = _HEADER.size
        ids = np.frombuffer(data, dtype="<i4", count=n_ids, offset=offset).astype(np.intc)
        offset += 4 * n_ids
        scores = np.frombuffer(data, dtype="<f4", count=rows * cols, offset=offset).astype(np.single)
        offset += 4 * rows * cols
        kv = data[offset:offset + kv_len]
        if n_tokens > n_ids:
            raise ValueError("the saved state is corrupt (more tokens than ids)")
        return cls(ids, scores.reshape(rows, cols), n_tokens, kv, kv_len, seed, _SCOPES[scope])

    # --- files -----------------------------------------------------------------------

    async def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the state to `path` off the event loop (whole file or nothing: a temporary
        file is renamed into place)."""
        data = await anyio.to_thread.run_sync(self.to_bytes)
        target = anyio.Path(path)
        partial = target.with_name(f".{target.name}.{os.getpid()}.{id(self):x}.partial")
        try:
            async with await anyio.open_file(partial, "wb") as f:
                await f.write(data)
            await partial.replace(target)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await partial.unlink(missing_ok=True)
            raise

    @classmethod
    async def load(cls, path: str | os.PathLike[str]) -> "LlamaState":
        """Reads a state saved with save(); ValueError if the file is truncated or corrupt."""
        async with await anyio.open_file(path, "rb") as f:
            data = await f.read()
        try:
            return await anyio.to_thread.run_sync(cls.from_bytes, data)
        except ValueError as exc:
            raise ValueError(f"{os.fspath(path)}: {exc}") from None


def _read_header(data: bytes) -> tuple[int, int, int, int]:
    """(ids, score rows, score columns, KV bytes) from a saved state's header."""
    if len(data) < _HEADER.size:
        raise ValueError("the saved state is truncated (no complete header)")
    magic, version, scope, _, _, n_ids, rows, cols, kv_len = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a saved allama state (bad magic)")
    if version != _VERSION:
        raise ValueError(f"saved state version {version} is not supported (this allama reads {_VERSION})")
    if scope >= len(_SCOPES):
        raise ValueError("the saved state is corrupt (unknown scope)")
    return n_ids, rows, cols, kv_len
