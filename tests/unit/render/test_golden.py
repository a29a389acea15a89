"""The rendered bundles, byte for byte, against tests/golden/ (see its README to update them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.render.helpers import CASES, GOLDEN, render_case

UPDATE = os.environ.get("DEXKIT_UPDATE_GOLDEN") == "1"
HOW = "if the change is intended: DEXKIT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/render"


def _expected(case: str) -> dict[str, bytes]:
    root = GOLDEN / case / "expected"
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _write(case: str, bundle: dict[str, str]) -> None:
    root = GOLDEN / case / "expected"
    shutil.rmtree(root, ignore_errors=True)
    for relative, text in bundle.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())


@pytest.mark.parametrize("case", CASES)
def test_bundle_matches_golden_files(case: str) -> None:
    bundle = render_case(case)
    if UPDATE:
        _write(case, bundle)
    expected = _expected(case)
    assert sorted(bundle) == sorted(expected), f"files differ for {case}; {HOW}"
    for relative, text in bundle.items():
        assert text.encode() == expected[relative], f"{case}/{relative} differs; {HOW}"


@pytest.mark.parametrize("case", CASES)
def test_rendering_twice_gives_the_same_bytes(case: str) -> None:
    assert render_case(case) == render_case(case)


def test_rendering_does_not_depend_on_hash_seed_or_process(tmp_path: Path) -> None:
    """Another interpreter with another hash seed renders the same bytes: no set ordering."""
    script = ("import json, sys\n"
              "from tests.unit.render.helpers import CASES, render_case\n"
              "json.dump({c: render_case(c) for c in CASES}, sys.stdout, sort_keys=True)\n")
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True, env=env, cwd=Path(__file__).resolve().parents[3])
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]


def test_every_golden_case_has_an_input_and_output() -> None:
    for case in CASES:
        assert (GOLDEN / case / "dexkit.yaml").is_file()
        assert (GOLDEN / case / "expected").is_dir() or UPDATE
