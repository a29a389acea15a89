"""Run every benchmark section side by side and write BENCHMARKS.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path

from benchmarks import (
    bench_deploy,
    bench_init,
    bench_kind,
    bench_node,
    bench_sandbox,
    bench_token,
)
from tests.machine import MachineLock

SECTIONS = {
    "init": bench_init.run,
    "token": bench_token.run,
    "sandbox": bench_sandbox.run,
    "deploy": bench_deploy.run,
    "node": bench_node.run,
    "kind": bench_kind.run,
}
OUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
# Sections that take the machine (a node sandbox's bridge and iptables rules, a container
# engine): they hold the e2e suite's machine lock exclusively, as the e2e modules that do the
# same, so that a test run and a benchmark never meet. The others hold it shared.
MACHINE_SECTIONS = ("node", "kind")


def main(argv: list[str]) -> None:
    chosen = argv or list(SECTIONS)
    parts = []
    for name in chosen:
        lock = MachineLock()
        lock.take(exclusive=name in MACHINE_SECTIONS, why=f"the {name} benchmark")
        try:
            text, _ = SECTIONS[name]()
        finally:
            lock.release()
        print(text + "\n", flush=True)
        parts.append(text)
    header = (
        "# Benchmarks\n\nWritten by `nox -s bench` on "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d}: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. Every figure is the median of repeated runs of the "
        "whole command (process start included), measured side by side in one run.\n\n"
    )
    if chosen == list(SECTIONS):
        OUT.write_text(header + "\n\n".join(parts) + "\n")
    else:
        print(f"(a subset was run: {OUT.name} is written only by a full run)")


if __name__ == "__main__":
    main(sys.argv[1:])
