"""The Typer application: commands parse options, call the core, hand results to console."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from dexkit import __version__
from dexkit.errors import DexkitError

app = typer.Typer(
    name="dexkit",
    help="Wire Kubernetes API-server authentication to Dex, end to end.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"dexkit {__version__}\n")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Wire Kubernetes API-server authentication to Dex, end to end."""


def _register() -> None:
    from dexkit.cli import certs, init, sandbox

    app.command("init")(init.init)
    app.add_typer(certs.app, name="certs")
    app.add_typer(sandbox.app, name="sandbox")


def run(args: list[str]) -> None:
    """Run the CLI; every error leaves through :meth:`dexkit.console.Output.fail`."""
    debug = "--debug" in args
    try:
        _register()
        command = typer.main.get_command(app)
        code = command.main(args=args, prog_name="dexkit", standalone_mode=False)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        sys.stderr.write("aborted\n")
        raise SystemExit(130) from None
    except typer.TyperException as exc:
        _usage_error(exc, debug)
    except DexkitError as exc:
        _fail(exc, debug)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    except Exception as exc:  # noqa: BLE001 - the one place that turns anything into an exit
        _fail(exc, debug)
    raise SystemExit(code if isinstance(code, int) else 0)


def _usage_error(exc: typer.TyperException, debug: bool) -> None:
    """Typer's own parse errors (bad flag, bad value) in dexkit's one error shape."""
    from dexkit.errors import DexkitError, UsageError

    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        sys.stdout.write(ctx.get_help() + "\n")
        raise SystemExit(2)
    path = ctx.command_path if ctx is not None else "dexkit"
    error: DexkitError = UsageError(exc.format_message(), f"run '{path} --help' for the options")
    if exc.exit_code != 2:
        error = DexkitError(exc.format_message(), "check the path and its permissions")
    _fail(error, debug)


def _fail(exc: BaseException, debug: bool) -> None:
    from dexkit.console import Output

    Output(debug=debug).fail(exc)
