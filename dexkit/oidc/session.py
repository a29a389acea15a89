"""Getting a verified token when the cache has none: refresh, else log in.

Shared by ``dexkit token`` (the kubectl plugin, after its cheap cached path) and
``dexkit login``.
"""

from __future__ import annotations

import os
import sys
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dexkit.errors import LoginRequired, OIDCError, UsageError
from dexkit.oidc import flows
from dexkit.oidc.discovery import Provider, discover, make_client
from dexkit.oidc.tokens import Expectations, fetch_jwks, verify_id_token

if TYPE_CHECKING:
    import argparse

    import httpx

LOOPBACK_PORTS = (8000, 18000)


@dataclass(frozen=True)
class LoginRequest:
    issuer: str
    client: flows.Client
    ca_file: Path | None
    grant: str = "authcode"
    username: str | None = None
    password: str | None = None
    ports: tuple[int, ...] = LOOPBACK_PORTS
    open_browser: bool = True
    insecure: bool = False
    timeout: float = 300


@dataclass(frozen=True)
class LoginResult:
    tokens: flows.TokenSet
    claims: dict[str, Any]
    provider: Provider


def login(req: LoginRequest, http: httpx.Client | None = None) -> LoginResult:
    """Discover, log in with the requested grant, verify the ID token."""
    client_http = http or make_client(req.ca_file, insecure=req.insecure)
    provider = discover(client_http, req.issuer)
    tokens = run_grant(req, client_http, provider)
    claims = verify(client_http, provider, req.client.id, tokens)
    return LoginResult(tokens, claims, provider)


def verify(http: httpx.Client, provider: Provider, client_id: str,
           tokens: flows.TokenSet) -> dict[str, Any]:
    jwks = fetch_jwks(http, provider)
    expect = Expectations(issuer=provider.issuer, client_id=client_id, nonce=tokens.nonce)
    return verify_id_token(tokens.id_token, jwks, expect, int(time.time()))


def run_grant(req: LoginRequest, http: httpx.Client, provider: Provider) -> flows.TokenSet:
    if req.grant == "password":
        if not req.username or req.password is None:
            raise UsageError("the password grant needs a username and a password",
                             "pass --username and set the password in the environment")
        return flows.password_grant(http, provider, req.client, req.username, req.password)
    if req.grant == "device":
        start = flows.device_start(http, provider, req.client)
        url = start.verification_uri_complete or start.verification_uri
        sys.stderr.write(f"To log in, open {url} and enter the code {start.user_code}\n")
        return flows.device_poll(http, provider, req.client, start)
    return flows.authorization_code(http, provider, req.client, ports=req.ports,
                                    open_url=_opener(req.open_browser), timeout=req.timeout)


def _opener(browser: bool) -> Any:
    def open_url(url: str) -> None:
        sys.stderr.write(f"Log in at: {url}\n")
        if browser:
            webbrowser.open(url)
    return open_url


def obtain_token(args: argparse.Namespace, scopes: tuple[str, ...],
                 entry: dict[str, Any] | None, interactive: bool) -> dict[str, Any]:
    """For the kubectl plugin: refresh if we can, else log in if we may; a cache entry."""
    secret = os.environ.get(args.client_secret_env, "") if args.client_secret_env else ""
    client = flows.Client(id=args.client_id, secret=secret, scopes=scopes)
    http = make_client(args.ca_file, insecure=args.insecure)
    provider = discover(http, args.issuer)
    tokens = None
    if entry and entry.get("refresh_token"):
        try:
            tokens = flows.refresh(http, provider, client, str(entry["refresh_token"]))
        except OIDCError as exc:
            sys.stderr.write(f"dexkit: refresh failed ({exc.message}); logging in again\n")
    if tokens is None:
        tokens = _plugin_login(args, client, http, provider, interactive)
    claims = verify(http, provider, client.id, tokens)
    return {"id_token": tokens.id_token, "refresh_token": tokens.refresh_token,
            "expiry": claims["exp"]}


def _plugin_login(args: argparse.Namespace, client: flows.Client, http: httpx.Client,
                  provider: Provider, interactive: bool) -> flows.TokenSet:
    if args.grant == "password":
        password = _password(args)
        if password is None or not args.username:
            raise LoginRequired("no cached token and no password to log in with",
                                f"set {args.password_env} (or --password-file) and --username, "
                                "or run 'dexkit login'")
        return flows.password_grant(http, provider, client, args.username, password)
    if not interactive:
        raise LoginRequired("the cached login expired and kubectl is not interactive",
                            "log in again: run 'dexkit login' in a terminal")
    req = LoginRequest(issuer=args.issuer, client=client, ca_file=args.ca_file,
                       grant=args.grant, ports=tuple(args.ports or LOOPBACK_PORTS))
    return run_grant(req, http, provider)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_file is not None:
        try:
            return str(args.password_file.read_text().strip())
        except OSError as exc:
            raise LoginRequired(f"cannot read the password file: {exc}", "check the path") from None
    return os.environ.get(args.password_env)
