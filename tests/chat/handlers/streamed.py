"""Reading a chat chunk stream back into (content, finish_reason)."""

from __future__ import annotations


async def streamed_message(stream) -> tuple[str, str | None]:
    chunks = [c async for c in stream]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return content, chunks[-1]["choices"][0]["finish_reason"]
