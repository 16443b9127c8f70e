"""OpenAI content parts with media (`image_url`, `input_audio`) read into bytes, and the
messages rewritten as text with a media marker where each medium goes: how multimodal
chat prompts reach the model's own template and then mtmd.

Sources: `data:` URIs (base64), local files (a path or a `file://` URL) when
`allow_files`, and http(s) URLs only when `allow_http` (off by default; a size limit and
a timeout apply). Anything else is a ValueError.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

MAX_MEDIA_BYTES = 20 << 20


@dataclass(frozen=True)
class MediaSource:
    """Where a medium comes from, and what it may be read with."""

    allow_files: bool = True
    allow_http: bool = False
    max_bytes: int = MAX_MEDIA_BYTES
    timeout: float = 10.0


async def extract_media(messages: Sequence[dict[str, Any]], marker: str,
                        source: MediaSource = MediaSource()) -> tuple[list[dict[str, Any]], list[bytes]]:
    """(messages whose content is text, with `marker` where each medium was; the media's
    bytes in order). Text parts are joined as they stand."""
    marked, media = await mark_media(messages, marker, source)
    out = []
    for message in marked:
        content = message.get("content")
        if isinstance(content, list):
            message = {**message, "content": "".join(
                part["text"] if part["type"] == "text" else marker for part in content)}
        out.append(message)
    return out, media


async def mark_media(messages: Sequence[dict[str, Any]], marker: str,
                     source: MediaSource = MediaSource()) -> tuple[list[dict[str, Any]], list[bytes]]:
    """(messages with their content parts kept, each medium's URL or data replaced by
    `marker`; the media's bytes in order): for templates that place media themselves."""
    out: list[dict[str, Any]] = []
    media: list[bytes] = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(dict(message))
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                if not isinstance(url, str) or not url:
                    raise ValueError("an image_url part needs image_url.url")
                media.append(await read_url(url, source))
                parts.append({"type": "image_url", "image_url": {"url": marker}})
            elif kind == "input_audio":
                audio = part.get("input_audio") or {}
                if audio.get("format") not in ("wav", "mp3"):
                    raise ValueError("input_audio.format must be 'wav' or 'mp3'")
                media.append(_base64(audio.get("data"), source.max_bytes, "input_audio.data"))
                parts.append({"type": "input_audio", "input_audio": {"data": marker, "format": audio["format"]}})
            else:
                raise ValueError(f"unsupported content part type {kind!r}")
        out.append({**message, "content": parts})
    return out, media


async def read_url(url: str, source: MediaSource) -> bytes:
    """The bytes a `data:`, file or http(s) URL names, under `source`'s rules."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "data":
        header, comma, payload = url.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ValueError("a data: URL must be base64 (data:<type>;base64,<data>)")
        return _base64(payload, source.max_bytes, "the data: URL")
    if scheme in ("http", "https"):
        if not source.allow_http:
            raise ValueError("fetching media from http(s) URLs is turned off")
        return await anyio.to_thread.run_sync(_fetch, url, source.max_bytes, source.timeout)
    if scheme in ("file", ""):
        if not source.allow_files:
            raise ValueError("reading media from local files is turned off")
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path) if scheme == "file" else url)
        try:
            size = (await anyio.Path(path).stat()).st_size
            if size > source.max_bytes:
                raise ValueError(f"{path} is larger than {source.max_bytes} bytes")
            return await anyio.Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    raise ValueError(f"unsupported media URL scheme {scheme!r}")


def _base64(data: Any, max_bytes: int, what: str) -> bytes:
    if not isinstance(data, str) or not data:
        raise ValueError(f"{what} is empty")
    if len(data) > (max_bytes * 4) // 3 + 4:
        raise ValueError(f"{what} is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


def _fetch(url: str, max_bytes: int, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked above
            data = response.read(max_bytes + 1)
    except OSError as exc:
        raise ValueError(f"cannot fetch {url}: {exc}") from exc
    if len(data) > max_bytes:
        raise ValueError(f"{url} is larger than {max_bytes} bytes")
    return data
