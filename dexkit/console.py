"""The only place that prints.

Data goes to stdout (tables, JSON, rendered manifests), chatter to stderr (progress, what was
written, warnings, errors). Colour only on a TTY and never with ``NO_COLOR``. Rich is imported
only when colour or a table is wanted: CI logs and pipes get plain text without paying Rich's
import time on every command. Dynamic text is escaped before Rich sees it, so a host name such as
``[red]`` prints as itself. :meth:`Output.fail` is the single path from an exception to an exit
code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn, Protocol

from dexkit import redact
from dexkit.errors import DexkitError

if TYPE_CHECKING:
    from rich.console import Console


class Reporter(Protocol):
    """What a use case may say while it works (:class:`Output` is one): the use case never
    prints, the command hands it its ``Output``."""

    def info(self, text: str) -> None: ...

    def step(self, verb: str, what: str, width: int = 10) -> None: ...

    def warn(self, text: str, hint: str = "") -> None: ...


def _wants_colour(stream: IO[str]) -> bool:
    return not os.environ.get("NO_COLOR") and stream.isatty()


class _Stream:
    """One output stream: plain writes, or a Rich console when colour is on."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.colour = _wants_colour(stream)
        self._rich: Console | None = None

    @property
    def rich(self) -> Console:
        if self._rich is None:
            # Heavy library, loaded when first printed to (rich.console ~30 ms, -X importtime).
            from rich.console import Console  # noqa: PLC0415

            self._rich = Console(file=self.stream, no_color=not self.colour, highlight=False,
                                 soft_wrap=True, emoji=False,
                                 color_system="auto" if self.colour else None)
        return self._rich

    def line(self, text: str, style: str = "", lead: str = "", lead_style: str = "") -> None:
        """``lead`` (styled) then ``text`` (styled), as one line."""
        lead, text = redact.line(lead), redact.line(text)
        if not self.colour:
            self.stream.write(f"{lead}{text}\n")
            self.stream.flush()
            return
        from rich.text import Text  # noqa: PLC0415

        out = Text()
        if lead:
            out.append(lead, style=lead_style or None)
        out.append(text, style=style or None)
        self.rich.print(out)


class Output:
    """Stdout for data, stderr for chatter; created per command so tests can capture both."""

    def __init__(self, *, debug: bool = False) -> None:
        self.out = _Stream(sys.stdout)
        self.err = _Stream(sys.stderr)
        self.debug = debug

    # chatter ---------------------------------------------------------------------------------
    def info(self, text: str) -> None:
        self.err.line(text)

    def step(self, verb: str, what: str, width: int = 10) -> None:
        """One line per thing done: ``created    ssl/ca.pem``."""
        self.err.line(what, lead=f"{verb:<{width}} ", lead_style="bold")

    @contextlib.contextmanager
    def progress(self, verb: str, title: str,
                 width: int = 10) -> Iterator[Callable[[int, int, str], None]]:
        """Live progress on stderr, updated with ``(done, total, text)``: a Rich bar on a
        terminal; elsewhere (CI logs, pipes) one plain step line each time ``text`` changes."""
        if not self.err.stream.isatty():
            last: list[str] = []

            def line(done: int, total: int, text: str) -> None:
                if not last or last[-1] != text:
                    last.append(text)
                    self.step(verb, f"{title}: {text}", width)
            yield line
            return
        # rich.progress ~37 ms: only commands that show progress pay it.
        from rich.markup import escape  # noqa: PLC0415
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column  # noqa: PLC0415

        # Title, bar and counts first, at their width; the status text takes what is left of
        # the line and is cut there (Rich shrinks every column of a non-expanding table).
        status = TextColumn("{task.fields[status]}",
                            table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"))
        with Progress(SpinnerColumn(), TextColumn("{task.description}",
                                                  table_column=Column(no_wrap=True)),
                      BarColumn(bar_width=20), MofNCompleteColumn(), TimeElapsedColumn(), status,
                      console=self.err.rich, expand=True) as bar:
            task = bar.add_task(escape(redact.line(f"{verb} {title}")), total=None, status="")

            def update(done: int, total: int, text: str) -> None:
                bar.update(task, completed=done, total=total, status=escape(redact.line(text)))
            yield update

    def success(self, text: str) -> None:
        self.err.line(text, style="green")

    def warn(self, text: str, hint: str = "") -> None:
        self.err.line(text, lead="warning: ", lead_style="yellow bold")
        if hint:
            self.err.line(hint, lead="hint: ", lead_style="dim")

    def next_step(self, text: str) -> None:
        self.err.line(text, lead="next: ", lead_style="bold")

    # data ------------------------------------------------------------------------------------
    def data(self, text: str) -> None:
        """Text on stdout as given (manifests, flags, diffs), but for the control characters a
        terminal would act on (no YAML or JSON holds them raw)."""
        sys.stdout.write(redact.controls(text))
        sys.stdout.flush()

    def json(self, value: Any) -> None:
        self.data(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")

    def yaml(self, value: Any) -> None:
        """The document ``json`` would print, as YAML (same keys, same order)."""
        # Only for -o yaml: PyYAML (~14 ms) is not on every command's path.
        import yaml  # noqa: PLC0415

        plain = json.loads(json.dumps(value, sort_keys=True, default=str))
        self.data(yaml.safe_dump(plain, sort_keys=True, allow_unicode=True, width=1000))

    def structured(self, format_: str, value: Any) -> None:
        """``value`` as ``-o json`` or ``-o yaml`` asked for it."""
        if str(format_) == "yaml":
            self.yaml(value)
        else:
            self.json(value)

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[str]],
              title: str = "") -> None:
        # rich.table ~26 ms: only commands that print a table pay it.
        from rich.markup import escape  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        def cell(value: object) -> str:
            return escape(redact.line(str(value)))

        table = Table(title=cell(title) if title else None, show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(cell(column))
        for row in rows:
            table.add_row(*(cell(value) for value in row))
        self.out.rich.print(table)

    def fields(self, pairs: Mapping[str, str], title: str = "") -> None:
        """A two-column key/value listing on stdout."""
        if title:
            self.out.line(title, style="bold")
        width = max((len(k) for k in pairs), default=0)
        for key, value in pairs.items():
            self.out.line(value, lead=f"  {key:<{width}}  ")

    # errors ----------------------------------------------------------------------------------
    def fail(self, error: BaseException) -> NoReturn:
        """Print ``error: …`` and ``hint: …`` and exit with the error's code."""
        if isinstance(error, DexkitError):
            code, message, hint = error.exit_code, error.message, error.hint
        elif isinstance(error, OSError):
            # Deferred: files (tempfile, random) would add ~11 modules to every command's start.
            from dexkit.files import os_error  # noqa: PLC0415

            described = os_error(error, error.filename or "", "use") if error.filename else None
            code = 1
            message = described.message if described else _describe_os_error(error)
            hint = described.hint if described else "check the paths involved and run it again"
        elif isinstance(error, RecursionError | MemoryError):
            code, message = 1, f"the input is too large or too deeply nested ({error})"
            hint = "check the files the command reads"
        else:
            code, message = 1, f"unexpected {type(error).__name__}: {error}"
            hint = "re-run with --debug for the traceback and report it as a bug"
        if self.debug:
            self.err.rich.print_exception(show_locals=False)
        # Exactly one error line and one hint line, whatever the message holds (a library's
        # multi-line text, a file name with a newline in it).
        self.err.line(redact.one_line(message), lead="error: ", lead_style="red bold")
        self.err.line(redact.one_line(hint) or "re-run with --debug for details", lead="hint: ",
                      lead_style="dim")
        raise SystemExit(code)


def _describe_os_error(error: OSError) -> str:
    what = error.strerror or str(error)
    return f"{what}: {error.filename}" if error.filename else what
