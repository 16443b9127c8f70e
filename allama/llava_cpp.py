"""llama-cpp-python's `llava_cpp` vision functions, over llama.cpp's mtmd.

llama.cpp no longer ships libllava; these keep its C names and argument order for code
written against them, with Python types: handles are objects (using one after it was
freed raises ValueError), image embeddings are NumPy arrays, and `n_past` is returned
rather than written through a pointer (a ctypes `c_int` or `byref` of one is updated too).

A projector is read once it knows its text model: `llava_validate_embed_size(ctx, clip)`
(the check llava programs make right after loading both) binds it to the context's model,
as does `clip_model_load(path, verbosity, model=...)`. Images whose projector splits them
into slices (LLaVA 1.6, MiniCPM-V) give their slices' embeddings in mtmd's order; use
`MTMDChatHandler` for those families' prompt layouts.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np

from allama import _native

log = logging.getLogger("allama.llava_cpp")


class ClipContext:
    """A projector file (mmproj GGUF), loaded for the text model it is bound to."""

    def __init__(self, path: str, has_vision: bool, has_audio: bool) -> None:
        self.path = path
        self.has_vision = has_vision
        self.has_audio = has_audio
        self._media: Any = None
        self._model: Any = None
        self._freed = False
        self._lock = threading.Lock()

    def bind(self, model: Any) -> Any:
        """The projector loaded for `model` (a `_native.Model`); loads it the first time."""
        self._check()
        with self._lock:
            if self._media is None:
                self._media = _native.MediaContext(model, self.path)
                self._model = model
            elif self._model.handle != model.handle:
                raise ValueError("this clip context is bound to another model; load the projector again for this one")
            return self._media

    def media(self) -> Any:
        self._check()
        if self._media is None:
            raise ValueError("the clip context is not bound to a text model yet: call "
                             "llava_validate_embed_size(ctx_llama, ctx_clip) or clip_model_load(..., model=...) first")
        return self._media

    def _check(self) -> None:
        if self._freed:
            raise ValueError("the clip context was freed")

    def free(self) -> None:
        self._check()
        self._freed = True
        self._media = self._model = None

    def __repr__(self) -> str:
        return f"<ClipContext {self.path!r}{' freed' if self._freed else ''}>"


class LlavaImageEmbed:
    """An image's embeddings (`embed`, n_image_pos x n_embd float32) and where they go."""

    def __init__(self, clip: ClipContext, chunks: Any, index: int, embed: np.ndarray) -> None:
        self.clip = clip
        self._chunks = chunks
        self._index = index
        self._embed: np.ndarray | None = embed
        self.n_image_pos = int(embed.shape[0])

    @property
    def embed(self) -> np.ndarray:
        if self._embed is None:
            raise ValueError("the image embed was freed")
        return self._embed

    def free(self) -> None:
        self.embed  # noqa: B018 - raises if already freed
        self._embed = self._chunks = None


def clip_model_load(fname: bytes | str | os.PathLike[str], verbosity: int = 0, *, model: Any = None) -> ClipContext:
    """Opens a projector file; ValueError when it is missing or not a projector.
    `model` (a Llama, Context or Model) binds it to that text model at once."""
    path = os.fsdecode(fname)
    if not os.path.exists(path):
        raise ValueError(f"the projector file {path!r} does not exist")
    has_vision, has_audio = _native.projector_capabilities(path)
    if not has_vision:
        raise ValueError(f"{path} has no vision encoder")
    clip = ClipContext(path, has_vision, has_audio)
    if model is not None:
        clip.bind(_model_of(model))
    return clip


def clip_free(ctx: ClipContext) -> None:
    _expect(ctx, ClipContext, "ctx").free()


def llava_validate_embed_size(ctx_llama: Any, ctx_clip: Any) -> bool:
    """Whether the projector's embeddings fit the text model. Also takes two widths
    (n_embd, n_image_embd). With a context, binds the projector to its model."""
    if isinstance(ctx_llama, int) and isinstance(ctx_clip, int):
        return ctx_llama == ctx_clip
    clip = _expect(ctx_clip, ClipContext, "ctx_clip")
    try:
        media = clip.bind(_model_of(ctx_llama))
    except ValueError as exc:
        if "freed" in str(exc) or "another model" in str(exc):
            raise
        log.warning("the projector does not fit the model: %s", exc)
        return False
    return media.n_embd == _model_of(ctx_llama).n_embd_inp


def llava_image_embed_make_with_bytes(ctx_clip: ClipContext, n_threads: int, image_bytes: bytes | bytearray | Any,
                                      image_bytes_length: int) -> LlavaImageEmbed:
    """Embeds an encoded image (JPEG, PNG, BMP, GIF, ...): its first `image_bytes_length` bytes."""
    data = bytes(image_bytes)
    if not 0 < image_bytes_length <= len(data):
        raise ValueError(f"image_bytes_length must be between 1 and {len(data)}")
    clip = _expect(ctx_clip, ClipContext, "ctx_clip")
    media = clip.media()
    return _embed(clip, media, media.bitmap_from_bytes(data[:image_bytes_length]))


def llava_image_embed_make_with_filename(ctx_clip: ClipContext, n_threads: int,
                                         image_path: bytes | str | os.PathLike[str]) -> LlavaImageEmbed:
    """Embeds an image file."""
    path = os.fsdecode(image_path)
    if not os.path.isfile(path):
        raise ValueError(f"the image file {path!r} does not exist")
    clip = _expect(ctx_clip, ClipContext, "ctx_clip")
    media = clip.media()
    return _embed(clip, media, media.bitmap_from_file(path))


def llava_image_embed_free(embed: LlavaImageEmbed) -> None:
    _expect(embed, LlavaImageEmbed, "embed").free()


def llava_eval_image_embed(ctx_llama: Any, embed: LlavaImageEmbed, n_batch: int, n_past: Any) -> int:
    """Decodes the image into sequence 0 of `ctx_llama` (a `_native.Context`) from position
    `n_past`; returns the position after it (and updates a ctypes `n_past` in place)."""
    if not isinstance(ctx_llama, _native.Context):
        raise TypeError("ctx_llama must be a context (allama._native.Context)")
    embed = _expect(embed, LlavaImageEmbed, "embed")
    cell = getattr(n_past, "_obj", n_past)  # ctypes.byref(c_int) or c_int
    start = int(cell.value if hasattr(cell, "value") else cell)
    media = embed.clip.media()
    new_n_past = int(media.decode_media_embeddings(ctx_llama, embed._chunks, embed._index, embed.embed, start, 0,
                                                   n_batch))
    if hasattr(cell, "value"):
        cell.value = new_n_past
    return new_n_past


def _embed(clip: ClipContext, media: Any, bitmap: Any) -> LlavaImageEmbed:
    chunks = media.tokenize(media.marker, [bitmap], False, True)
    index = next(i for i in range(len(chunks)) if chunks[i].type != "text")
    return LlavaImageEmbed(clip, chunks, index, media.encode_media_chunk(chunks, index))


def _model_of(obj: Any) -> Any:
    """The `_native.Model` behind a Llama (async or sync), a Context or a Model."""
    if isinstance(obj, _native.Model):
        return obj
    if isinstance(obj, _native.Context):
        return obj.model
    inner = getattr(obj, "async_llama", obj)
    model = getattr(inner, "_model", None)
    if isinstance(model, _native.Model):
        return model
    raise TypeError(f"expected a Llama, a context or a model, not {type(obj).__name__}")


def _expect(obj: Any, kind: type, name: str) -> Any:
    if not isinstance(obj, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, not {type(obj).__name__}")
    return obj


__all__ = [
    "ClipContext",
    "LlavaImageEmbed",
    "clip_free",
    "clip_model_load",
    "llava_eval_image_embed",
    "llava_image_embed_free",
    "llava_image_embed_make_with_bytes",
    "llava_image_embed_make_with_filename",
    "llava_validate_embed_size",
]
