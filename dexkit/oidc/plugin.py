"""``dexkit token`` (alias ``get-token``): the kubectl exec credential plugin.

kubectl runs this before every command, so the cached path imports nothing but os, sys and
time and dexkit's own import-free option parser and cache reader (no re, no enum, no json, no
hashlib: see :mod:`dexkit.oidc.options`). Rules:
- A cached ID token with more than a minute left is printed as it is (unless
  ``--force-refresh``, or the cache is not on disk).
- Anything else goes to :func:`dexkit.oidc.session.obtain` (refresh, else log in), whose
  rules say when a login may run without a terminal.
- Whatever goes wrong ends in one ``error:`` and one ``hint:`` line on stderr and exit 1 (2
  for a bad command line), never a traceback; stdout carries the ExecCredential or nothing.
"""

import os
import sys
import time

from dexkit.oidc.cache import cache_path, read_entry
from dexkit.oidc.options import OptionError, cache_dir_of, identity_key, parse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MIN_VALIDITY = 60
DEFAULT_API_VERSION = "client.authentication.k8s.io/v1"
SUPPORTED_API_VERSIONS = (DEFAULT_API_VERSION, "client.authentication.k8s.io/v1beta1")
_JWT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def fresh_token(entry: "dict[str, Any] | None", now: float) -> str | None:
    """The cached ID token if it has more than MIN_VALIDITY seconds left."""
    if not entry or not entry.get("id_token"):
        return None
    expiry = entry.get("expiry")
    if not isinstance(expiry, int | float):
        return None
    return str(entry["id_token"]) if expiry - now > MIN_VALIDITY else None


def exec_credential(token: str, expiry: float, api_version: str) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiry))
    if set(token) <= _JWT_CHARS and api_version in SUPPORTED_API_VERSIONS:
        # Nothing here needs escaping: write the JSON without importing json.
        return (f'{{"apiVersion": "{api_version}", "kind": "ExecCredential", "status": '
                f'{{"token": "{token}", "expirationTimestamp": "{stamp}"}}}}')
    import json

    return json.dumps({"apiVersion": api_version, "kind": "ExecCredential",
                       "status": {"token": token, "expirationTimestamp": stamp}})


def exec_info(raw: str | None, stdin_is_tty: bool) -> tuple[str, bool]:
    """(apiVersion, interactive) from KUBERNETES_EXEC_INFO; anything unreadable means the
    default version and not interactive (kubectl always sends a readable one)."""
    if not raw:
        return DEFAULT_API_VERSION, stdin_is_tty
    quick = _quick_exec_info(raw)
    if quick is not None:
        return quick
    import json

    try:
        info = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        return DEFAULT_API_VERSION, False
    if not isinstance(info, dict):
        return DEFAULT_API_VERSION, False
    version = info.get("apiVersion")
    if version not in SUPPORTED_API_VERSIONS:
        version = DEFAULT_API_VERSION
    spec = info.get("spec")
    interactive = spec.get("interactive") if isinstance(spec, dict) else False
    return str(version), interactive is True


def _quick_exec_info(raw: str) -> tuple[str, bool] | None:
    """kubectl's usual ``{"kind":…,"apiVersion":"…","spec":{"interactive":…}}`` read without
    json; None for anything less plain (then json parses it)."""
    if (not raw.startswith("{") or raw.count('"apiVersion"') != 1
            or raw.count('"interactive"') != 1 or "\\" in raw or raw.count("{") != 2):
        return None
    versions = [v for v in SUPPORTED_API_VERSIONS if f'"{v}"' in raw]
    if len(versions) != 1:
        return None
    compact = raw.replace(" ", "")
    if '"spec":{' not in compact:
        return None
    return versions[0], '"interactive":true' in compact


def main(argv: list[str]) -> int:
    try:
        api_version, interactive = exec_info(os.environ.get("KUBERNETES_EXEC_INFO"),
                                             _stdin_is_tty())
        opts = parse(argv)
        if (not opts.get("help") and not opts.get("force_refresh")
                and opts.get("issuer") and opts.get("client_id")
                and opts.get("cache_storage", "disk") == "disk"):
            path = cache_path(cache_dir_of(opts, os.environ), identity_key(opts))
            entry = read_entry(path)
            token = fresh_token(entry, time.time())
            if token is not None and entry is not None:
                sys.stdout.write(exec_credential(token, float(entry["expiry"]), api_version)
                                 + "\n")
                return 0
    except OptionError as exc:
        return _fail(exc, 2)
    except Exception as exc:  # kubectl shows stderr; never a traceback
        return _fail(exc, 1)
    return _slow_path(argv, api_version, interactive)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False


def _slow_path(argv: list[str], api_version: str, interactive: bool) -> int:
    debug = os.environ.get("DEXKIT_DEBUG") not in (None, "", "0")
    saved = os.dup(1)
    try:
        # Until the credential is written, stdout is stderr: kubectl parses stdout, and a
        # browser launcher or a library that prints must not corrupt it.
        os.dup2(2, 1)
        from dexkit.oidc.session import obtain
        from dexkit.oidc.settings import build_settings

        if "--help" in argv or "-h" in argv:
            os.dup2(saved, 1)
            sys.stdout.write(usage())
            return 0
        settings = build_settings(argv)
        entry = obtain(settings, interactive=interactive)
        sys.stdout.flush()
        os.dup2(saved, 1)
        sys.stdout.write(exec_credential(str(entry["id_token"]), float(entry["expiry"]),
                                         api_version) + "\n")
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\nhint: run the kubectl command again to log in\n")
        return 130
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        return _fail(exc, getattr(exc, "exit_code", 1))
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _fail(exc: BaseException, code: int) -> int:
    # console's rule (secrets hidden, terminal controls escaped), without console's imports:
    # kubectl shows these lines as they are.
    from dexkit.redact import one_line

    message = getattr(exc, "message", None)
    hint = getattr(exc, "hint", None)
    if message is None:
        message = f"unexpected {type(exc).__name__}: {exc}"
        hint = "run it again with DEXKIT_DEBUG=1 for the traceback, and report it as a bug"
    sys.stderr.write(f"error: {one_line(str(message))}\n")
    sys.stderr.write(f"hint: {one_line(str(hint or 'run dexkit token --help'))}\n")
    return code


def usage() -> str:
    return """\
usage: dexkit token --issuer URL --client-id ID [options]   (alias: dexkit get-token)

kubectl's exec credential plugin: prints an ExecCredential with a verified Dex ID token,
from the cache when it has more than a minute left, else by refresh, else by logging in.
kubelogin's get-token flag names are accepted as aliases (shown in brackets).

  --issuer URL                [--oidc-issuer-url]  Dex's issuer URL, byte for byte
  --client-id ID              [--oidc-client-id]   the client the API server trusts
  --oidc-client-secret S      the client's secret (confidential clients; visible to ps)
  --client-secret-env VAR     read the client secret from VAR instead
  --scope S                   replace the default scopes (repeatable)
  --oidc-extra-scope S        add a scope to them (repeatable, comma-separated)
  --ca-file FILE              [--certificate-authority]  CA that signed Dex's certificate
  --certificate-authority-data B64   the same, inline
  --insecure                  [--insecure-skip-tls-verify]  do NOT verify Dex's certificate
  --allow-insecure-http       let the password and refresh grants use a plain-http issuer
                              (clear text; any other use of one is warned about)
  --grant G                   [--grant-type] authcode (default), authcode-keyboard,
                              device [device-code], password, token-exchange,
                              client-credentials
  --username U, --password-file FILE, --password-env VAR (default DEXKIT_PASSWORD)
  --password P                kubelogin's; warned: every user of the machine can read it
  --audience ID               one cluster of several: a token for its audience only
  token-exchange (a CI job's own ID token for a Dex token):
  --connector-id ID           the Dex connector that verifies it
  --subject-token-file FILE, --subject-token-env VAR   where it is (default: in a GitHub
                              Actions job with id-token: write, the job's own token)
  --subject-audience AUD      the audience it must have (asked of GitHub Actions)
  --subject-issuer URL        the issuer it must come from
  client-credentials (a client as itself; Dex 2.46+):
  --client-secret-file FILE   its secret, from a file (or --client-secret-env VAR)
  --listen-address HOST:PORT  loopback address for the browser callback (repeatable;
                              default 127.0.0.1:8000, then 127.0.0.1:18000)
  --oidc-redirect-url URL     the redirect URL registered in Dex
  --oidc-auth-request-extra-params K=V   extra authorization parameters
  --skip-open-browser         print the URL instead of opening a browser
  --browser-command CMD       open the URL with CMD (default: $BROWSER, else the system's)
  --authentication-timeout-sec N   give up on the browser login after N s (default 180)
  --login-retry-after-sec N   after a browser or device login failed or was cancelled,
                              open no new one for N s (default 60, doubled for each failure
                              in a row, at most an hour; 0: no pause); 'dexkit login' is never
                              paused
  --token-cache-dir DIR       [--cache-dir] default $KUBECACHEDIR/dexkit, ~/.kube/cache/dexkit
  --token-cache-storage S     disk (default), keyring, none
  --force-refresh             refresh even when the cached token is still valid
"""
