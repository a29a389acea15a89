"""``dexkit token`` (alias ``get-token``): listed here for ``dexkit --help``; kubectl's calls go
straight to :mod:`dexkit.oidc.plugin` through ``dexkit.__main__``'s lean path."""

from __future__ import annotations

import typer

from dexkit.oidc.plugin import main as plugin


def token(ctx: typer.Context) -> None:
    """kubectl's exec credential plugin (kubelogin's get-token flags accepted)."""

    raise typer.Exit(plugin(list(ctx.args)))


token.context_settings = {  # type: ignore[attr-defined]
    "allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
