"""Options shared by the login commands (login, verify, kubeconfig), so they read the same."""

from __future__ import annotations

from typing import Annotated

import typer

from dexkit.console import Output
from dexkit.errors import UsageError
from dexkit.oidc.settings import Grant

GrantOption = Annotated[str, typer.Option(
    "--grant", help="authcode (browser), authcode-keyboard (type the code Dex shows), device "
    "(log in on another device), password, token-exchange (a CI job's own ID token), or "
    "client-credentials (a client as itself, Dex 2.46+).")]
UsernameOption = Annotated[str | None, typer.Option(
    "--username", "-u", help="User for the password grant (default: the first static user).")]
InsecureOption = Annotated[bool, typer.Option(
    "--insecure", help="Do NOT verify Dex's TLS certificate. Never use this in production.")]
# Everything after the known options is a 'dexkit token' option (kubelogin's names included).
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def check_grant(grant: str) -> Grant:
    try:
        return Grant(grant)
    except ValueError:
        raise UsageError(f"unknown grant '{grant}'",
                         f"use one of {', '.join(g.value for g in Grant)}") from None


def warn_insecure(out: Output, insecure: bool) -> None:
    if insecure:
        out.warn("TLS VERIFICATION IS OFF (--insecure): anyone on the path can impersonate Dex "
                 "and read the password and tokens", "trust dexkit's ssl/ca.pem instead")
