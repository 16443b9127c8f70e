"""LlamaSession: a conversation that owns one engine sequence and keeps its KV between turns.

Each turn takes the whole prompt (or the whole chat), as llama-cpp-python's single
context does; only what follows the longest prefix the session already holds is
evaluated. Turns run through the engine beside other requests. A cancelled turn
leaves the session holding the KV of exactly the tokens it had evaluated.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from allama.engine import process_hooks
from allama.engine.session_slot import SessionSlot
from allama.errors import EngineClosedError
from allama.session_turn import continuing
from allama.state import LlamaState
from allama.stream import AsyncStream

if TYPE_CHECKING:
    from allama.llama import Llama


class LlamaSession:
    """A conversation with its own sequence; get one with `llm.session()`.

    `create_completion` / `create_chat_completion` take Llama's parameters; `save_state()`
    / `load_state()` move the history in and out; `aclose()` (or leaving `async with`)
    frees the sequence. One turn at a time.
    """

    def __init__(self, llm: "Llama") -> None:
        self._llm = llm
        self._slot: SessionSlot | None = None
        self._open_lock: anyio.Lock | None = None
        self._busy = False
        self._closed = False
        self.seed: int = llm.seed  # the seed of turns that pass none; load_state() sets it

    # --- lifecycle ---------------------------------------------------------------------

    async def _opened(self) -> SessionSlot:
        if self._closed:
            raise EngineClosedError("the session is closed")
        if self._slot is None:
            if self._open_lock is None:
                self._open_lock = anyio.Lock()
            async with self._open_lock:
                if self._slot is None:
                    self._slot = await self._llm.engine.open_session()
        return self._slot

    async def aclose(self) -> None:
        """Ends a running turn, if any, and frees the session's sequence."""
        if self._closed:
            return
        self._closed = True
        slot, self._slot = self._slot, None
        if slot is not None:
            try:
                await self._llm.engine.close_session(slot)
            except EngineClosedError:  # the model is closed, and its sequences with it
                pass

    async def __aenter__(self) -> "LlamaSession":
        await self._opened()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __del__(self, _exit_started: threading.Event = process_hooks.exit_started) -> None:
        # A session dropped without aclose() gives its sequence back at the next step (at exit
        # the engine is stopped already: nothing to give back).
        slot, llm = self._slot, getattr(self, "_llm", None)
        if slot is not None and not self._closed and llm is not None and not _exit_started.is_set():
            try:
                llm.engine.close_session_soon(slot)
            except EngineClosedError:  # the model is closed, and its sequences with it
                pass

    # --- history -----------------------------------------------------------------------

    @property
    def tokens(self) -> list[int]:
        """The tokens the session holds KV for (as of its last finished turn)."""
        return list(self._slot.tokens) if self._slot is not None else []

    @property
    def n_tokens(self) -> int:
        return len(self._slot.tokens) if self._slot is not None else 0

    async def save_state(self) -> LlamaState:
        """The session's tokens and the KV of its sequence."""
        slot = await self._opened()
        self._check_idle()
        return await self._llm.engine.save_session(slot, self.seed)

    async def load_state(self, state: LlamaState) -> None:
        """Makes a saved state the session's history (its seed becomes the session's too).
        ValueError if the state is not one sequence's or does not fit this model."""
        if not isinstance(state, LlamaState):
            raise TypeError(f"load_state takes a LlamaState, not {type(state).__name__}")
        if state.scope != "sequence":
            raise ValueError("this state holds a whole private context (the sync API's eval history), "
                             "not one sequence: load it with the sync Llama's load_state")
        if state.n_tokens > self._llm.n_ctx():
            raise ValueError(f"the state holds {state.n_tokens} tokens, more than n_ctx={self._llm.n_ctx()}")
        slot = await self._opened()
        self._check_idle()
        await self._llm.engine.load_session(slot, state)
        self.seed = state.seed

    def _check_idle(self) -> None:
        if self._busy:
            raise RuntimeError("this session is running a turn: finish (or close) it first")

    # --- turns -------------------------------------------------------------------------

    async def create_completion(self, prompt: Any, **kwargs: Any) -> Any:
        """As Llama.create_completion, continuing this session: `prompt` is the whole text so far
        (one prompt, n=1); only what follows the part the session holds is evaluated."""
        return await self._turn(self._llm.create_completion, prompt, kwargs)

    async def create_chat_completion(self, messages: Any, **kwargs: Any) -> Any:
        """As Llama.create_chat_completion, continuing this session: `messages` is the whole
        conversation; only the rendered tokens after the part the session holds are evaluated."""
        return await self._turn(self._llm.create_chat_completion, messages, kwargs)

    async def _turn(self, method: Any, first: Any, kwargs: dict[str, Any]) -> Any:
        slot = await self._opened()
        self._check_idle()
        if kwargs.get("seed") is None:
            kwargs["seed"] = self.seed
        self._busy = True
        try:
            with continuing(slot):
                result = await method(first, **kwargs)
        except BaseException:
            self._busy = False
            raise
        if isinstance(result, AsyncStream):
            return AsyncStream(self._streamed(result), on_abandon=lambda: self._abandon(result))
        self._busy = False
        return result

    async def _streamed(self, stream: AsyncStream[Any]) -> AsyncIterator[Any]:
        try:
            async with stream:
                async for chunk in stream:
                    yield chunk
        finally:
            self._busy = False

    def _abandon(self, stream: AsyncStream[Any]) -> None:
        stream.abandon()
        self._busy = False
