"""Two `allama serve` replicas behind HAProxy, run with the shipped deploy/haproxy/allama.cfg as
it is (its addresses come from the environment), all on 127.0.0.1: the balancer waits for the
replicas' /health, every one of 64 mixed concurrent requests succeeds and both replicas share
them, and the requests of one conversation (one X-Prompt-Cache-Key) all reach one replica,
whose prefix-cache counter rises.

Which replica answered is read from the replicas' own /metrics (requests finished, prefix
cache hits) around requests sent one at a time. Needs the `haproxy` binary (Debian's package);
without it the test skips, unless ALLAMA_REQUIRE_HAPROXY=1 (CI), where that is a failure."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ..paths import REPO_ROOT
from .balancer import haproxy_binary

HAPROXY_CONFIG = REPO_ROOT / "deploy" / "haproxy" / "allama.cfg"
KEY_HEADER = "X-Prompt-Cache-Key"
MAX_TOKENS = 6


class Process:
    """A subprocess in its own process group, logging to a file; stop() ends the whole group."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env={**os.environ, **(env or {})}, start_new_session=True)

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Polls `ready` (connection errors count as not yet) until it holds; fails if this
        process exits first or it does not hold within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            try:
                if ready():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: not {what} (exit status {self.popen.poll()}):\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the group, SIGKILL after 10 s."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Replica(Process):
    def __init__(self, name: str, port: int, model: Path, log_dir: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(name, [sys.executable, "-m", "allama", "serve", "--model", str(model),
                                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "512",
                                "--n_parallel", "4", "--n_threads", "1", "--n_threads_batch", "1",
                                "--drain-timeout", "2"],
                         log_dir, env={"SKBUILD_EDITABLE_SKIP": "1"})

    def healthy(self) -> bool:
        return httpx.get(self.url + "/health", timeout=2).status_code == 200

    def counters(self) -> dict[str, float]:
        """The replica's metrics, each summed over its models' labels."""
        totals: dict[str, float] = {}
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.split("{")[0].split(" ")[0], line.rsplit(" ", 1)[1]
                totals[name] = totals.get(name, 0.0) + float(value)
        return totals


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (all bound at once, so none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def servers_up(stats_url: str) -> set[str]:
    """The replicas HAProxy's health checks have found ready (from its CSV status page)."""
    text = httpx.get(stats_url + "/stats;csv", timeout=2).text.lstrip("# ")
    return {row["svname"] for row in csv.DictReader(text.splitlines())
            if row["pxname"] == "least_connections" and row["svname"] != "BACKEND" and row["status"] == "UP"}


@pytest.fixture(scope="module")
def cluster(llama_f32_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Replica]]]:
    """(the balancer's URL, the two replicas), all stopped after the module. The balancer starts
    first, as in a deployment where replicas come and go: it sends them nothing until their
    /health says they are ready."""
    haproxy = haproxy_binary()
    log_dir = tmp_path_factory.mktemp("replicas")
    processes: list[Process] = []
    try:
        ports = free_ports(4)
        base, stats = (f"http://127.0.0.1:{port}" for port in ports[:2])
        balancer = Process("haproxy", [haproxy, "-db", "-f", str(HAPROXY_CONFIG)], log_dir, env={
            "ALLAMA_LISTEN": f"127.0.0.1:{ports[0]}", "ALLAMA_STATS": f"127.0.0.1:{ports[1]}",
            "ALLAMA_REPLICA_1": f"127.0.0.1:{ports[2]}", "ALLAMA_REPLICA_2": f"127.0.0.1:{ports[3]}"})
        processes.append(balancer)
        replicas = [Replica(f"replica{i}", port, llama_f32_path, log_dir) for i, port in enumerate(ports[2:], 1)]
        processes += replicas
        for replica in replicas:
            replica.wait_until(replica.healthy, "healthy")
        balancer.wait_until(lambda: servers_up(stats) == {"replica1", "replica2"}, "routing to both replicas")
        assert httpx.get(base + "/health").json() == {"status": "ok"}
        yield base, replicas
    finally:
        for process in processes:
            process.stop()
        assert all(p.popen.poll() is not None for p in processes), "a process outlived its stop()"


def request_for(number: int) -> tuple[str, dict, dict[str, str]]:
    """The number-th of the mixed requests: (path, body, headers). Completions and chats, streamed
    and not; half carry one of four conversations' keys (as the header, some in the body too)."""
    stream = number % 4 >= 2
    if number % 2:
        path, body = "/v1/chat/completions", {"messages": [{"role": "user", "content": f"Tell me about {number}."}]}
    else:
        path, body = "/v1/completions", {"prompt": f"Request {number}: once upon a time"}
    body |= {"max_tokens": MAX_TOKENS, "ignore_eos": True, "temperature": 0.0, "stream": stream}
    headers = {}
    if number % 8 < 4:
        key = f"conversation-{number % 4}"
        headers[KEY_HEADER] = key
        if number % 16 < 8:
            body["prompt_cache_key"] = key
    return path, body, headers


async def send(client: httpx.AsyncClient, base: str, number: int) -> str | None:
    """Sends one request; None when it succeeded in full, else what went wrong."""
    path, body, headers = request_for(number)
    try:
        if not body["stream"]:
            response = await client.post(base + path, json=body, headers=headers)
            if response.status_code != 200:
                return f"{number}: HTTP {response.status_code} {response.text[:200]}"
            tokens = response.json()["usage"]["completion_tokens"]
            return None if tokens == MAX_TOKENS else f"{number}: {tokens} tokens"
        chunks, done = 0, False
        async with client.stream("POST", base + path, json=body, headers=headers) as response:
            if response.status_code != 200:
                return f"{number}: HTTP {response.status_code} {(await response.aread())[:200]!r}"
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    if "error" in event:
                        return f"{number}: error event {event['error']}"
                    chunks += bool(event["choices"])
        return None if done and chunks >= MAX_TOKENS else f"{number}: {chunks} chunks, [DONE] {done}"
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return f"{number}: {type(exc).__name__}: {exc}"


async def send_all(base: str, count: int) -> list[str | None]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(send(client, base, n) for n in range(count)))


def test_64_mixed_concurrent_requests_all_succeed_and_both_replicas_serve(cluster):
    base, replicas = cluster
    before = [r.counters()["allama_requests_finished_total"] for r in replicas]
    failures = [f for f in asyncio.run(send_all(base, 64)) if f is not None]
    assert not failures, failures
    served = [r.counters()["allama_requests_finished_total"] - b for r, b in zip(replicas, before)]
    assert sum(served) == 64 and min(served) > 0, served


def test_a_conversations_requests_reach_one_replica_whose_prefix_cache_serves_them(cluster):
    base, replicas = cluster
    homes: dict[str, set[int]] = {}
    with httpx.Client(timeout=60) as client:
        for conversation in range(6):
            key = f"chat-{conversation}"
            messages = [{"role": "user", "content": f"Conversation {conversation}: let us talk about the sea."}]
            for turn in range(3):
                before = [r.counters() for r in replicas]
                response = client.post(base + "/v1/chat/completions", headers={KEY_HEADER: key}, json={
                    "messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0.0, "ignore_eos": True})
                assert response.status_code == 200, response.text
                after = [r.counters() for r in replicas]
                finished = [a["allama_requests_finished_total"] - b["allama_requests_finished_total"]
                            for a, b in zip(after, before)]
                assert sorted(finished) == [0, 1], finished  # one replica served it
                home = finished.index(1)
                homes.setdefault(key, set()).add(home)
                if turn:  # the earlier turns' prompt is this one's prefix, cached where they ran
                    hits = (after[home]["allama_prefix_cache_hit_tokens_total"]
                            - before[home]["allama_prefix_cache_hit_tokens_total"])
                    assert hits > 0, (key, turn)
                messages += [response.json()["choices"][0]["message"],
                             {"role": "user", "content": f"And then, turn {turn + 1}?"}]
    assert all(len(h) == 1 for h in homes.values()), homes
    assert len(set().union(*homes.values())) == 2, homes  # the keys are spread over both replicas
