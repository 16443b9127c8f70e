"""OpenAI media content parts read into bytes, and messages rewritten with media markers."""

from __future__ import annotations

import base64
import http.server
import threading

import pytest

from allama.chat.media_parts import MediaSource, extract_media

pytestmark = pytest.mark.anyio

MARK = "<__media__>"
PNG = b"\x89PNG\r\n\x1a\n-not-really-an-image"


def _data_url(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


def _image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


async def test_parts_become_text_with_markers_in_order():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "First: "}, _image(_data_url(b"one")),
                                     {"type": "text", "text": " second: "}, _image(_data_url(b"two"))]},
    ]
    rewritten, media = await extract_media(messages, MARK)
    assert rewritten[0] == messages[0]
    assert rewritten[1] == {"role": "user", "content": f"First: {MARK} second: {MARK}"}
    assert media == [b"one", b"two"]


async def test_local_files_as_paths_and_file_urls(tmp_path):
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    for url in (str(path), path.as_uri()):
        _, media = await extract_media([{"role": "user", "content": [_image(url)]}], MARK)
        assert media == [PNG]
    with pytest.raises(ValueError, match="local files is turned off"):
        await extract_media([{"role": "user", "content": [_image(str(path))]}], MARK, MediaSource(allow_files=False))
    with pytest.raises(ValueError, match="cannot read"):
        await extract_media([{"role": "user", "content": [_image(str(tmp_path / "missing.png"))]}], MARK)


async def test_input_audio():
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF....WAVE").decode(), "format": "wav"}}
    rewritten, media = await extract_media([{"role": "user", "content": [part]}], MARK)
    assert rewritten[0]["content"] == MARK and media == [b"RIFF....WAVE"]


@pytest.fixture
def http_url():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server interface
            body = PNG * (1000 if self.path == "/big.png" else 1)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_http_only_when_allowed_and_within_the_limit(http_url):
    message = [{"role": "user", "content": [_image(http_url + "/cat.png")]}]
    with pytest.raises(ValueError, match="http\\(s\\) URLs is turned off"):
        await extract_media(message, MARK)
    _, media = await extract_media(message, MARK, MediaSource(allow_http=True))
    assert media == [PNG]
    big = [{"role": "user", "content": [_image(http_url + "/big.png")]}]
    with pytest.raises(ValueError, match="larger than 1000 bytes"):
        await extract_media(big, MARK, MediaSource(allow_http=True, max_bytes=1000))


@pytest.mark.parametrize("part, message", [
    (_image("data:image/png;base64,***"), "not valid base64"),
    (_image("data:image/png,plain"), "must be base64"),
    (_image("ftp://example.com/x.png"), "unsupported media URL scheme"),
    ({"type": "image_url", "image_url": {}}, "needs image_url.url"),
    ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}}, "format must be"),
    ({"type": "input_audio", "input_audio": {"format": "wav"}}, "is empty"),
    ({"type": "video_url", "video_url": {"url": "x"}}, "unsupported content part type"),
])
async def test_bad_parts_raise_value_error(part, message):
    with pytest.raises(ValueError, match=message):
        await extract_media([{"role": "user", "content": [part]}], MARK)


async def test_data_over_the_limit_is_refused_before_decoding():
    with pytest.raises(ValueError, match="larger than 10 bytes"):
        await extract_media([{"role": "user", "content": [_image(_data_url(b"x" * 100))]}], MARK,
                            MediaSource(max_bytes=10))
