"""`allama serve` with a memory probe, for benchmarks/soak.py.

    python benchmarks/soak_server.py --model M.gguf --port 8000 ...   # the same flags as allama serve

Each SIGUSR1 appends one JSON line to $SOAK_PROBE_FILE describing the process's memory
after a gc.collect(): VmRSS, glibc's malloc counters (mallinfo2: bytes in use and free in
the arenas, in mmap'd blocks), Python objects by type, threads and open files, and, when
$SOAK_TRACEMALLOC is a frame count, the total traced by tracemalloc and a snapshot dumped
beside the probe file (the soak script compares the first and the last). SIGUSR2 does the
same, then calls malloc_trim(0) and records VmRSS after it: memory that a trim gives back
was free in malloc's arenas (fragmentation), not held by anyone.

The server itself is unchanged; the handler runs on the main thread between bytecodes
(the event loop's thread), so the soak script sends the signal only while the server is idle.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import signal
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def vm_rss_kb(pid: int | str = "self", field: str = "VmRSS") -> int:
    """Resident set size (or another /proc/PID/status field) in KiB; 0 where there is none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Probe:
    """Writes one memory report per SIGUSR1."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marks = 0
        self.libc = _libc()

    def mallinfo(self) -> dict[str, int]:
        fn = getattr(self.libc, "mallinfo2", None)
        if fn is None:
            return {}
        fn.restype = _MallInfo2
        info = fn()
        # arena: bytes malloc took from the system by brk/arena mmap; uordblks: of those, in use;
        # fordblks: free in them; hblkhd: bytes in blocks mmap'd on their own (large allocations)
        return {"arena": info.arena, "in_use": info.uordblks, "free": info.fordblks, "mmap": info.hblkhd}

    def report(self, trim: bool) -> dict[str, Any]:
        gc.collect()
        self.marks += 1
        out: dict[str, Any] = {"mark": self.marks, "time": time.time(), "rss_kb": vm_rss_kb(),
                               "rss_anon_kb": vm_rss_kb(field="RssAnon"), "rss_file_kb": vm_rss_kb(field="RssFile"),
                               "malloc": self.mallinfo(), "threads": len(os.listdir("/proc/self/task")),
                               "fds": len(os.listdir("/proc/self/fd"))}
        objects = gc.get_objects()
        out["objects"] = len(objects)
        out["by_type"] = dict(Counter(type(o).__qualname__ for o in objects).most_common(200))
        del objects
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            out["traced"] = current
            out["tracemalloc_overhead"] = tracemalloc.get_tracemalloc_memory()
            snapshot = tracemalloc.take_snapshot()
            target = self.path.with_name(f"{self.path.stem}-{self.marks}.tracemalloc")
            snapshot.dump(str(target))
            out["snapshot"] = str(target)
            del snapshot
            gc.collect()
        if trim and self.libc is not None:
            self.libc.malloc_trim(0)
            out["rss_kb_after_trim"] = vm_rss_kb()
            out["malloc_after_trim"] = self.mallinfo()
        return out

    def on_signal(self, signum: int, frame: Any) -> None:
        try:
            line = json.dumps(self.report(trim=signum == signal.SIGUSR2))
        except Exception as exc:  # noqa: BLE001 - a probe must never take the server down
            line = json.dumps({"mark": self.marks, "error": repr(exc)})
        with open(self.path, "a") as f:
            f.write(line + "\n")


def main() -> int:
    frames = int(os.environ.get("SOAK_TRACEMALLOC", "0") or 0)
    if frames:
        tracemalloc.start(frames)
    probe_file = os.environ.get("SOAK_PROBE_FILE")
    if probe_file:
        probe = Probe(Path(probe_file))
        signal.signal(signal.SIGUSR1, probe.on_signal)
        signal.signal(signal.SIGUSR2, probe.on_signal)
    from allama.server.cli import main as serve

    return serve(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
