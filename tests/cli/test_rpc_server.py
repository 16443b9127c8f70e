"""`allama rpc-server`: a worker that listens where it is told, says clearly when it cannot,
and ends at once on Ctrl-C (its native accept loop never returns to Python)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.rpc.workers import hosts, worker

from .running import allama


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        done = allama("rpc-server", "--port", taken.getsockname()[1], timeout=60)
    assert done.returncode == 1
    assert "allama rpc-server:" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_device_is_a_clear_error() -> None:
    done = allama("rpc-server", "--port", "1", "--device", "NoSuchGPU7", timeout=60)
    assert done.returncode == 1
    assert "NoSuchGPU7" in done.stderr and "Traceback" not in done.stderr


def test_listening_beyond_this_machine_warns_that_the_protocol_is_open() -> None:
    with socket.create_server(("0.0.0.0", 0)) as taken:
        done = allama("rpc-server", "--host", "0.0.0.0", "--port", taken.getsockname()[1], timeout=60)
    assert done.returncode == 1
    assert "private network" in done.stderr


def test_ctrl_c_ends_a_worker_at_once(tmp_path: Path) -> None:
    with hosts("loopback", 1) as (host,), worker(host, tmp_path) as w:
        w.process.send_signal(2)  # SIGINT, as Ctrl-C in its terminal
        assert w.process.wait(timeout=10) == -2
