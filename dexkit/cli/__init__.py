"""The Typer application: commands parse options, call the core, hand results to console."""

from __future__ import annotations

import importlib
import os
import shlex
import sys
from typing import Annotated

import typer

from dexkit import __version__
from dexkit.errors import DexkitError

app = typer.Typer(
    name="dexkit",
    help="Wire Kubernetes API-server authentication to Dex, end to end.",
    no_args_is_help=True,
    # --install-completion / --show-completion; the shells call back with _DEXKIT_COMPLETE.
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: Rich's help renderer (typer.rich_utils, rich.markdown, markdown_it) costs
    # ~110 ms of every 'dexkit COMMAND --help'.
    rich_markup_mode=None,
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


# name -> (module, attribute, is a group of subcommands). Only the command being run is
# imported, so `dexkit init` never pays for the kubernetes client that `deploy` needs.
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "init": ("dexkit.cli.init", "init", False),
    "scenarios": ("dexkit.cli.scenarios", "scenarios", False),
    "certs": ("dexkit.cli.certs", "app", True),
    "sandbox": ("dexkit.cli.sandbox", "app", True),
    "render": ("dexkit.cli.render", "render", False),
    "apiserver": ("dexkit.cli.apiserver", "app", True),
    "kind": ("dexkit.cli.kind", "app", True),
    "login": ("dexkit.cli.login", "login", False),
    "verify": ("dexkit.cli.verify", "verify", False),
    "kubeconfig": ("dexkit.cli.kubeconfig", "kubeconfig", False),
    "logout": ("dexkit.cli.logout", "logout", False),
    "doctor": ("dexkit.cli.doctor", "doctor", False),
    "deploy": ("dexkit.cli.deploy", "deploy", False),
    "destroy": ("dexkit.cli.destroy", "destroy", False),
    # Runs through dexkit.__main__'s lean path; registered here for the help listing only.
    "token": ("dexkit.cli.token", "token", False),
}


# One variable for `dexkit` and `kubectl dexkit` alike (Typer derives it from the program name).
COMPLETE_VAR = "_DEXKIT_COMPLETE"


def _completion_words() -> list[str] | None:
    """The words being completed (program name dropped) when a shell asks for completions:
    bash passes them in COMP_WORDS, zsh/fish/PowerShell in _TYPER_COMPLETE_ARGS."""
    if not os.environ.get(COMPLETE_VAR):
        return None
    raw = os.environ.get("_TYPER_COMPLETE_ARGS") or os.environ.get("COMP_WORDS") or ""
    try:
        words = shlex.split(raw)
    except ValueError:  # an open quote in the line being typed
        words = raw.split()
    return words[1:]


def _register(args: list[str]) -> None:
    wanted = _command_name(args)
    for name, (module, attribute, is_group) in COMMANDS.items():
        if wanted in COMMANDS and name != wanted:
            continue
        target = getattr(importlib.import_module(module), attribute)
        if is_group:
            app.add_typer(target, name=name)
        else:
            app.command(name, context_settings=getattr(target, "context_settings", None))(
                target)


def _command_name(args: list[str]) -> str | None:
    """The subcommand in ``args`` (first word that is not a global option)."""
    return next((a for a in args if not a.startswith("-")), None)


def run(args: list[str], prog_name: str = "dexkit", *, whole_process: bool = False) -> None:
    """Run the CLI; every error leaves through :meth:`dexkit.console.Output.fail`.

    Only the invoked subcommand is registered (its imports are all it pays for); a shell asking
    for completions gets the subcommand it is completing, or all of them for the first word.
    ``whole_process``: the caller (dexkit.__main__) turned the cycle collector off for the
    start-up; it comes back on here, once the command is loaded, with what the imports made
    set aside (frozen), so that it never walks those again.
    """
    debug = "--debug" in args
    try:
        words = _completion_words()
        _register(args if words is None else words)
        _take_named_shell(args)
        command = typer.main.get_command(app)
        if whole_process:
            import gc

            gc.freeze()
            gc.enable()
        code = command.main(args=args, prog_name=prog_name, complete_var=COMPLETE_VAR,
                            standalone_mode=False)
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
    except Exception as exc:
        _fail(exc, debug)
    raise SystemExit(code if isinstance(code, int) else 0)


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _take_named_shell(args: list[str]) -> None:
    """``--show-completion bash`` / ``--install-completion zsh`` use the shell named.

    With shellingham installed Typer makes both options plain flags for the shell it detects
    among the parent processes: the name was ignored (zsh's script printed for 'bash') and,
    under CI or cron, where no shell is a parent, the command failed ("Shell not supported").
    Typer's switch for options that take the shell's name is this variable, read when the
    command is built.
    """
    if len(args) >= 2 and args[0] in ("--show-completion", "--install-completion") \
            and args[1] in SHELLS:
        os.environ["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"


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
