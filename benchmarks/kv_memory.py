"""Memory taken by loading a model with the same arguments: allama vs llama-cpp-python.

Each system runs in a fresh subprocess: load `--model` with `n_ctx`, `n_batch`, threads and
flash attention as given (allama also with `--n-parallel`, its other settings default), run one
short completion, and report the process's resident memory (VmRSS, VmHWM) and the KV cache and
compute buffer sizes llama.cpp logs while creating the context. The weights are memory-mapped
by both, so RSS differences come from the KV cache, the compute buffers and the Python side.

    python benchmarks/kv_memory.py --model gemma-3-270m-q4_k_m.gguf --n-ctx 8192 --n-parallel 8
    python benchmarks/kv_memory.py --smoke     # seconds: the tiny test model, CI smoke test

Prints a markdown table (system, KV MiB, compute MiB, RSS MiB, peak RSS MiB, ratio to
llama-cpp-python) and exits 1 if allama's KV cache is over 1.1x the peer's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS_BIN = ROOT / "build" / "peers" / "bin"
KV_TARGET = 1.1

# One system's run, executed with `python -c`: prints a JSON line.
_CHILD = r"""
import json, logging, sys
args = json.loads(sys.argv[1])
log_lines = []

def status():
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields

common = dict(n_ctx=args["n_ctx"], n_batch=args["n_batch"], n_threads=args["threads"],
              n_threads_batch=args["threads"], flash_attn=args["flash_attn"])
if args["system"] == "allama":
    class Collect(logging.Handler):
        def emit(self, record):
            log_lines.append(record.getMessage())
    native = logging.getLogger("allama.native")
    native.addHandler(Collect())
    native.setLevel(logging.DEBUG)
    from allama.sync import Llama
    llm = Llama(args["model"], n_parallel=args["n_parallel"], verbose=True, **common)
    logging.getLogger("allama.native").setLevel(logging.WARNING)
else:
    import llama_cpp
    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):
        log_lines.append(text.decode("utf-8", "replace"))
    llama_cpp.llama_log_set(collect, None)
    from llama_cpp import Llama
    llm = Llama(args["model"], verbose=True, **common)
llm.create_completion("The memory of a model", max_tokens=8, temperature=0.0)
print(json.dumps({"log": "".join(l if l.endswith("\n") else l + "\n" for l in log_lines), **status()}))
"""


def run_system(system: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, SKBUILD_EDITABLE_SKIP="1")
    if PEERS_BIN.joinpath("libllama.so").exists():
        env.setdefault("LLAMA_CPP_LIB_PATH", str(PEERS_BIN))
    spec = {"system": system, "model": args.model, "n_ctx": args.n_ctx, "n_batch": args.n_batch,
            "threads": args.threads, "flash_attn": args.flash_attn, "n_parallel": args.n_parallel}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True,
                          env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    log = result.pop("log")
    result["kv_mib"] = sum(float(m) for m in re.findall(r"llama_kv_cache: size =\s*([\d.]+) MiB", log))
    result["compute_mib"] = sum(float(m) for m in re.findall(r"compute buffer size =\s*([\d.]+) MiB", log))
    return result


def peer_available() -> bool:
    env = dict(os.environ)
    if PEERS_BIN.joinpath("libllama.so").exists():
        env.setdefault("LLAMA_CPP_LIB_PATH", str(PEERS_BIN))
    return subprocess.run([sys.executable, "-c", "import llama_cpp"], env=env, capture_output=True).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a GGUF file (default with --smoke: a tiny random llama)")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--n-parallel", type=int, default=8, help="allama's concurrent sequences")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--flash-attn", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny model, allama alone unless the peer is there")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            if not args.smoke:
                parser.error("--model is required (or --smoke)")
            from allama.testing.model_builder import LlamaConfig, build_llama

            args.model = str(build_llama(Path(tmp) / "tiny.gguf", LlamaConfig())[0])
            args.n_ctx = min(args.n_ctx, 512)
        systems = ["allama"] + (["llama-cpp-python"] if peer_available() else [])
        if len(systems) == 1:
            print("llama-cpp-python unavailable: run benchmarks/build_peers.sh; measuring allama alone", file=sys.stderr)
        results = {s: run_system(s, args) for s in systems}
    print(f"model {Path(args.model).name}, n_ctx {args.n_ctx}, n_batch {args.n_batch}, "
          f"allama n_parallel {args.n_parallel}, {args.threads} thread(s), flash_attn {args.flash_attn}\n")
    print("| system | KV cache MiB | compute buffers MiB | RSS MiB | peak RSS MiB | KV vs peer | RSS vs peer |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    peer = results.get("llama-cpp-python")
    for system, r in results.items():
        kv_ratio = f"{r['kv_mib'] / peer['kv_mib']:.2f}x" if peer and peer["kv_mib"] else "-"
        rss_ratio = f"{r['VmRSS'] / peer['VmRSS']:.2f}x" if peer else "-"
        print(f"| {system} | {r['kv_mib']:.1f} | {r['compute_mib']:.1f} | {r['VmRSS']:.0f} | {r['VmHWM']:.0f} "
              f"| {kv_ratio} | {rss_ratio} |")
    if results["allama"]["kv_mib"] <= 0:
        print("no KV cache size in allama's llama.cpp log", file=sys.stderr)
        return 1
    if peer and results["allama"]["kv_mib"] > KV_TARGET * peer["kv_mib"]:
        print(f"allama's KV cache is over {KV_TARGET}x llama-cpp-python's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
