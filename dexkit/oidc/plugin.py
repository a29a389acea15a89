"""``dexkit token``: the kubectl exec credential plugin (client.authentication.k8s.io).

kubectl runs this before every command, so the cached path imports only the standard library
and filelock, and never kubernetes, typer or rich. Rules:
- A cached ID token with more than a minute left is printed as it is.
- Otherwise, under the entry's file lock (one refresh for N parallel kubectl calls): re-read
  the cache (another process may have refreshed), then refresh with the refresh token, then
  log in (browser or device when kubectl says the session is interactive; the password grant
  when configured for CI), else fail with "log in again".
- Every newly obtained token is verified (signature, iss, aud, exp, nonce) before it is cached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dexkit.oidc.cache import TokenCache, cache_key, default_dir

MIN_VALIDITY = 60
DEFAULT_API_VERSION = "client.authentication.k8s.io/v1"
SUPPORTED_API_VERSIONS = (DEFAULT_API_VERSION, "client.authentication.k8s.io/v1beta1")
DEFAULT_SCOPES = ("openid", "email", "profile", "groups", "offline_access")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dexkit token", description="kubectl credential plugin")
    p.add_argument("--issuer", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret-env", default=None,
                   help="environment variable holding the client secret (confidential clients)")
    p.add_argument("--ca-file", type=Path, default=None)
    p.add_argument("--scope", action="append", dest="scopes", default=None)
    p.add_argument("--grant", choices=("authcode", "device", "password"), default="authcode")
    p.add_argument("--username", default=None)
    p.add_argument("--password-env", default="DEXKIT_PASSWORD")
    p.add_argument("--password-file", type=Path, default=None)
    p.add_argument("--listen-port", type=int, action="append", dest="ports", default=None)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--insecure", action="store_true")
    return p.parse_args(argv)


def fresh_token(entry: dict[str, Any] | None, now: float) -> str | None:
    """The cached ID token if it has more than MIN_VALIDITY seconds left."""
    if not entry or not entry.get("id_token"):
        return None
    expiry = entry.get("expiry")
    if not isinstance(expiry, int | float):
        return None
    return str(entry["id_token"]) if expiry - now > MIN_VALIDITY else None


def exec_credential(token: str, expiry: float, api_version: str) -> str:
    stamp = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"apiVersion": api_version, "kind": "ExecCredential",
                       "status": {"token": token, "expirationTimestamp": stamp}})


def _exec_info() -> tuple[str, bool]:
    raw = os.environ.get("KUBERNETES_EXEC_INFO")
    if not raw:
        return DEFAULT_API_VERSION, sys.stdin.isatty()
    try:
        info = json.loads(raw)
    except ValueError:
        return DEFAULT_API_VERSION, False
    version = info.get("apiVersion") or DEFAULT_API_VERSION
    if version not in SUPPORTED_API_VERSIONS:
        version = DEFAULT_API_VERSION
    return version, bool((info.get("spec") or {}).get("interactive", False))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    api_version, interactive = _exec_info()
    scopes = tuple(args.scopes or DEFAULT_SCOPES)
    cache = TokenCache(args.cache_dir or default_dir())
    key = cache_key(args.issuer, args.client_id, scopes)
    entry = cache.load(key)
    token = fresh_token(entry, time.time())
    if token is None:
        try:
            entry = _renew(args, cache, key, scopes, interactive)
        except Exception as exc:
            return _fail(exc)
        token = str(entry["id_token"])
    assert entry is not None
    sys.stdout.write(exec_credential(token, float(entry["expiry"]), api_version) + "\n")
    return 0


def _renew(args: argparse.Namespace, cache: TokenCache, key: str, scopes: tuple[str, ...],
           interactive: bool) -> dict[str, Any]:
    with cache.lock(key):
        entry = cache.load(key)
        if fresh_token(entry, time.time()):
            assert entry is not None
            return entry
        from dexkit.oidc.session import obtain_token

        entry = obtain_token(args, scopes, entry, interactive)
        cache.store(key, entry)
        return entry


def _fail(exc: BaseException) -> int:
    from dexkit.errors import DexkitError

    if isinstance(exc, DexkitError):
        sys.stderr.write(f"error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
    else:
        sys.stderr.write(f"error: {type(exc).__name__}: {exc}\n")
    return 1
