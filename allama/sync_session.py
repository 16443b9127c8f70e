"""allama.sync.LlamaSession: the blocking twin of allama.LlamaSession."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from allama.session import LlamaSession as AsyncLlamaSession
from allama.state import LlamaState
from allama.twin_signature import twin_of

if TYPE_CHECKING:
    from allama.sync import Llama


class LlamaSession:
    """The blocking twin of allama.LlamaSession: one conversation, its KV kept between turns."""

    def __init__(self, owner: Llama) -> None:
        self._owner = owner
        self._session: AsyncLlamaSession = owner.async_llama.session()

    @property
    def tokens(self) -> list[int]:
        return self._session.tokens

    @property
    def n_tokens(self) -> int:
        return self._session.n_tokens

    @twin_of(AsyncLlamaSession.create_completion)
    def create_completion(self, *args: Any, **kwargs: Any) -> Any:
        """As allama.LlamaSession.create_completion; with stream=True, a generator of chunks."""
        return self._owner._call_or_stream(self._session.create_completion, args, kwargs)

    @twin_of(AsyncLlamaSession.create_chat_completion)
    def create_chat_completion(self, *args: Any, **kwargs: Any) -> Any:
        """As allama.LlamaSession.create_chat_completion; with stream=True, a generator of chunks."""
        return self._owner._call_or_stream(self._session.create_chat_completion, args, kwargs)

    def save_state(self) -> LlamaState:
        return self._owner._portal.call(self._session.save_state)

    def load_state(self, state: LlamaState) -> None:
        self._owner._portal.call(self._session.load_state, state)

    def close(self) -> None:
        """Frees the session's sequence."""
        if not self._owner._portal.closed:
            self._owner._portal.call(self._session.aclose)

    def __enter__(self) -> "LlamaSession":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
