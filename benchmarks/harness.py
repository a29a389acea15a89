"""Timing whole commands: repeated runs, median and spread, side by side in one run."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Timing:
    name: str
    runs: int
    median_ms: float
    min_ms: float
    max_ms: float


def time_command(name: str, make_argv: Callable[[int], Sequence[str | Path]], runs: int,
                 warmup: int = 1, cwd: Path | None = None) -> Timing:
    """Run ``make_argv(i)`` ``runs`` times after ``warmup`` untimed runs; all must succeed."""
    env = {**os.environ, "NO_COLOR": "1"}
    samples: list[float] = []
    for i in range(-warmup, runs):
        argv = [str(a) for a in make_argv(i + warmup)]
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
        elapsed = (time.perf_counter() - start) * 1000
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed: {result.stderr.decode()[-500:]}")
        if i >= 0:
            samples.append(elapsed)
    return Timing(name, runs, statistics.median(samples), min(samples), max(samples))


def table(rows: Sequence[Timing], baseline: str | None = None) -> str:
    base = next((r.median_ms for r in rows if r.name == baseline), None)
    head = "| command | runs | median ms | min ms | max ms |" + (" vs baseline |" if base else "")
    sep = "|---|---:|---:|---:|---:|" + ("---:|" if base else "")
    lines = [head, sep]
    for r in rows:
        ratio = f" {r.median_ms / base:.2f}x |" if base else ""
        lines.append(f"| {r.name} | {r.runs} | {r.median_ms:.1f} | {r.min_ms:.1f} | "
                     f"{r.max_ms:.1f} |{ratio}")
    return "\n".join(lines)
