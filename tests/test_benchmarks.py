"""Every benchmark script runs at tiny scale (a smoke test, not a timing)."""

from __future__ import annotations

import subprocess
import sys

from .deploy.balancer import haproxy_binary
from .paths import REPO_ROOT


def test_concurrency_benchmark_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "concurrency.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| 1 |" in run.stdout and "| 2 |" in run.stdout
    assert "per generated token" in run.stdout


def test_embeddings_benchmark_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "embeddings.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| 1 |" in run.stdout and "| 4 |" in run.stdout


def test_speculative_benchmark_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "speculative.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| prompt-lookup |" in run.stdout and "| oracle |" in run.stdout


def test_kv_memory_benchmark_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "kv_memory.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| allama |" in run.stdout and "KV cache MiB" in run.stdout


def test_overhead_benchmark_smoke(tmp_path):
    plot = tmp_path / "overhead.png"
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "overhead.py"), "--smoke", "--plot", str(plot),
                          "--json", str(tmp_path / "runs.json")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| 1 |" in run.stdout and "| 4 |" in run.stdout
    assert "run 1 allama-server" in run.stderr  # the server was measured too
    assert plot.stat().st_size > 0 and (tmp_path / "runs.json").stat().st_size > 0


def test_rpc_split_benchmark_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "rpc_split.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| local | 1 |" in run.stdout and "| 2 workers | 2 |" in run.stdout


def test_replicas_benchmark_smoke(tmp_path):
    haproxy_binary()
    run = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "replicas.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| 1 | 2 |" in run.stdout and "| 2 | 1 |" in run.stdout  # replicas, threads each
    assert "2 replicas / 1 replica" in run.stdout
