"""``dexkit logout``: forget a cached login (one entry, or all of them with --all)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.login_options import PASS_THROUGH, GrantOption, UsernameOption, check_grant
from dexkit.cli.options import DirOption
from dexkit.console import Output
from dexkit.files import FileError
from dexkit.oidc import logout as forget


def logout(
    ctx: typer.Context,
    directory: DirOption = Path(),
    grant: GrantOption = "authcode",
    username: UsernameOption = None,
    every: Annotated[bool, typer.Option(
        "--all", help="Forget every cached login in the cache directory (and their keyring "
        "items), as kubelogin's 'clean' does.")] = False,
) -> None:
    """Forget a cached login, so that the next kubectl command logs in again.

    One login: the project's, or the one the 'dexkit token' options that follow describe."""

    check_grant(grant)
    out = Output()
    result = forget.run(forget.LogoutRequest(directory=directory, grant=grant,
                                             username=username, extra=tuple(ctx.args),
                                             every=every))
    for what in result.removed:
        out.step("forgot", what)
    for what in result.skipped:
        out.warn(f"left alone {what}")
    if result.failed:
        raise FileError(f"could not remove {len(result.failed)} cached file(s): "
                        f"{'; '.join(result.failed)}"
                        + (f"; {len(result.removed)} removed" if result.removed else ""),
                        f"check the owner and permissions of {result.cache_dir} and remove "
                        "them by hand")
    if not result.removed:
        out.info(f"no cached login to forget in {result.cache_dir}")
        return
    out.success(f"logged out: {len(result.removed)} cached login(s) removed")


logout.context_settings = PASS_THROUGH  # type: ignore[attr-defined]
