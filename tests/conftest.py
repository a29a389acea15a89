"""Fixtures shared by unit and e2e tests.

Tests never read or write the real HOME: ``~/.kube/config``, token caches and keyrings of the
person (or CI runner) running them stay untouched. HOME is a fresh directory for the whole run,
set here before any dexkit module is imported. Caches that belong to the machine rather than
to a user keep their real places: the built peers (``DEXKIT_CACHE_DIR``), Go's module and build
caches and its settings file, and pip's cache.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def _isolate_home() -> None:
    env = os.environ
    real = Path.home()
    cache = Path(env.get("XDG_CACHE_HOME") or real / ".cache")
    config = Path(env.get("XDG_CONFIG_HOME") or real / ".config")
    env.setdefault("DEXKIT_CACHE_DIR", str(cache / "dexkit"))
    env.setdefault("GOPATH", str(real / "go"))
    env.setdefault("GOCACHE", str(cache / "go-build"))
    env.setdefault("GOENV", str(config / "go" / "env"))
    env.setdefault("PIP_CACHE_DIR", str(cache / "pip"))
    env.pop("KUBECONFIG", None)
    home = tempfile.mkdtemp(prefix="dexkit-tests-home-")
    env["HOME"] = home
    atexit.register(shutil.rmtree, home, ignore_errors=True)


_isolate_home()

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Every hypothesis test (unit, property and fuzz) draws the same examples in a plain run, so a
# red CI points at a change and not at luck; DEXKIT_FUZZ_EXAMPLES (a long fuzz run, 'nox -s
# fuzz') draws new ones each time. Loaded here, before any test module builds its settings.
settings.register_profile("dexkit", derandomize=not os.environ.get("DEXKIT_FUZZ_EXAMPLES"))
settings.load_profile("dexkit")

from dexkit.__main__ import main  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def dexkit_on_path() -> Iterator[None]:
    """kubeconfigs written by 'dexkit kubeconfig' run 'dexkit' from PATH, as for a user who
    installed it: put this environment's scripts directory on PATH (nox does; a bare
    ``.venv/bin/pytest`` does not)."""
    scripts = str(Path(sys.executable).parent)
    before = os.environ.get("PATH", "")
    if scripts not in before.split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + before
    yield
    os.environ["PATH"] = before


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def dexkit(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run the real CLI in-process: ``dexkit("init", "--dir", d)`` -> Result."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str | os.PathLike[str]) -> Result:
        from dexkit.cli import app

        # The CLI registers the command it runs on the one Typer app (once per process in
        # real use): start each in-process run from an empty app, or every run gets slower.
        app.registered_groups[:], app.registered_commands[:] = [], []
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``directory`` with its bytes and mode: to prove nothing changed."""
    if not directory.exists():
        return {}
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "project"
    yield path
