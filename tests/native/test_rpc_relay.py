"""Loading a model over RPC checks each worker before ggml's RPC client (which aborts the
process on a failed connection) ever sees it: a bad endpoint is a ValueError, and a worker
that cannot be reached, does not answer, is not an RPC worker, or speaks another protocol
version is a ModelLoadError that says which and why. Run in fresh interpreters (isolated.py)."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .isolated import run_isolated

LOAD = """
from allama import _native
p = _native.ModelParams(); p.n_gpu_layers = -1; p.rpc_servers = {servers!r}; p.rpc_timeout = 0.5
_native.Model.load({model!r}, p)
"""


def load_over_rpc(model: Path, *servers: str):
    return run_isolated(LOAD.format(servers=list(servers), model=str(model)))


@contextmanager
def fake_worker(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server on loopback whose every connection is handed to `answer`; yields its endpoint."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()
        thread.join(timeout=5)


def hello_reply(major: int, minor: int, patch: int) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.recv(1 + 8 + 24)  # HELLO and its 24 bytes of transport capabilities
        conn.sendall(struct.pack("<Q", 28) + bytes([major, minor, patch, 0]) + bytes(24))
    return answer


@pytest.mark.parametrize(("endpoint", "fragment"), [
    ("localhost", "'host:port'"),
    (":50052", "'host:port'"),
    ("localhost:", "'host:port'"),
    ("localhost:0", "port must be 1-65535"),
    ("localhost:65536", "port must be 1-65535"),
    ("localhost:http", "port must be 1-65535"),
    ("localhost:-1", "port must be 1-65535"),
])
def test_a_malformed_endpoint_is_a_value_error(llama_f32_path: Path, endpoint: str, fragment: str) -> None:
    outcome = load_over_rpc(llama_f32_path, endpoint)
    assert outcome.type_name == "ValueError" and fragment in outcome.message, outcome


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_rpc_timeout_is_a_value_error(llama_f32_path: Path, timeout: float) -> None:
    outcome = run_isolated(LOAD.replace("p.rpc_timeout = 0.5", f"p.rpc_timeout = float({str(timeout)!r})").format(
        servers=["127.0.0.1:1"], model=str(llama_f32_path)))
    assert outcome.type_name == "ValueError" and "rpc_timeout" in outcome.message, outcome


def test_a_host_that_does_not_resolve_is_a_model_load_error(llama_f32_path: Path) -> None:
    outcome = load_over_rpc(llama_f32_path, "no-such-host.invalid:50052")
    assert outcome.is_a("ModelLoadError") and "no-such-host.invalid:50052" in outcome.message, outcome
    assert "resolve" in outcome.message


def test_a_worker_that_never_answers_is_a_model_load_error(llama_f32_path: Path) -> None:
    """As a busy worker does: it serves one client at a time, the next waits in its backlog."""
    with fake_worker(lambda conn: None) as endpoint:
        outcome = load_over_rpc(llama_f32_path, endpoint)
    assert outcome.is_a("ModelLoadError") and endpoint in outcome.message, outcome
    assert "no answer to the handshake" in outcome.message


@pytest.mark.parametrize("answer", [
    pytest.param(lambda conn: conn.close(), id="closes-at-once"),
    pytest.param(lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"), id="speaks-http"),
    pytest.param(lambda conn: conn.sendall(struct.pack("<Q", 4) + bytes(4)), id="short-reply"),
])
def test_a_server_that_is_not_an_rpc_worker_is_a_model_load_error(llama_f32_path: Path, answer) -> None:
    with fake_worker(answer) as endpoint:
        outcome = load_over_rpc(llama_f32_path, endpoint)
    assert outcome.is_a("ModelLoadError") and endpoint in outcome.message, outcome
    assert "handshake" in outcome.message


def test_a_worker_of_another_protocol_version_is_a_model_load_error(llama_f32_path: Path) -> None:
    with fake_worker(hello_reply(3, 0, 0)) as endpoint:
        outcome = load_over_rpc(llama_f32_path, endpoint)
    assert outcome.is_a("ModelLoadError") and endpoint in outcome.message, outcome
    assert "RPC protocol 3.0.0" in outcome.message

