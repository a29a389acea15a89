"""The README's promise as assertions, shared by the regression and the fuzz tests.

Every user mistake ends in exactly one ``error:`` line and one ``hint:`` line, exit 2 (usage)
or 1 (failure), never a traceback, never "report it as a bug"; a failed command changes no
file; secrets never print.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from dexkit.__main__ import main


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run(*args: str | os.PathLike[str]) -> Result:
    """The real CLI in this process, without pytest fixtures (usable inside hypothesis)."""
    out, err = io.StringIO(), io.StringIO()
    old = {k: os.environ.get(k) for k in ("NO_COLOR", "COLUMNS")}
    os.environ.update(NO_COLOR="1", COLUMNS="200")
    from dexkit.cli import app

    # The CLI registers the command it runs on the one Typer app; a process runs it once, a
    # fuzz run thousands of times (after every other test that ran the CLI in this process):
    # start each run from an empty app and put it back after, or each run gets slower.
    registered = (list(app.registered_groups), list(app.registered_commands))
    app.registered_groups[:], app.registered_commands[:] = [], []
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        app.registered_groups[:], app.registered_commands[:] = registered
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return Result(code, out.getvalue(), err.getvalue())


def snapshot(directory: Path) -> dict[str, tuple[bytes, int] | str]:
    """Every entry below ``directory``: files with bytes and mode, links with their target,
    directories with their mode. Equal snapshots mean nothing changed."""
    if not directory.exists():
        return {}
    found: dict[str, tuple[bytes, int] | str] = {}
    for path in sorted(directory.rglob("*")):
        name = str(path.relative_to(directory))
        if path.is_symlink():
            found[name] = f"-> {path.readlink()}"
        elif path.is_dir():
            found[name] = f"dir {path.stat().st_mode & 0o7777:o}"
        else:
            found[name] = (path.read_bytes(), path.stat().st_mode & 0o7777)
    return found


def assert_clean_failure(result: Result, *, code: int | None = None,
                         secrets: tuple[str, ...] = ()) -> None:
    """Exit 1 or 2 (or ``code``), one error line, one hint line, no traceback, no secret."""
    where = f"exit {result.code}\nstdout: {result.out!r}\nstderr: {result.err!r}"
    assert result.code in ((code,) if code is not None else (1, 2)), where
    lines = result.err.splitlines()
    assert sum(line.startswith("error: ") for line in lines) == 1, where
    assert sum(line.startswith("hint: ") for line in lines) == 1, where
    hint = next(line for line in lines if line.startswith("hint: "))
    assert len(hint) > len("hint: ") + 3, where
    both = result.out + result.err
    assert "Traceback" not in both, where
    assert "report it as a bug" not in both, where  # a user's mistake is not dexkit's bug
    # console's words for an exception it did not expect
    assert not any(line.startswith("error: unexpected ") for line in lines), where
    for secret in secrets:
        assert secret not in both, f"secret {secret!r} printed\n{where}"


def assert_no_traceback(result: Result, *, secrets: tuple[str, ...] = ()) -> None:
    both = result.out + result.err
    assert "Traceback" not in both and "report it as a bug" not in both, both
    for secret in secrets:
        assert secret not in both, f"secret {secret!r} printed: {both!r}"
