"""``dexkit token``: the kubectl exec credential plugin (client.authentication.k8s.io).

kubectl runs this before every command, so the cached path imports nothing but os, sys, time
and hashlib (json, argparse, filelock, httpx, joserfc, kubernetes, typer and rich load only
when they are needed: an unusual KUBERNETES_EXEC_INFO, or a token to obtain). Rules:
- A cached ID token with more than a minute left is printed as it is.
- Otherwise, under the entry's file lock (one refresh for N parallel kubectl calls): re-read
  the cache (another process may have refreshed), then refresh with the refresh token, then
  log in (browser or device when kubectl says the session is interactive; the password grant
  when configured for CI), else fail with "log in again".
- Every newly obtained token is verified (signature, iss, aud, exp, nonce) before it is cached.
"""

from __future__ import annotations

import os
import sys
import time

from dexkit.oidc import DEFAULT_SCOPES
from dexkit.oidc.cache import cache_key, cache_path, default_dir, read_entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from dexkit.oidc.cache import TokenCache

MIN_VALIDITY = 60
DEFAULT_API_VERSION = "client.authentication.k8s.io/v1"
SUPPORTED_API_VERSIONS = (DEFAULT_API_VERSION, "client.authentication.k8s.io/v1beta1")


def parse_args(argv: list[str]) -> argparse.Namespace:
    import argparse
    from pathlib import Path

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


_JWT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def exec_credential(token: str, expiry: float, api_version: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
    if set(token) <= _JWT_CHARS and api_version in SUPPORTED_API_VERSIONS:
        # Nothing here needs escaping: write the JSON without importing json.
        return (f'{{"apiVersion": "{api_version}", "kind": "ExecCredential", "status": '
                f'{{"token": "{token}", "expirationTimestamp": "{stamp}"}}}}')
    import json

    return json.dumps({"apiVersion": api_version, "kind": "ExecCredential",
                       "status": {"token": token, "expirationTimestamp": stamp}})


def _exec_info() -> tuple[str, bool]:
    raw = os.environ.get("KUBERNETES_EXEC_INFO")
    if not raw:
        return DEFAULT_API_VERSION, sys.stdin.isatty()
    quick = _quick_exec_info(raw)
    if quick is not None:
        return quick
    import json

    try:
        info = json.loads(raw)
    except ValueError:
        return DEFAULT_API_VERSION, False
    version = info.get("apiVersion") or DEFAULT_API_VERSION
    if version not in SUPPORTED_API_VERSIONS:
        version = DEFAULT_API_VERSION
    return version, bool((info.get("spec") or {}).get("interactive", False))


def _quick_exec_info(raw: str) -> tuple[str, bool] | None:
    """kubectl's usual ``{"kind":…,"apiVersion":"…","spec":{"interactive":…}}`` read without
    json; None for anything less plain (then json parses it)."""
    if raw.count('"apiVersion"') != 1 or raw.count('"interactive"') > 1 or "\\" in raw:
        return None
    versions = [v for v in SUPPORTED_API_VERSIONS if f'"{v}"' in raw]
    if len(versions) != 1:
        return None
    compact = raw.replace(" ", "")
    return versions[0], '"interactive":true' in compact


def quick_options(argv: list[str]) -> dict[str, Any] | None:
    """The few options the cached path needs, without argparse; None when the arguments are
    anything but plain ``--name value`` pairs (then argparse parses, and explains errors)."""
    wanted = {"--issuer": "issuer", "--client-id": "client_id", "--scope": "scopes",
              "--cache-dir": "cache_dir"}
    found: dict[str, Any] = {"scopes": []}
    pairs = iter(argv)
    for name in pairs:
        if name == "--insecure":
            continue
        value = next(pairs, None)
        if not name.startswith("--") or "=" in name or value is None:
            return None
        if name == "--scope":
            found["scopes"].append(value)
        elif name in wanted:
            found[wanted[name]] = value
    return found if "issuer" in found and "client_id" in found else None


def main(argv: list[str]) -> int:
    quick = quick_options(argv)
    api_version, interactive = _exec_info()
    if quick is not None:
        scopes = tuple(quick["scopes"] or DEFAULT_SCOPES)
        key = cache_key(quick["issuer"], quick["client_id"], scopes)
        cache_dir = quick.get("cache_dir") or str(default_dir())
        entry = read_entry(cache_path(cache_dir, key))
        token = fresh_token(entry, time.time())
        if token is not None and entry is not None:
            sys.stdout.write(exec_credential(token, float(entry["expiry"]), api_version) + "\n")
            return 0
    return _slow_path(argv, api_version, interactive)


def _slow_path(argv: list[str], api_version: str, interactive: bool) -> int:
    from dexkit.oidc.cache import TokenCache

    args = parse_args(argv)
    scopes = tuple(args.scopes or DEFAULT_SCOPES)
    cache = TokenCache(args.cache_dir or default_dir())
    key = cache_key(args.issuer, args.client_id, scopes)
    entry = cache.load(key)
    token = fresh_token(entry, time.time())
    if token is None:
        try:
            entry = _renew(args, cache, key, scopes, interactive)
        except Exception as exc:  # kubectl shows stderr; never a traceback
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
