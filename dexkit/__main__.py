"""Entry point for ``dexkit`` and ``python -m dexkit``.

Kept lean on purpose, because these run where start-up time is felt:
- ``dexkit token`` (alias ``get-token``, kubelogin's name), which kubectl runs before every
  command, goes straight to its import-light path (no typer, rich, re, enum or kubernetes);
- ``dexkit --version`` and ``dexkit --help`` answer from this file, without Typer (whose
  import and command tree cost ~0.5 s); ``dexkit COMMAND --help`` is Typer's, for that
  command only.
"""

import os
import sys

# (name, one line) for `dexkit --help`, in the order shown; a unit test keeps the names equal
# to the commands dexkit.cli registers.
COMMANDS = (
    ("init", "Write a commented dexkit.yaml and the TLS assets (CA, Dex's certificate)."),
    ("scenarios", "List the ready setups (start one with 'dexkit init --scenario NAME')."),
    ("certs", "Inspect, check and rotate the TLS assets."),
    ("render", "Render Dex's manifests, the API-server flags and config, a kind config."),
    ("apiserver", "The API server's side: OIDC flags, AuthenticationConfiguration, patch."),
    ("kind", "kind clusters for CI, wired to Dex."),
    ("sandbox", "Build and run real peers (etcd, kube-apiserver, kubectl, Dex) locally."),
    ("deploy", "Create or update Dex in the cluster, then wait for it to roll out."),
    ("destroy", "Remove what 'dexkit deploy' made; Secrets and CRDs stay unless asked."),
    ("login", "Log in to Dex, show the verified claims, and fill kubectl's token cache."),
    ("logout", "Forget a cached login, so that the next kubectl command logs in again."),
    ("kubeconfig", "Add a kubeconfig user that runs 'dexkit token', or print a kubeconfig."),
    ("token", "kubectl's exec credential plugin (kubelogin's get-token flags accepted)."),
    ("verify", "Run the whole login and prove what the API server makes of the token."),
    ("doctor", "Check every link between browser, Dex and API server; name the broken one."),
)


def usage() -> str:
    width = max(len(name) for name, _ in COMMANDS)
    lines = ["Usage: dexkit [--debug] COMMAND [ARGS]...", "",
             "Wire Kubernetes API-server authentication to Dex, end to end.", "",
             "Options:", "  -V, --version  Print the version and exit.",
             "  --debug        Show tracebacks on errors.",
             "  --install-completion  Install completion for the current shell.",
             "  --show-completion     Show completion for the current shell.",
             "  -h, --help     Show this message and exit.", "", "Commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in COMMANDS]
    lines += ["", "Run 'dexkit COMMAND --help' for a command's options."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """The CLI. Without ``argv`` it is the program (``sys.argv``, and the process ends when it
    returns); with ``argv`` it may run inside another process (the tests' in-process runs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["token"] or args[:1] == ["get-token"]:
        # kubectl's credential plugin: the lean path, no typer/rich/kubernetes imports.
        from dexkit.oidc.plugin import main as token_main

        raise SystemExit(token_main(args[1:]))
    if args in (["--version"], ["-V"]):
        from dexkit import __version__

        sys.stdout.write(f"dexkit {__version__}\n")
        return
    if args in (["--help"], ["-h"], []) and "_DEXKIT_COMPLETE" not in os.environ:
        sys.stdout.write(usage())
        if not args:
            raise SystemExit(2)  # a usage error, as Typer's no_args_is_help
        return
    _run_cli(args, "dexkit", whole_process=argv is None)


def _run_cli(args: list[str], prog_name: str, *, whole_process: bool) -> None:
    """Typer's path. As a whole process, the cycle collector is kept out of the start-up and
    the exit, where it only walks the objects imports made: Python's start of a command is
    mostly imports (Typer, the config model, cryptography, httpx), and at exit the interpreter
    collects every one of them once more before the OS frees the memory anyway (~30 ms of
    'init', ~60 ms of 'verify'). It runs as usual while the command works (see
    dexkit.cli.run)."""
    if not whole_process:
        from dexkit.cli import run

        run(args, prog_name=prog_name)
        return
    import gc

    gc.disable()
    try:
        from dexkit.cli import run

        run(args, prog_name=prog_name, whole_process=True)
    finally:
        # What is left is freed by the process's exit (files are closed and flushed by then;
        # atexit handlers have run).
        gc.freeze()


def kubectl_main() -> None:
    """``kubectl-dexkit``: kubectl runs a ``kubectl-<name>`` it finds on PATH for
    ``kubectl <name> ...``, with the remaining arguments; the same CLI, named as it was called."""
    args = sys.argv[1:]
    if args[:1] in (["token"], ["get-token"]) or args in (["--version"], ["-V"]):
        main(args)
        return
    _run_cli(args, "kubectl dexkit", whole_process=True)


if __name__ == "__main__":
    main()
