"""``dexkit login``: log in to Dex, show the verified claims, fill kubectl's token cache."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.login_options import (
    PASS_THROUGH,
    GrantOption,
    InsecureOption,
    UsernameOption,
    check_grant,
    warn_insecure,
)
from dexkit.cli.options import DirOption, Format, OutputOption
from dexkit.console import Output
from dexkit.oidc.logins import settings_for


def login(
    ctx: typer.Context,
    directory: DirOption = Path(),
    grant: GrantOption = "authcode",
    username: UsernameOption = None,
    no_browser: Annotated[bool, typer.Option("--no-browser",
                                             help="Print the URL instead of opening it.")] = False,
    print_token: Annotated[bool, typer.Option("--print-token",
                                              help="Also print the raw ID token.")] = False,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", help="With clusters in dexkit.yaml: log in for this one (default: log in "
        "once and fill every cluster's token).")] = None,
    insecure: InsecureOption = False,
    output: OutputOption = Format.text,
) -> None:
    """Log in to Dex, show the verified claims, and fill kubectl's token cache.

    Any 'dexkit token' option may follow (e.g. --issuer ... --client-id ... to log in
    without a project)."""
    # Deferred until the command runs: the config model and the session would add ~75 modules,
    # ~75 ms to 'dexkit login --help'.
    from dexkit.config import load_config  # noqa: PLC0415
    from dexkit.oidc.session import login as do_login  # noqa: PLC0415
    from dexkit.oidc.session import narrow  # noqa: PLC0415

    check_grant(grant)
    extra = [*ctx.args, *(["--skip-open-browser"] if no_browser else []),
             *(["--insecure"] if insecure else [])]
    out = Output()
    warn_insecure(out, insecure)
    # Not project_config: dexkit.yaml's warnings are not said here, so that a failed login's
    # first line is its error.
    logins = settings_for(directory, extra, grant=grant, username=username,
                          project=lambda: load_config(directory).config, cluster=cluster)
    settings, others = logins.first, logins.others
    settings = settings.with_password(os.environ, may_prompt=True)
    result = do_login(settings, interactive=True)  # a person ran it: stdin is theirs
    for other in others:
        # The same login, narrowed to each other cluster's audience: no second login.
        narrowed = narrow(other) if not other.grant.is_robot else do_login(
            other.with_password(os.environ, may_prompt=True), interactive=True)
        out.info(f"token for cluster audience '{other.audience}' cached "
                 f"(aud {narrowed.claims.get('aud')})")
    claims = {k: v for k, v in result.claims.items() if k not in ("at_hash", "c_hash")}
    if output.structured:
        token = {"id_token": result.tokens.id_token} if print_token else {}
        out.structured(output, {"claims": claims, **token})
        return
    out.fields({k: str(v) for k, v in sorted(claims.items())}, title="ID token claims")
    if print_token:
        out.data(result.tokens.id_token + "\n")
    out.success("logged in; the token verified against Dex's keys and is cached for kubectl")


login.context_settings = PASS_THROUGH  # type: ignore[attr-defined]
