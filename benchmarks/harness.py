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


def time_interleaved(commands: dict[str, Sequence[str | Path]], runs: int, warmup: int = 3,
                     env: dict[str, str] | None = None) -> list[Timing]:
    """Run every command once per round, round after round: commands compared side by side
    see the same machine load. All runs must succeed."""
    run_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(-warmup, runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            result = subprocess.run([str(a) for a in argv], env=run_env, capture_output=True,
                                    check=False, stdin=subprocess.DEVNULL)
            elapsed = (time.perf_counter() - start) * 1000
            if result.returncode != 0:
                raise RuntimeError(f"{name} failed: {result.stderr.decode()[-500:]}")
            if i >= 0:
                samples[name].append(elapsed)
    return [Timing(name, runs, statistics.median(s), min(s), max(s))
            for name, s in samples.items()]


def paired_ratio(first: Callable[[int], Sequence[str | Path]],
                 second: Callable[[int], Sequence[str | Path]], runs: int,
                 cwd: Path | None = None) -> tuple[float, float, float]:
    """Median of per-pair ratios first/second (each pair run back to back), and the two
    medians in ms."""
    env = {**os.environ, "NO_COLOR": "1"}
    ratios, a_ms, b_ms = [], [], []
    for i in range(runs):
        times = []
        for make in (first, second):
            start = time.perf_counter()
            result = subprocess.run([str(x) for x in make(i)], cwd=cwd, env=env,
                                    capture_output=True, check=False)
            times.append((time.perf_counter() - start) * 1000)
            if result.returncode != 0:
                raise RuntimeError(f"failed: {result.stderr.decode()[-500:]}")
        a_ms.append(times[0])
        b_ms.append(times[1])
        ratios.append(times[0] / times[1])
    return statistics.median(ratios), statistics.median(a_ms), statistics.median(b_ms)
