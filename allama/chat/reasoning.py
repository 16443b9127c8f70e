"""Reasoning models: text between the thinking markers goes to `reasoning_content`.

Templates such as Qwen3's and DeepSeek-R1's either open `<think>` in the generation
prompt (the reply starts inside the thought) or let the model write it. Everything up
to `</think>` is reasoning; the rest is the answer.
"""

from __future__ import annotations

from allama.marker_prefix import held_suffix

OPEN, CLOSE = "<think>", "</think>"


def starts_in_thought(prompt: str) -> bool:
    """True when the rendered prompt leaves a thought open for the reply."""
    return prompt.rfind(OPEN) > prompt.rfind(CLOSE)


def split_reasoning(text: str, in_thought: bool) -> tuple[str | None, str]:
    """(reasoning or None, content) for a whole reply."""
    splitter = ReasoningSplitter(in_thought)
    parts = splitter.feed(text) + splitter.flush()
    reasoning = "".join(t for field, t in parts if field == "reasoning_content")
    content = "".join(t for field, t in parts if field == "content")
    return (reasoning.strip() if splitter.saw_thought else None), (content.lstrip() if splitter.saw_thought else content)


class ReasoningSplitter:
    """Routes streamed text to ('reasoning_content' | 'content', delta), holding back a
    partial marker until it is complete or ruled out."""

    def __init__(self, in_thought: bool) -> None:
        self.in_thought = in_thought
        self.saw_thought = in_thought
        self.at_start = True
        self._held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        buf = self._held + text
        self._held = ""
        out: list[tuple[str, str]] = []
        while buf:
            if not self.in_thought and self.at_start:
                stripped = buf.lstrip()
                if OPEN.startswith(stripped) and len(stripped) < len(OPEN):
                    self._held = buf  # maybe the start of <think>
                    return out
                if stripped.startswith(OPEN):
                    self.in_thought = self.saw_thought = True
                    buf = stripped[len(OPEN):]
                    self.at_start = False
                    continue
            self.at_start = False
            marker = CLOSE if self.in_thought else None
            field = "reasoning_content" if self.in_thought else "content"
            if marker is None:
                out.append((field, buf))
                break
            i = buf.find(marker)
            if i != -1:
                if i:
                    out.append((field, buf[:i]))
                self.in_thought = False
                buf = buf[i + len(marker):]
                continue
            hold = held_suffix(buf, (marker,))
            if len(buf) > hold:
                out.append((field, buf[:len(buf) - hold]))
            self._held = buf[len(buf) - hold:] if hold else ""
            break
        return [(f, t) for f, t in out if t]

    def flush(self) -> list[tuple[str, str]]:
        held, self._held = self._held, ""
        if not held:
            return []
        return [("reasoning_content" if self.in_thought else "content", held)]
