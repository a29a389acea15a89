"""Entry point for ``dexkit`` and ``python -m dexkit``.

Kept lean on purpose: ``--version`` answers without importing Typer, Rich or kubernetes, and
``dexkit token`` (alias ``get-token``, kubelogin's name), which kubectl runs before every
command, goes straight to its import-light path.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["token"] or args[:1] == ["get-token"]:
        # kubectl's credential plugin: the lean path, no typer/rich/kubernetes imports.
        from dexkit.oidc.plugin import main as token_main

        raise SystemExit(token_main(args[1:]))
    if args in (["--version"], ["-V"]):
        from dexkit import __version__

        sys.stdout.write(f"dexkit {__version__}\n")
        return
    from dexkit.cli import run

    run(args)


if __name__ == "__main__":
    main()
