"""``dexkit token``'s command line into :class:`LoginSettings`: :func:`build_settings`, the
one place a login's settings are made (every way dexkit logs in describes its login as that
command line), and the rule each flag's value must follow."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dexkit import redact
from dexkit.errors import UsageError
from dexkit.issuer import IssuerError, parse_issuer
from dexkit.oidc import options
from dexkit.oidc.cache import STORAGES
from dexkit.oidc.settings.model import (
    AUDIENCE_SCOPE,
    DEFAULT_LISTEN,
    DEFAULT_RETRY_AFTER,
    DEFAULT_TIMEOUT,
    LOOPBACK_HOSTS,
    OOB_REDIRECT,
    CacheStorage,
    Grant,
    LoginSettings,
    SubjectSource,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


def build_settings(argv: list[str] | tuple[str, ...], *,
                   environ: Mapping[str, str] | None = None,
                   project_dir: Path | None = None) -> LoginSettings:
    """The one place a login's settings are made: from ``dexkit token``'s command line."""
    env = os.environ if environ is None else environ
    try:
        opts = options.parse(list(argv))
    except options.OptionError as exc:
        raise UsageError(exc.message, exc.hint) from None
    for required, flag in (("issuer", "--issuer"), ("client_id", "--client-id")):
        if not opts.get(required):
            raise UsageError(f"{flag} is missing", f"pass {flag} (kubelogin: "
                             f"--oidc-{'issuer-url' if required == 'issuer' else 'client-id'})")
    grant = _grant(options.grant_of(opts))
    warnings = _check_issuer(opts["issuer"], grant, allow_http=bool(opts.get("allow_http")))
    scopes = options.scopes_of(opts)
    audience = opts.get("audience") or None
    if audience is not None and AUDIENCE_SCOPE + audience not in scopes:
        scopes = (*scopes, AUDIENCE_SCOPE + audience)
    robot = _robot_settings(opts, grant, env)
    if opts.get("password") is not None:
        warnings.append("--password puts the password in the process's arguments, which every "
                        "user of this machine can read (ps); use --password-file or "
                        "DEXKIT_PASSWORD instead")
    if opts.get("insecure"):
        warnings.append("TLS verification is off (--insecure): anyone on the path can "
                        "impersonate Dex and read the password and tokens")
    return LoginSettings(
        issuer=opts["issuer"], client_id=opts["client_id"], scopes=scopes,
        grant=grant, cache_key=options.identity_key(opts, env),
        session_key=_session_key(opts, scopes, env) if audience else None,
        cache_dir=Path(options.cache_dir_of(opts, env)),
        cache_storage=_storage(opts.get("cache_storage") or "disk"),
        client_secret="" if grant is Grant.CLIENT_CREDENTIALS else _client_secret(opts, env),
        username=opts.get("username"),
        password_arg=opts.get("password"),
        password_file=Path(opts["password_file"]) if opts.get("password_file") else None,
        password_env=opts.get("password_env") or "DEXKIT_PASSWORD", project_dir=project_dir,
        ca_files=tuple(Path(p).expanduser() for p in opts.get("ca_files") or ()),
        ca_data=tuple(_ca_data(d) for d in opts.get("ca_data") or ()),
        insecure=bool(opts.get("insecure")), allow_http=bool(opts.get("allow_http")),
        listen=_listen(opts),
        redirect_url=_redirect(opts.get("redirect_url"), grant),
        redirect_style="kubelogin" if opts.get("kubelogin_style") else "dexkit",
        extra_params=_extra_params(opts.get("extra_params") or ()),
        open_browser=not opts.get("skip_open_browser"),
        browser_command=opts.get("browser_command"), timeout=_timeout(opts.get("timeout")),
        retry_after=_retry_after(opts.get("retry_after")),
        force_refresh=bool(opts.get("force_refresh")), warnings=tuple(warnings),
        argv=tuple(argv), audience=audience, **robot)


def _session_key(opts: dict[str, Any], scopes: tuple[str, ...],
                 environ: Mapping[str, str]) -> str:
    """The cache entry of the login that every cluster's token is narrowed from: the same
    command line without the cluster's audience, with the login's scopes."""
    return options.identity_key({**opts, "audience": None, "scopes": list(scopes),
                                 "extra_scopes": None}, environ)


def _robot_settings(opts: dict[str, Any], grant: Grant,
                    environ: Mapping[str, str]) -> dict[str, Any]:
    """The token exchange's or client_credentials' own settings, checked now (before any
    network): what is missing is named with where dexkit looks for it."""
    found: dict[str, Any] = {}
    if grant is Grant.CLIENT_CREDENTIALS:
        if opts.get("client_secret") is not None:
            raise UsageError("--oidc-client-secret puts the client secret on the command line, "
                             "where ps shows it and from where it lands in kubeconfig",
                             "pass --client-secret-file FILE or --client-secret-env VAR")
        if not (opts.get("client_secret_file") or opts.get("client_secret_env")):
            raise UsageError(f"the client_credentials grant needs client {opts['client_id']}'s "
                             "secret", "pass --client-secret-file FILE or --client-secret-env "
                             "VAR (never the secret itself)")
        # Read when the grant runs: the kubeconfig is written where the secret may not be.
        found["client_secret_source"] = (
            ("file", str(Path(opts["client_secret_file"]).expanduser()))
            if opts.get("client_secret_file") else ("env", str(opts["client_secret_env"])))
    if grant is not Grant.TOKEN_EXCHANGE:
        return found
    if not opts.get("connector_id"):
        raise UsageError("--grant token-exchange needs --connector-id",
                         "name the Dex connector that verifies the CI job's token (the "
                         "tokenExchange connector in dexkit.yaml)")
    found["connector_id"] = opts["connector_id"]
    found["subject"] = _subject(opts)
    found["subject_audience"] = opts.get("subject_audience") or None
    found["subject_issuer"] = opts.get("subject_issuer") or None
    return found


def _subject(opts: dict[str, Any]) -> SubjectSource:
    """A file or a variable when named; else the GitHub Actions job's token, looked for when
    the exchange runs (the kubeconfig is written where no job runs)."""
    if opts.get("subject_token_file"):
        return SubjectSource("file", str(Path(opts["subject_token_file"]).expanduser()))
    if opts.get("subject_token_env"):
        return SubjectSource("env", str(opts["subject_token_env"]))
    return SubjectSource("github-actions", "")


def _check_issuer(issuer: str, grant: Grant, *, allow_http: bool) -> list[str]:
    """What must hold for dexkit token to use ``issuer`` at all (a URL it can send a request
    to), and the warnings it gets. Not dexkit.yaml's issuer rules: a kubeconfig may name any
    OIDC provider, however its issuer is spelled.

    A plain-http issuer reads everything sent to it in clear text: the password grant (the
    password) is refused unless ``--allow-insecure-http`` says so (the refresh grant, the
    refresh token, likewise: see dexkit.oidc.session.obtain), and every other use is warned.
    """
    # The one issuer parse (dexkit.issuer): what passes here, httpx and Go read alike; it
    # refuses control and non-ASCII characters, a port that is not one, and user:password@.
    try:
        parts = parse_issuer(issuer)
    except IssuerError as exc:
        raise UsageError(f"--issuer: {exc}", exc.hint) from None
    if parts.scheme not in ("https", "http"):
        raise UsageError(f"--issuer {redact.url(issuer)}: not an https URL",
                         "pass Dex's issuer URL, e.g. https://dex.example.com:32000")
    if parts.scheme == "https":
        return []
    if grant is Grant.PASSWORD and not allow_http:
        raise UsageError(f"the password grant would send the password to {issuer} in clear "
                         "text (plain http)", "use Dex's https issuer, or pass "
                         "--allow-insecure-http for a test issuer on a network you trust")
    sent = "the password and tokens" if grant is Grant.PASSWORD else "the login code and tokens"
    return [f"THE ISSUER IS PLAIN HTTP ({issuer}): {sent} travel in clear text, and anyone on "
            "the path can read or replace them; use Dex's https issuer"]


def _grant(name: str) -> Grant:
    try:
        return Grant(name)
    except ValueError:
        raise UsageError(f"unknown grant '{name}'", "use one of authcode, authcode-keyboard, "
                         "device (kubelogin: device-code), password, token-exchange, "
                         "client-credentials") from None


def _storage(name: str) -> CacheStorage:
    if name not in STORAGES:
        raise UsageError(f"unknown token cache storage '{name}'",
                         "use one of disk, keyring, none")
    return CacheStorage(name)


def _client_secret(opts: dict[str, Any], environ: Mapping[str, str]) -> str:
    if opts.get("client_secret") is not None:
        return str(opts["client_secret"])
    if opts.get("client_secret_file"):
        path = Path(opts["client_secret_file"]).expanduser()
        try:
            return path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the client secret file {path}: "
                             f"{getattr(exc, 'strerror', None) or exc}",
                             "check --client-secret-file") from None
    name = opts.get("client_secret_env")
    if name:
        if name not in environ:
            raise UsageError(f"the client secret variable {name} is not set",
                             f"export {name}, or drop --client-secret-env for a public client")
        return environ[name]
    return ""


def _ca_data(text: str) -> bytes:
    # base64 and binascii (~0.8 ms, 4 modules with struct) only for an embedded CA: the
    # '--help' of token, login, verify and kubeconfig load this module.
    import base64  # noqa: PLC0415
    import binascii  # noqa: PLC0415

    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("--certificate-authority-data is not base64",
                         "pass the CA's PEM, base64-encoded (base64 -w0 ca.pem)") from None


def _listen(opts: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    found: list[tuple[str, int]] = []
    for text in opts.get("listen_addresses") or ():
        host, sep, port = text.rpartition(":")
        if not sep:
            raise UsageError(f"--listen-address {text}: not HOST:PORT",
                             "for example --listen-address 127.0.0.1:8000")
        found.append((host.strip("[]") or "127.0.0.1", _port(port, "--listen-address")))
    for port in opts.get("listen_ports") or ():
        found.append(("127.0.0.1", _port(port, "--listen-port")))
    for host, _ in found:
        if host not in LOOPBACK_HOSTS:
            raise UsageError(f"--listen-address {host}: the login callback listens on a "
                             "loopback address only",
                             "use 127.0.0.1 (nothing off this machine may deliver a code)")
    return tuple(found) or DEFAULT_LISTEN


def _port(text: str, flag: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise UsageError(f"{flag}: '{text}' is not a port number", "use 0-65535 (0: any)")
    return int(text)


def _redirect(url: str | None, grant: Grant) -> str | None:
    if url is None:
        return OOB_REDIRECT if grant is Grant.KEYBOARD else None
    if url == OOB_REDIRECT:
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--oidc-redirect-url {url}: not an http(s) URL or {OOB_REDIRECT}",
                         "for example --oidc-redirect-url http://localhost:8000")
    return url


def _extra_params(items: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    found = []
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise UsageError(f"--oidc-auth-request-extra-params {item}: not KEY=VALUE",
                             "for example --oidc-auth-request-extra-params ttl=86400")
        found.append((name, value))
    return tuple(found)


def _timeout(text: str | None) -> float:
    if text is None:
        return DEFAULT_TIMEOUT
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise UsageError(f"--authentication-timeout-sec {text}: not a positive number of "
                         "seconds", "for example --authentication-timeout-sec 60")
    return float(text)


def _retry_after(text: str | None) -> float:
    if text is None:
        return DEFAULT_RETRY_AFTER
    if not (text.isascii() and text.isdigit()):
        raise UsageError(f"--login-retry-after-sec {text}: not a number of seconds",
                         "for example --login-retry-after-sec 300 (0: no pause)")
    return float(text)
