"""Tokens/s against concurrency, one line per system, as a PNG (matplotlib, if installed)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

# label -> (concurrency levels, tokens/s, matplotlib line style)
Series = dict[str, tuple[Sequence[float], Sequence[float], str]]


def plot_throughput(series: Series, path: Path, xlabel: str, ylabel: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (xs, ys, style) in series.items():
        if xs:
            ax.plot(xs, ys, style, label=label)
    ax.set_xscale("log", base=2)
    ticks = sorted({x for xs, _, _ in series.values() for x in xs})
    ax.set_xticks(ticks, [str(x) for x in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}", file=sys.stderr)
