"""`MTMDChatHandler`: chat with images and audio for any model llama.cpp's mtmd supports.

Set it as the chat handler (`Llama(path, chat_handler=MTMDChatHandler(clip_model_path=...))`):
messages keep their OpenAI content parts; the media are read (see `media_parts`), the
conversation is rendered by the model's own chat template with a media marker where each
medium was, and the prompt is split by the projector into text and media, which the
engine batches beside other requests. Everything else (tools, response_format, streams,
reasoning) is the usual chat completion.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import anyio

from allama import _native
from allama.chat.media_parts import MAX_MEDIA_BYTES, MediaSource


class MTMDChatHandler:
    """A projector (mmproj GGUF) for the model, loaded at the first request that needs it.

    Prompts are rendered by the model's own chat template, unless a subclass names a
    `CHAT_FORMAT` (a Jinja template that places the media itself, as the presets in
    `multimodal_presets` do) and a `DEFAULT_SYSTEM_MESSAGE` for conversations without one.
    """

    CHAT_FORMAT: str | None = None
    DEFAULT_SYSTEM_MESSAGE: str | None = None

    def __init__(self, clip_model_path: str, *, verbose: bool = False, n_threads: int = 4, use_gpu: bool = False,
                 allow_http: bool = False, allow_files: bool = True, max_media_bytes: int = MAX_MEDIA_BYTES,
                 fetch_timeout: float = 10.0) -> None:
        if not os.path.exists(clip_model_path):
            raise ValueError(f"the projector file {clip_model_path!r} does not exist")
        self.clip_model_path = clip_model_path
        self.verbose = verbose
        self.n_threads = n_threads
        self.use_gpu = use_gpu
        self.source = MediaSource(allow_files=allow_files, allow_http=allow_http, max_bytes=max_media_bytes,
                                  timeout=fetch_timeout)
        self._contexts: list[tuple[Any, Any]] = []  # (model, its projector context)
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str | None, local_dir: str | os.PathLike[str] | None = None,
                        cache_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> "MTMDChatHandler":
        """This handler with the projector file of a Hugging Face Hub repo that the glob
        `filename` matches (downloaded as `Llama.from_pretrained` does; blocking)."""
        from allama.hub import download_model

        return cls(download_model(repo_id, filename, local_dir=local_dir, cache_dir=cache_dir), **kwargs)

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
        return await anyio.to_thread.run_sync(self._load, llama.model)

    async def bitmaps(self, llama: Any, media: list[bytes]) -> list[Any]:
        context = await self.media_context(llama)
        return [await anyio.to_thread.run_sync(context.bitmap_from_bytes, data) for data in media]

    def with_default_system(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`messages`, opened by DEFAULT_SYSTEM_MESSAGE when they have no system message."""
        if self.DEFAULT_SYSTEM_MESSAGE is None or any(m.get("role") == "system" for m in messages):
            return messages
        return [{"role": "system", "content": self.DEFAULT_SYSTEM_MESSAGE}, *messages]

    def formatter(self, llama: Any) -> Any:
        """The CHAT_FORMAT formatter for `llama` (None: the model's own)."""
        if self.CHAT_FORMAT is None:
            return None
        with self._lock:
            cached = getattr(self, "_formatter", None)
            if cached is None or cached[0] is not llama:
                cached = self._formatter = (llama, llama.template_formatter(self.CHAT_FORMAT, writes_special=False))
            return cached[1]
