"""RPC workers (`allama rpc-server` subprocesses) for the tests, on one of two kinds of host:
"loopback" (127.0.0.1, any machine), or "netns": each worker in a network namespace of its own,
joined to this one by a veth link with addresses of its own, as separate hosts on a network
would be (root and `ip netns` needed; skipped with the reason where that is refused)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENV = {**os.environ, "SKBUILD_EDITABLE_SKIP": "1", "PYTHONUNBUFFERED": "1"}
HOST_KINDS = ["loopback", "netns"]


@dataclass
class Host:
    """A place a worker can run: the address it listens on, and how to run a command there."""

    address: str
    run_prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", NAME]
    link: str | None = None  # this namespace's end of the veth link, for its byte counters

    def bytes_sent_to(self) -> int:
        """Bytes this namespace has sent over the link to the host (0 on loopback)."""
        if self.link is None:
            return 0
        return int(Path(f"/sys/class/net/{self.link}/statistics/tx_bytes").read_text())


@dataclass
class Worker:
    host: Host
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def endpoint(self) -> str:
        return f"{self.host.address}:{self.port}"

    def kill(self) -> None:
        """SIGKILL, as a crash or an out-of-memory kill would end it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    """A port free on this host (a namespace of its own has every port free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_made_hosts = 0


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@contextmanager
def hosts(kind: str, count: int) -> Iterator[list[Host]]:
    """`count` hosts of `kind` for workers; namespaces and links are removed afterwards."""
    if kind == "loopback":
        yield [Host("127.0.0.1") for _ in range(count)]
        return
    if shutil.which("ip") is None:
        pytest.skip("network namespaces need iproute2's `ip` (apt-get install iproute2)")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    global _made_hosts
    _made_hosts += 1
    tag = f"{os.getpid() % 10000}x{_made_hosts % 100}"  # unique while the kernel removes old ones
    made: list[tuple[str, str]] = []
    try:
        out = []
        for i in range(count):
            ns, near, far = f"allama-{tag}-{i}", f"alh{tag}{i}", f"aln{tag}{i}"
            subnet = f"10.{200 + i}.{_made_hosts % 250}"
            added = _ip("netns", "add", ns)
            if added.returncode != 0:
                pytest.skip(f"cannot create a network namespace here: {added.stderr.strip()}")
            made.append((ns, near))
            for step in (["link", "add", near, "type", "veth", "peer", "name", far],
                         ["link", "set", far, "netns", ns],
                         ["addr", "add", f"{subnet}.1/24", "dev", near],
                         ["link", "set", near, "up"],
                         ["-n", ns, "addr", "add", f"{subnet}.2/24", "dev", far],
                         ["-n", ns, "link", "set", far, "up"],
                         ["-n", ns, "link", "set", "lo", "up"]):
                done = _ip(*step)
                if done.returncode != 0:
                    pytest.skip(f"cannot link a network namespace here (ip {' '.join(step)}): {done.stderr.strip()}")
            out.append(Host(f"{subnet}.2", ["ip", "netns", "exec", ns], link=near))
        yield out
    finally:
        for ns, near in made:
            _ip("link", "del", near)  # at once: the namespace's end would go only when the kernel gets to it
            _ip("netns", "del", ns)


@contextmanager
def worker(host: Host, log_dir: Path, port: int | None = None, threads: int = 1,
           cache: Path | None = None) -> Iterator[Worker]:
    """An `allama rpc-server` on `host` (keeping received weights in `cache` when given), ready
    (accepting connections) when the block starts; its output goes to a file in `log_dir`."""
    port = port or free_port()
    cache_args = ["--cache", str(cache)] if cache is not None else []
    log = log_dir / f"rpc-worker-{host.address}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*host.run_prefix, sys.executable, "-m", "allama", "rpc-server", "--host", host.address,
             "--port", str(port), "--threads", str(threads), *cache_args],
            stdout=out, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    started = Worker(host, port, process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the RPC worker exited: {started.output()}")
            try:
                with socket.create_connection((host.address, port), timeout=1):
                    break  # it accepts; closing at once leaves it free for the next client
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the RPC worker on {started.endpoint} did not start") from None
                time.sleep(0.1)
        yield started
    finally:
        started.kill()
