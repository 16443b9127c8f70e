"""Prompt caches: saved sequence states looked up by the longest common token prefix.

`llm.set_cache(cache)` makes every completion look for a cached state whose tokens
share a longer prefix with its prompt than anything the engine still holds; a hit
is restored into the sequence that serves the request, so only the rest of the
prompt is evaluated. After a completion, the state of prompt + completion is
stored. The interface is llama-cpp-python's (`cache[tokens]`, `tokens in cache`,
`cache[tokens] = state`, `cache_size`, `capacity_bytes`); least recently used
entries are evicted once the stored bytes exceed `capacity_bytes`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anyio
import numpy as np

from allama.state import LlamaState
from allama.token_prefix import common_prefix

log = logging.getLogger("allama.cache")

__all__ = ["BaseLlamaCache", "LlamaCache", "LlamaDiskCache", "LlamaRAMCache"]


def _best_key(keys: Iterable[tuple[int, ...]], tokens: Sequence[int]) -> tuple[tuple[int, ...] | None, int]:
    """The key sharing the longest prefix with `tokens` (ties: the first), and that length."""
    best, best_len = None, 0
    for key in keys:
        n = common_prefix(key, tokens)
        if n > best_len:
            best, best_len = key, n
    return best, best_len


class BaseLlamaCache(ABC):
    """A store of LlamaStates keyed by token sequences, looked up by longest common prefix."""

    def __init__(self, capacity_bytes: int = (2 << 30)) -> None:
        if capacity_bytes < 0:
            raise ValueError("capacity_bytes must be >= 0")
        self.capacity_bytes = capacity_bytes

    @property
    @abstractmethod
    def cache_size(self) -> int:
        """Bytes stored now."""

    @abstractmethod
    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        """The state whose key shares the longest prefix with `key`; KeyError if none shares any."""

    @abstractmethod
    def __contains__(self, key: Sequence[int]) -> bool:
        """Whether some key shares at least one token with `key`."""

    @abstractmethod
    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        """Stores `value` under `key`, then evicts least recently used entries beyond capacity."""

    @abstractmethod
    def _lookup(self, tokens: Sequence[int], longer_than: int) -> LlamaState | None:
        """The best state if it beats `longer_than` tokens of shared prefix, else None (blocking)."""

    async def lookup(self, tokens: Sequence[int], longer_than: int = 0) -> LlamaState | None:
        """The state to restore for a prompt: the one whose key shares the longest prefix with
        `tokens`, if that prefix (at most all but the last token, which must be evaluated) is
        longer than `longer_than`; else None. Never raises for a bad entry: it is dropped."""
        return self._lookup(tokens, longer_than)

    async def store(self, tokens: Sequence[int], state: LlamaState) -> None:
        """`cache[tokens] = state`, without blocking the event loop."""
        self[tokens] = state


def _useful(prefix: int, tokens: Sequence[int], longer_than: int) -> bool:
    return min(prefix, len(tokens) - 1) > longer_than


class LlamaRAMCache(BaseLlamaCache):
    """States kept in memory; `cache_size` counts their KV bytes."""

    def __init__(self, capacity_bytes: int = (2 << 30)) -> None:
        super().__init__(capacity_bytes)
        self.cache_state: OrderedDict[tuple[int, ...], LlamaState] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def cache_size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self.cache_state)

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        with self._lock:
            best, _ = _best_key(self.cache_state, tuple(key))
            if best is None:
                raise KeyError("no cached state shares a prefix with these tokens")
            self.cache_state.move_to_end(best)
            return self.cache_state[best]

    def __contains__(self, key: Sequence[int]) -> bool:
        with self._lock:
            return _best_key(self.cache_state, tuple(key))[0] is not None

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        if not isinstance(value, LlamaState):
            raise TypeError(f"a cache stores LlamaState objects, not {type(value).__name__}")
        key = tuple(int(t) for t in key)
        with self._lock:
            old = self.cache_state.pop(key, None)
            if old is not None:
                self._size -= old.llama_state_size
            self.cache_state[key] = value
            self._size += value.llama_state_size
            while self._size > self.capacity_bytes and self.cache_state:
                _, evicted = self.cache_state.popitem(last=False)
                self._size -= evicted.llama_state_size

    def _lookup(self, tokens: Sequence[int], longer_than: int) -> LlamaState | None:
        with self._lock:
            best, n = _best_key(self.cache_state, tokens)
            if best is None or not _useful(n, tokens, longer_than):
                return None
            self.cache_state.move_to_end(best)
            return self.cache_state[best]


LlamaCache = LlamaRAMCache  # llama-cpp-python's older name


# A disk entry: magic, key length, key ids (little-endian int32), then LlamaState.to_bytes().
_ENTRY_MAGIC = b"ALLAMAKY"
_ENTRY_HEADER = struct.Struct("<8sI")
_SUFFIX = ".allama-state"


@dataclass
class _DiskEntry:
    key: tuple[int, ...]
    size: int
    mtime: int  # ns; the LRU order (a hit touches the file)


class LlamaDiskCache(BaseLlamaCache):
    """States kept as files in `cache_dir`, one `*.allama-state` file each, shared by every
    instance (and process) that uses the directory; least recently used files go first.

    A file that is truncated or damaged is deleted with a warning when it is met and
    counts as a miss. Other files in the directory are never touched.
    """

    def __init__(self, cache_dir: str | os.PathLike[str] = ".cache/llama_cache",
                 capacity_bytes: int = (2 << 30)) -> None:
        super().__init__(capacity_bytes)
        self.cache_dir = os.fspath(cache_dir)
        os.makedirs(self.cache_dir, exist_ok=True)
        self._index: dict[str, _DiskEntry] = {}
        self._lock = threading.RLock()
        self._last_stamp = 0  # the newest mtime this instance gave a file
        self._scan()

    # --- the index of files ------------------------------------------------------------

    def _scan(self) -> None:
        """Brings the index up to date with the directory (files another instance wrote or removed)."""
        try:
            names = {e.name: e for e in os.scandir(self.cache_dir) if e.name.endswith(_SUFFIX) and e.is_file()}
        except FileNotFoundError:
            os.makedirs(self.cache_dir, exist_ok=True)
            names = {}
        for name in list(self._index):
            if name not in names:
                del self._index[name]
        for name, entry in names.items():
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            known = self._index.get(name)
            if known is not None and known.size == st.st_size:
                known.mtime = st.st_mtime_ns
                continue
            try:
                key = self._read_key(entry.path)
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                self._drop(name, exc)
                continue
            self._index[name] = _DiskEntry(key, st.st_size, st.st_mtime_ns)

    @staticmethod
    def _read_key(path: str) -> tuple[int, ...]:
        with open(path, "rb") as f:
            head = f.read(_ENTRY_HEADER.size)
            if len(head) < _ENTRY_HEADER.size:
                raise ValueError("truncated (no complete header)")
            magic, n = _ENTRY_HEADER.unpack(head)
            if magic != _ENTRY_MAGIC:
                raise ValueError("not an allama cache entry (bad magic)")
            ids = f.read(4 * n)
            if len(ids) != 4 * n:
                raise ValueError("truncated (key cut short)")
        return tuple(np.frombuffer(ids, dtype="<i4").tolist())

    def _drop(self, name: str, reason: BaseException) -> None:
        log.warning("dropping cache file %s: %s", os.path.join(self.cache_dir, name), reason)
        self._index.pop(name, None)
        try:
            os.unlink(os.path.join(self.cache_dir, name))
        except OSError:
            pass

    @staticmethod
    def _name(key: tuple[int, ...]) -> str:
        digest = hashlib.blake2b(np.asarray(key, dtype="<i4").tobytes(), digest_size=20).hexdigest()
        return digest + _SUFFIX

    # --- reading and writing -------------------------------------------------------------

    def _read(self, name: str, key: tuple[int, ...]) -> LlamaState:
        with open(os.path.join(self.cache_dir, name), "rb") as f:
            data = f.read()
        head = _ENTRY_HEADER.size + 4 * len(key)
        if len(data) < head or _ENTRY_HEADER.unpack_from(data) != (_ENTRY_MAGIC, len(key)):
            raise ValueError("truncated or not an allama cache entry")
        return LlamaState.from_bytes(data[head:])

    def _best_state(self, tokens: Sequence[int], longer_than: int | None) -> LlamaState | None:
        """The best readable state (dropping bad files on the way), or None."""
        with self._lock:
            self._scan()
            while True:
                by_key = {e.key: name for name, e in self._index.items()}
                best, n = _best_key(by_key, tokens)
                if best is None or (longer_than is not None and not _useful(n, tokens, longer_than)):
                    return None
                name = by_key[best]
                try:
                    state = self._read(name, best)
                except FileNotFoundError:
                    self._index.pop(name, None)
                    continue
                except (OSError, ValueError) as exc:
                    self._drop(name, exc)
                    continue
                self._touch(name)
                return state

    def _touch(self, name: str) -> None:
        """Marks the file most recently used: an mtime later than any this instance gave
        (file systems keep coarse clocks, so two uses in a row could otherwise tie)."""
        stamp = max(time.time_ns(), self._last_stamp + 1, *(e.mtime + 1 for e in self._index.values()))
        try:
            os.utime(os.path.join(self.cache_dir, name), ns=(stamp, stamp))
        except OSError:
            return
        self._last_stamp = stamp
        self._index[name].mtime = stamp

    def _write(self, key: tuple[int, ...], value: LlamaState) -> None:
        name = self._name(key)
        path = os.path.join(self.cache_dir, name)
        partial = f"{path}.{os.getpid()}.{threading.get_ident():x}.partial"
        data = value.to_bytes()
        try:
            with open(partial, "wb") as f:
                f.write(_ENTRY_HEADER.pack(_ENTRY_MAGIC, len(key)))
                f.write(np.asarray(key, dtype="<i4").tobytes())
                f.write(data)
            os.replace(partial, path)
        except BaseException:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise
        self._index[name] = _DiskEntry(key, os.stat(path).st_size, 0)
        self._touch(name)

    def _evict(self) -> None:
        total = sum(e.size for e in self._index.values())
        for name, entry in sorted(self._index.items(), key=lambda item: item[1].mtime):
            if total <= self.capacity_bytes:
                break
            try:
                os.unlink(os.path.join(self.cache_dir, name))
            except FileNotFoundError:
                pass
            total -= entry.size
            del self._index[name]

    # --- llama-cpp-python's interface (blocking) -----------------------------------------

    @property
    def cache_size(self) -> int:
        with self._lock:
            self._scan()
            return sum(e.size for e in self._index.values())

    def __len__(self) -> int:
        with self._lock:
            self._scan()
            return len(self._index)

    def __getitem__(self, key: Sequence[int]) -> LlamaState:
        state = self._best_state(tuple(key), None)
        if state is None:
            raise KeyError("no cached state shares a prefix with these tokens")
        return state

    def __contains__(self, key: Sequence[int]) -> bool:
        with self._lock:
            self._scan()
            return _best_key((e.key for e in self._index.values()), tuple(key))[0] is not None

    def __setitem__(self, key: Sequence[int], value: LlamaState) -> None:
        if not isinstance(value, LlamaState):
            raise TypeError(f"a cache stores LlamaState objects, not {type(value).__name__}")
        key = tuple(int(t) for t in key)
        with self._lock:
            self._scan()
            self._write(key, value)
            self._evict()

    # --- the engine's side (off the event loop) ------------------------------------------

    def _lookup(self, tokens: Sequence[int], longer_than: int) -> LlamaState | None:
        try:
            return self._best_state(tokens, longer_than)
        except OSError as exc:
            log.warning("prompt cache lookup in %s failed: %s", self.cache_dir, exc)
            return None

    def _store(self, tokens: Sequence[int], state: LlamaState) -> None:
        try:
            self[tokens] = state
        except OSError as exc:
            log.warning("prompt cache store in %s failed: %s", self.cache_dir, exc)

    async def lookup(self, tokens: Sequence[int], longer_than: int = 0) -> LlamaState | None:
        return await anyio.to_thread.run_sync(self._lookup, list(tokens), longer_than)

    async def store(self, tokens: Sequence[int], state: LlamaState) -> None:
        await anyio.to_thread.run_sync(self._store, list(tokens), state)
