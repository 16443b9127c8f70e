"""A progress bar on stderr for the commands: tqdm's when it is installed, else one line
redrawn in place (a line per update where stderr is not a terminal would flood logs, so
there only the finished line is written)."""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any


class Progress:
    """`total` steps of `unit`; update(n) advances, close() ends the line. A context manager."""

    def __init__(self, total: float, desc: str, unit: str = "it", counts: bool = True) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.done: float = 0
        self._start = time.monotonic()
        self._drawn = 0.0
        self._closed = False
        self._counts = counts  # False: only the percentage (a model loading)
        self._bar: Any = None
        try:
            from tqdm import tqdm
        except ImportError:
            self._tty = sys.stderr.isatty()
        else:
            bar_format = None if counts else "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}]"
            width = shutil.get_terminal_size().columns  # 80 where the terminal reports no size
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True, ncols=width,
                             bar_format=bar_format)

    def update(self, n: float = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if self._tty and (now - self._drawn > 0.1 or self.done >= self.total):
            self._drawn = now
            self._draw("\r")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        else:
            self._draw("\r" if self._tty else "", end="\n")

    def _draw(self, start: str, end: str = "") -> None:
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        width = 24
        filled = int(fraction * width)
        elapsed = time.monotonic() - self._start
        counts = f" {self.done:g}/{self.total:g} {self.unit}" if self._counts else ""
        line = f"{self.desc}: {fraction:4.0%} |{'#' * filled}{' ' * (width - filled)}|{counts} [{elapsed:.1f}s]"
        sys.stderr.write(start + line + end)
        sys.stderr.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
