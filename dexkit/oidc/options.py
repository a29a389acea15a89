"""The options of ``dexkit token`` (and ``dexkit login``), kubelogin's spellings included.

kubectl runs ``dexkit token`` before every command, so this parser is the one the cached path
uses too: it imports nothing (no argparse, which brings ``re``; no enum, no dataclasses) and
turns ``argv`` into a plain dict. :func:`dexkit.oidc.settings.build_settings` makes the typed
settings from that dict on the slow path; the cache key is computed from the same dict here,
so the cached path and a login can never disagree about which entry is theirs.

Rules:
- Every kubelogin ``get-token`` flag a Dex user relies on is accepted under its own name, so a
  kubelogin user swaps the binary in an existing kubeconfig (``--oidc-issuer-url``,
  ``--grant-type``, ``--listen-address``, ...). Both ``--name value`` and ``--name=value``.
- A command line that names the issuer kubelogin's way gets kubelogin's defaults too: the
  redirect URL ``http://localhost:<port>`` (what a Dex client set up for kubelogin registers)
  instead of dexkit's ``http://127.0.0.1:<port>/callback``.
- ``--scope`` replaces dexkit's default scopes; ``--oidc-extra-scope`` adds to them.
- An unknown flag is an error that names the flag (never silently ignored: it may be the
  setting that decides whose token this is).
- An error never shows a value: only option names (kubectl shows the plugin's stderr, and a
  value may be a password). An option and its value in one argument (``--password s3cret``,
  the usual mistake in a kubeconfig's ``args:``), a bare word and a boolean given a value are
  named by the option or by their position.
"""

import os

from dexkit import readfile
from dexkit.oidc import DEFAULT_SCOPES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# flag -> (destination, kind). Kinds: "str" (last wins), "list" (repeatable), "csv" (repeatable,
# each value also split on commas, as kubelogin's pflag string slices are), "bool".
FLAGS: dict[str, tuple[str, str]] = {
    "--issuer": ("issuer", "str"),
    "--oidc-issuer-url": ("issuer", "str"),
    "--client-id": ("client_id", "str"),
    "--oidc-client-id": ("client_id", "str"),
    "--oidc-client-secret": ("client_secret", "str"),
    "--client-secret-env": ("client_secret_env", "str"),
    "--scope": ("scopes", "list"),
    "--oidc-extra-scope": ("extra_scopes", "csv"),
    "--ca-file": ("ca_files", "list"),
    "--certificate-authority": ("ca_files", "list"),
    "--certificate-authority-data": ("ca_data", "list"),
    "--insecure": ("insecure", "bool"),
    "--insecure-skip-tls-verify": ("insecure", "bool"),
    # the password and refresh grants to a plain-http issuer (clear text): consent, by name
    "--allow-insecure-http": ("allow_http", "bool"),
    "--grant": ("grant", "str"),
    "--grant-type": ("grant", "str"),
    "--username": ("username", "str"),
    "--password": ("password", "str"),
    "--password-env": ("password_env", "str"),
    "--password-file": ("password_file", "str"),
    "--listen-port": ("listen_ports", "list"),
    "--listen-address": ("listen_addresses", "csv"),
    "--oidc-redirect-url": ("redirect_url", "str"),
    "--redirect-url": ("redirect_url", "str"),
    "--skip-open-browser": ("skip_open_browser", "bool"),
    "--no-browser": ("skip_open_browser", "bool"),
    "--browser-command": ("browser_command", "str"),
    "--authentication-timeout-sec": ("timeout", "str"),
    "--login-retry-after-sec": ("retry_after", "str"),
    "--oidc-auth-request-extra-params": ("extra_params", "csv"),
    "--auth-request-extra-params": ("extra_params", "csv"),
    "--cache-dir": ("cache_dir", "str"),
    "--token-cache-dir": ("cache_dir", "str"),
    "--token-cache-storage": ("cache_storage", "str"),
    "--force-refresh": ("force_refresh", "bool"),
    # Robots and fleets: token exchange, client credentials, one cluster's audience.
    "--client-secret-file": ("client_secret_file", "str"),
    "--connector-id": ("connector_id", "str"),
    "--subject-token-file": ("subject_token_file", "str"),
    "--subject-token-env": ("subject_token_env", "str"),
    "--subject-audience": ("subject_audience", "str"),
    "--subject-issuer": ("subject_issuer", "str"),
    "--audience": ("audience", "str"),
    "--oidc-pkce-method": ("pkce_method", "str"),
    # kubelogin's klog verbosity: accepted so its kubeconfigs run, and ignored.
    "-v": ("verbosity", "str"),
    "--v": ("verbosity", "str"),
    "--help": ("help", "bool"),
    "-h": ("help", "bool"),
}
# kubelogin flags dexkit does not implement: refused by name, with the reason.
UNSUPPORTED = {
    "--oidc-use-access-token": "the API server authenticates ID tokens; dexkit sends the ID "
                               "token",
    "--oidc-request-header": "Dex needs no extra headers",
    "--local-server-cert": "the loopback callback is plain http on 127.0.0.1 (RFC 8252)",
    "--local-server-key": "the loopback callback is plain http on 127.0.0.1 (RFC 8252)",
    "--open-url-after-authentication": "dexkit's callback page says to close the window",
    "--tls-renegotiation-once": "Dex does not renegotiate TLS",
    "--tls-renegotiation-freely": "Dex does not renegotiate TLS",
}
KUBELOGIN_ISSUER_FLAG = "--oidc-issuer-url"
GRANT_ALIASES = {"device-code": "device", "client_credentials": "client-credentials",
                 "token_exchange": "token-exchange"}
# GitHub Actions gives a job its ID token through these (with 'permissions: id-token: write').
ACTIONS_URL = "ACTIONS_ID_TOKEN_REQUEST_URL"
ACTIONS_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 - a variable's name
DEFAULT_GRANT = "authcode"


class OptionError(ValueError):
    """A command line that cannot be used; the slow path turns it into a usage error."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def parse(argv: list[str]) -> "dict[str, Any]":
    """``argv`` -> a dict of destinations; raises OptionError for anything it cannot use."""
    opts: dict[str, Any] = {"kubelogin_style": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        name, eq, value = arg.partition("=")
        spec = FLAGS.get(name)
        if spec is None:
            raise _unknown(arg, i)
        dest, kind = spec
        if name == KUBELOGIN_ISSUER_FLAG:
            opts["kubelogin_style"] = True
        if kind == "bool":
            opts[dest] = _boolean(name, value) if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise OptionError(f"{name} needs a value", f"pass {name} VALUE")
            value = argv[i]
            i += 1
            following = value.partition("=")[0]
            if value.startswith("-") and (following in FLAGS or following in UNSUPPORTED):
                # the value was forgotten and the next option taken for it; naming only the
                # option (never its value) keeps a following --password=... out of the error
                raise OptionError(f"{name} needs a value; {following} is the next option",
                                  f"pass {name} VALUE")
        if kind == "str":
            opts[dest] = value
        elif kind == "list":
            opts.setdefault(dest, []).append(value)
        else:
            opts.setdefault(dest, []).extend(v for v in value.split(",") if v)
    return opts


def _boolean(name: str, value: str) -> bool:
    if value in ("true", "True", "1"):
        return True
    if value in ("false", "False", "0"):
        return False
    raise OptionError(f"{name}= takes true or false (the value given is not shown)",
                      f"write {name} alone to turn it on")


def _unknown(arg: str, position: int) -> OptionError:
    """The error for an argument that is no option: named by its option, or by its position
    when it has none, never shown (it may be a password)."""
    words = arg.partition("=")[0].split()
    name = words[0] if words else ""
    if name in UNSUPPORTED:
        return OptionError(f"kubelogin's {name} is not supported by dexkit: {UNSUPPORTED[name]}",
                           f"remove {name} from the kubeconfig user's args")
    if not name.startswith("-"):
        return OptionError(f"argument {position} is not an option (a value without its "
                           "option? it is not shown, as it may be a secret)",
                           "dexkit token takes only --options, each value right after its "
                           "option; run 'dexkit token --help'")
    if len(words) > 1 or arg != arg.strip():
        known = name in FLAGS
        return OptionError(f"argument {position} holds {'the option ' if known else ''}"
                           f"'{name}' and more, separated by white space (the rest is not "
                           "shown)", f"give {name} and its value as two arguments (two lines "
                           "of the kubeconfig's args:), or join them with '='")
    near = [flag for flag in FLAGS if flag.startswith(name[:6]) and len(name) > 3]
    hint = f"did you mean {near[0]}? " if near else ""
    return OptionError(f"unknown option '{name}'", hint + "run 'dexkit token --help' for the "
                       "options")


# --- what the cached path needs: the cache key and the cache's place --------------------------


def grant_of(opts: "dict[str, Any]") -> str:
    """The grant, with kubelogin's names and its ``auto`` (password when a username is set)."""
    grant = opts.get("grant") or ("auto" if opts.get("kubelogin_style") else DEFAULT_GRANT)
    if grant == "auto":
        return "password" if opts.get("username") else "authcode"
    return GRANT_ALIASES.get(grant, grant)


def scopes_of(opts: "dict[str, Any]") -> tuple[str, ...]:
    base = list(opts.get("scopes") or DEFAULT_SCOPES)
    for scope in opts.get("extra_scopes") or ():
        if scope not in base:
            base.append(scope)
    return tuple(base)


def ca_material(opts: "dict[str, Any]") -> list[bytes]:
    """The CA certificates trusted for the issuer, as bytes: the same CA keys the same entry
    whether it comes from a file or inline (a kubeconfig with ``--embed-ca`` and a login with
    the project's ``ca.pem`` share a cache entry)."""
    found: list[bytes] = []
    for name in opts.get("ca_files") or ():
        try:
            # never a FIFO (kubectl would hang), a device or another user's file; the slow
            # path reads it the same way and says what is wrong
            found.append(readfile.read(os.path.expanduser(name), trust=True).strip())  # noqa: PTH111
        except OSError:
            found.append(b"unreadable:" + os.fsencode(name))
    for data in opts.get("ca_data") or ():
        from binascii import Error, a2b_base64

        try:
            found.append(a2b_base64(data.encode()).strip())
        except (Error, ValueError):
            found.append(b"undecodable:" + data.encode(errors="replace"))
    return found


def identity_key(opts: "dict[str, Any]", environ: "Mapping[str, str] | None" = None) -> str:
    """The cache entry's name: a hash of everything that changes whose token it is or whom it
    is trusted from (issuer, client, scopes, grant, username, CA, TLS verification, extra
    authorization parameters, the cluster's audience, and for a token exchange the connector
    and the subject token itself), and nothing else.

    The subject token is in the key because it is who the CI job is: on a runner that keeps
    its cache between jobs, another job (another repository) must never be answered from the
    first one's entry. It is read from its file or variable (cheap); a GitHub Actions job's is
    fetched only when needed, so its key holds the job's request token instead."""
    parts = [
        opts.get("issuer") or "", opts.get("client_id") or "", " ".join(sorted(scopes_of(opts))),
        grant_of(opts), opts.get("username") or "",
        "1" if opts.get("insecure") else "0",
        "&".join(sorted(opts.get("extra_params") or ())),
    ]
    # Appended only when set, so the keys of existing cache entries do not change.
    for name in ("audience", "connector_id", "subject_audience", "subject_issuer"):
        if opts.get(name):
            parts.append(f"{name}={opts[name]}")
    if grant_of(opts) == "token-exchange":
        parts.append(subject_fingerprint(opts, os.environ if environ is None else environ))
    digest = _sha256("\0".join(parts).encode(errors="surrogateescape"))
    # a set: the same CA given twice (a file and inline) is one trust
    for ca in sorted({_sha256(c).digest() for c in ca_material(opts)}):
        digest.update(ca)
    return str(digest.hexdigest())


def subject_fingerprint(opts: "dict[str, Any]", environ: "Mapping[str, str]") -> str:
    """What identifies the subject token without fetching it: its file's or variable's
    content, or a GitHub Actions job's request token."""

    raw = b""
    if opts.get("subject_token_file"):
        try:
            raw = readfile.read(os.path.expanduser(opts["subject_token_file"]),  # noqa: PTH111
                                max_bytes=1 << 16).strip()
        except OSError:
            raw = b"unreadable"
    elif opts.get("subject_token_env"):
        raw = environ.get(opts["subject_token_env"], "").strip().encode()
    else:
        raw = ("actions:" + environ.get(ACTIONS_TOKEN, "")).encode()
    return "subject=" + str(_sha256(raw).hexdigest())


def _sha256(data: bytes) -> "Any":
    # hashlib loads OpenSSL (~2 ms, a tenth of the cached path); the built-in SHA-256 gives the
    # same digest without it. Its module is chosen by the version rather than by trying: a
    # failed import is not remembered, and was tried again on every call (~0.07 ms each).
    import sys

    try:
        if sys.version_info >= (3, 12):
            from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]
        else:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
    except ImportError:
        from hashlib import sha256  # type: ignore[assignment,unused-ignore]
    return sha256(data)


def cache_dir_of(opts: "dict[str, Any]", environ: "Mapping[str, str]") -> str:
    """--token-cache-dir, else DEXKIT_TOKEN_CACHE, else $KUBECACHEDIR/dexkit (kubectl's and
    kubelogin's cache root), else ~/.kube/cache/dexkit."""
    chosen = opts.get("cache_dir") or environ.get("DEXKIT_TOKEN_CACHE")
    if chosen:
        return os.path.expanduser(str(chosen))  # noqa: PTH111
    root = environ.get("KUBECACHEDIR") or os.path.join(  # noqa: PTH118
        os.path.expanduser("~"), ".kube", "cache")  # noqa: PTH111
    return os.path.join(root, "dexkit")  # noqa: PTH118
