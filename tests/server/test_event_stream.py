"""encode_event: one SSE event per chunk, whatever characters the model's text holds."""

from __future__ import annotations

import json

from httpx._decoders import LineDecoder

from allama.server.event_stream import encode_event


def test_line_separators_in_text_stay_inside_their_event():
    text = "a\u2028b\x85c\u2029d\r\ne"
    event = encode_event({"choices": [{"text": text}]})
    lines = LineDecoder().decode(event.decode())  # httpx's iter_lines: str.splitlines' line ends
    assert lines[0].startswith("data: ") and lines[1:] == [""]
    assert json.loads(lines[0][len("data: "):])["choices"][0]["text"] == text


def test_other_text_is_sent_as_utf8_and_a_lone_surrogate_escaped():
    assert encode_event({"t": "é€"}) == 'data: {"t":"é€"}\n\n'.encode()
    assert encode_event({"t": "\ud800"}) == b'data: {"t":"\\ud800"}\n\n'
