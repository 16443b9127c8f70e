"""`MTMDChatHandler`: chat with images and audio for any model llama.cpp's mtmd supports.

Set it as the chat handler (`Llama(path, chat_handler=MTMDChatHandler(clip_model_path=...))`):
messages keep their OpenAI content parts; the media are read (see `media_parts`), the
conversation is rendered by the model's own chat template with a media marker where each
medium was, and the prompt is split by the projector into text and media, which the
engine batches beside other requests. Everything else (tools, response_format, streams,
reasoning) is the usual chat completion.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio

from allama import _native
from allama.chat.media_parts import MAX_MEDIA_BYTES, MediaSource


class MTMDChatHandler:
    """A projector (mmproj GGUF) for the model, loaded at the first request that needs it."""

    def __init__(self, clip_model_path: str, *, verbose: bool = False, n_threads: int = 4, use_gpu: bool = False,
                 allow_http: bool = False, allow_files: bool = True, max_media_bytes: int = MAX_MEDIA_BYTES,
                 fetch_timeout: float = 10.0) -> None:
        self.clip_model_path = clip_model_path
        self.verbose = verbose
        self.n_threads = n_threads
        self.use_gpu = use_gpu
        self.source = MediaSource(allow_files=allow_files, allow_http=allow_http, max_bytes=max_media_bytes,
                                  timeout=fetch_timeout)
        self._contexts: list[tuple[Any, Any]] = []  # (model, its projector context)
        self._lock = threading.Lock()

    def _load(self, model: Any) -> Any:
        with self._lock:
            for loaded, context in self._contexts:
                if loaded is model:
                    return context
            context = _native.MediaContext(model, self.clip_model_path, use_gpu=self.use_gpu,
                                           n_threads=self.n_threads)
            self._contexts.append((model, context))
            return context

    async def media_context(self, llama: Any) -> Any:
        """The projector loaded for `llama`'s model (off the event loop the first time)."""
        return await anyio.to_thread.run_sync(self._load, llama._model)

    async def bitmaps(self, llama: Any, media: list[bytes]) -> list[Any]:
        context = await self.media_context(llama)
        return [await anyio.to_thread.run_sync(context.bitmap_from_bytes, data) for data in media]
