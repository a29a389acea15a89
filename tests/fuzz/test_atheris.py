"""The atheris targets, briefly, so that CI runs the coverage-guided fuzzer too (a few thousand
inputs each; ``nox -s fuzz`` runs them for minutes). A finding fails the test with libFuzzer's
report, which holds the input that broke it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Runs for each target here: enough to get past the seeds into mutations, within seconds.
RUNS = {"config": 3000, "issuer": 20000, "patch": 150}

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("target", sorted(RUNS))
def test_atheris_target_holds(target: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_targets", target, f"-runs={RUNS[target]}",
         # A fixed seed: CI explores the same inputs every run (a finding is reproducible, and
         # not a coin toss for whoever runs next); `nox -s fuzz` draws new ones.
         "-seed=1", "-max_total_time=20", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    runs = re.search(r"Done (\d+) runs", done.stderr)
    assert runs is not None and int(runs.group(1)) > 0, done.stderr[-2000:]
