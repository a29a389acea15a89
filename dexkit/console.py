"""The only place that prints.

Data goes to stdout (tables, JSON, rendered manifests), chatter to stderr (progress, what was
written, warnings, errors). Colour only on a TTY and never with ``NO_COLOR``; every dynamic string
is escaped before Rich sees it, so a host name such as ``[red]`` prints as itself.
:func:`fail` is the single path from an exception to an exit code.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dexkit.errors import DexkitError


def _make(stream: Any) -> Console:
    plain = bool(os.environ.get("NO_COLOR")) or not stream.isatty()
    return Console(
        file=stream,
        no_color=plain,
        color_system=None if plain else "auto",
        highlight=False,
        soft_wrap=True,
        emoji=False,
    )


class Output:
    """Stdout for data, stderr for chatter; created per command so tests can capture both."""

    def __init__(self, *, debug: bool = False) -> None:
        self.out = _make(sys.stdout)
        self.err = _make(sys.stderr)
        self.debug = debug

    # chatter ---------------------------------------------------------------------------------
    def info(self, text: str) -> None:
        self.err.print(escape(text))

    def step(self, verb: str, what: str) -> None:
        """One line per thing done: ``created  ssl/ca.pem``."""
        self.err.print(f"[bold]{escape(verb):<10}[/bold] {escape(what)}")

    def success(self, text: str) -> None:
        self.err.print(f"[green]{escape(text)}[/green]")

    def warn(self, text: str, hint: str = "") -> None:
        self.err.print(f"[yellow]warning:[/yellow] {escape(text)}")
        if hint:
            self.err.print(f"[dim]hint:[/dim] {escape(hint)}")

    def next_step(self, text: str) -> None:
        self.err.print(f"[bold]next:[/bold] {escape(text)}")

    # data ------------------------------------------------------------------------------------
    def data(self, text: str) -> None:
        """Raw text on stdout, exactly as given (manifests, flags, diffs)."""
        sys.stdout.write(text)
        sys.stdout.flush()

    def json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
        sys.stdout.flush()

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[str]], title: str = ""
    ) -> None:
        table = Table(title=escape(title) if title else None, show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(escape(column))
        for row in rows:
            table.add_row(*(escape(str(cell)) for cell in row))
        self.out.print(table)

    def fields(self, pairs: Mapping[str, str], title: str = "") -> None:
        """A two-column key/value listing on stdout."""
        if title:
            self.out.print(f"[bold]{escape(title)}[/bold]")
        width = max((len(k) for k in pairs), default=0)
        for key, value in pairs.items():
            self.out.print(f"  {escape(key):<{width}}  {escape(value)}")

    # errors ----------------------------------------------------------------------------------
    def fail(self, error: BaseException) -> NoReturn:
        """Print ``error: …`` and ``hint: …`` and exit with the error's code."""
        if isinstance(error, DexkitError):
            code, message, hint = error.exit_code, error.message, error.hint
        elif isinstance(error, OSError):
            code, message = 1, _describe_os_error(error)
            hint = "check the path and its permissions"
        else:
            code, message = 1, f"unexpected {type(error).__name__}: {error}"
            hint = "re-run with --debug for the traceback and report it as a bug"
        if self.debug:
            self.err.print_exception(show_locals=False)
        self.err.print(f"[red bold]error:[/red bold] {escape(message)}")
        if hint:
            self.err.print(f"[dim]hint:[/dim] {escape(hint)}")
        raise SystemExit(code)


def _describe_os_error(error: OSError) -> str:
    what = error.strerror or str(error)
    return f"{what}: {error.filename}" if error.filename else what
