"""One typed description of a login, built in one place.

Every way dexkit logs in (``dexkit token`` for kubectl, ``dexkit login``, ``dexkit verify``,
``dexkit doctor --login``) describes the login as the command line of ``dexkit token``, and
:func:`build_settings` turns that command line (parsed by :mod:`dexkit.oidc.options`) into a
:class:`LoginSettings`. A project's login is first written as that command line by
:func:`project_token_args` — the very arguments ``dexkit kubeconfig`` writes into kubeconfig —
so ``dexkit login`` fills exactly the cache entry kubectl's ``dexkit token`` reads.

The password, for the password grant, is looked up in one order, first found wins:

1. ``--password`` on the command line (kubelogin's flag; warned: every user of the machine
   can read a process's arguments);
2. ``--password-file FILE``;
3. the environment variable named by ``--password-env`` (default ``DEXKIT_PASSWORD``);
4. the project's ``.dexkit/passwords/<username>`` (written by ``dexkit init --connector
   static``), for commands run in a project;
5. a prompt, when there is a terminal to ask on.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dexkit import redact
from dexkit.errors import UsageError
from dexkit.issuer import IssuerError, parse_issuer
from dexkit.oidc import DEFAULT_SCOPES, options
from dexkit.oidc.cache import STORAGES

OFFLINE_ACCESS = "offline_access"

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dexkit.config import Config


class Grant(StrEnum):
    AUTHCODE = "authcode"
    KEYBOARD = "authcode-keyboard"
    DEVICE = "device"
    PASSWORD = "password"  # noqa: S105 - the grant's name
    # Robots: a CI job's own ID token exchanged at Dex (RFC 8693), and a client as itself.
    TOKEN_EXCHANGE = "token-exchange"  # noqa: S105 - the grant's name
    CLIENT_CREDENTIALS = "client-credentials"

    @property
    def needs_stdin(self) -> bool:
        """The keyboard flow reads the code from stdin; a password may have to be asked."""
        return self is Grant.KEYBOARD

    @property
    def is_robot(self) -> bool:
        """No person and no refresh token: each token is asked for afresh."""
        return self in (Grant.TOKEN_EXCHANGE, Grant.CLIENT_CREDENTIALS)


class CacheStorage(StrEnum):
    DISK = "disk"
    KEYRING = "keyring"
    NONE = "none"


OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"
# Dex's cross-client scope: the token's aud gets <client id> when that client trusts ours.
AUDIENCE_SCOPE = "audience:server:client_id:"
# A robot has no refresh token (Dex refuses offline_access and federated:id for
# client_credentials, and answers a token exchange with no refresh token).
ROBOT_DROPPED_SCOPES = ("offline_access", "federated:id")
# A client as itself has no email address either: with the email scope Dex would add
# email_verified: false, which the API server's email_verified rule refuses. (A token
# exchange keeps it: the CI job's mapped claim is the email claim.)
CLIENT_DROPPED_SCOPES = ("email",)


@dataclass(frozen=True)
class SubjectSource:
    """Where a token exchange's subject token comes from: a file, a variable, or the GitHub
    Actions job's token service (the URL and bearer GitHub gives a job with id-token: write)."""

    kind: str  # "file" | "env" | "github-actions"
    where: str  # the path, the variable's name, or the token service's URL

    def describe(self) -> str:
        return {"file": f"the file {self.where}", "env": f"the variable {self.where}",
                "github-actions": "the GitHub Actions job's ID token"}[self.kind]


DEFAULT_LISTEN = (("127.0.0.1", 8000), ("127.0.0.1", 18000))
DEFAULT_TIMEOUT = 180  # kubelogin's: a login abandoned in the browser must not hang kubectl
DEFAULT_RETRY_AFTER = 60  # s without a new browser login after one failed (dexkit.oidc.attempts)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class LoginSettings:
    """Everything a login needs; secrets are never in its repr."""

    issuer: str
    client_id: str
    scopes: tuple[str, ...]
    grant: Grant
    cache_key: str
    cache_dir: Path
    # For one cluster of several: the entry of the login its token is narrowed from.
    session_key: str | None = None
    cache_storage: CacheStorage = CacheStorage.DISK
    client_secret: str = field(default="", repr=False)
    username: str | None = None
    password_arg: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    password_env: str = "DEXKIT_PASSWORD"  # noqa: S105 - a variable's name
    project_dir: Path | None = None
    ca_files: tuple[Path, ...] = ()
    ca_data: tuple[bytes, ...] = field(default=(), repr=False)
    insecure: bool = False
    # the password and refresh grants to a plain-http issuer were consented to
    allow_http: bool = False
    listen: tuple[tuple[str, int], ...] = DEFAULT_LISTEN
    redirect_url: str | None = None
    # kubelogin's redirect default is http://localhost:<port> (no path); dexkit's has /callback.
    redirect_style: str = "dexkit"
    extra_params: tuple[tuple[str, str], ...] = ()
    open_browser: bool = True
    browser_command: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    retry_after: float = DEFAULT_RETRY_AFTER
    force_refresh: bool = False
    warnings: tuple[str, ...] = ()
    argv: tuple[str, ...] = field(default=(), repr=False, compare=False)
    # One cluster of several: the token is narrowed to this audience (see token_scopes).
    audience: str | None = None
    # Token exchange: Dex's connector, where the CI job's ID token comes from, and what its
    # aud and iss must be (checked before it is sent: Dex does not check the audience).
    connector_id: str | None = None
    subject: SubjectSource | None = None
    subject_audience: str | None = None
    subject_issuer: str | None = None
    # client_credentials: ("file", path) or ("env", name), read when the grant runs.
    client_secret_source: tuple[str, str] | None = None

    def robot_secret(self, environ: Mapping[str, str]) -> str:
        """The client secret for client_credentials, from its file or variable, now."""
        if self.client_secret_source is None:
            return self.client_secret
        kind, where = self.client_secret_source
        if kind == "env":
            if not environ.get(where):
                raise UsageError(f"the client secret variable {where} is not set",
                                 f"export {where} with client {self.client_id}'s secret, or "
                                 "pass --client-secret-file FILE")
            return environ[where]
        try:
            return Path(where).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the client secret file {where}: "
                             f"{getattr(exc, 'strerror', None) or exc}",
                             "check --client-secret-file") from None

    @property
    def token_scopes(self) -> tuple[str, ...]:
        """The scopes of the token handed out: for one cluster of several, the login's scopes
        with only that cluster's audience scope (Dex makes it the token's aud, beside the login
        client); a robot's without what Dex refuses or would mark unverified (see
        :data:`ROBOT_DROPPED_SCOPES`, :data:`CLIENT_DROPPED_SCOPES`)."""
        scopes = self.scopes
        if self.audience is not None:
            scopes = (*(s for s in scopes if not s.startswith(AUDIENCE_SCOPE)),
                      AUDIENCE_SCOPE + self.audience)
        if self.grant.is_robot:
            scopes = tuple(s for s in scopes if s not in ROBOT_DROPPED_SCOPES)
        if self.grant is Grant.CLIENT_CREDENTIALS:
            scopes = tuple(s for s in scopes if s not in CLIENT_DROPPED_SCOPES)
        return scopes

    def password(self, environ: Mapping[str, str], *, may_prompt: bool) -> str | None:
        """The password by the documented order (module docstring), or None."""
        if self.password_arg is not None:
            return self.password_arg
        if self.password_file is not None:
            # dexkit.files (~10 modules, ~5 ms: tempfile, random) only when a file is read: the
            # '--help' of token, login, verify and kubeconfig load this module.
            from dexkit.files import read_text  # noqa: PLC0415

            try:
                # The user named this file: a link (a mounted Secret) or a pipe (<(pass show
                # dex)) is theirs to give; a device or a huge file is still refused.
                return read_text(self.password_file.expanduser(), pipe=True,
                                 max_bytes=PASSWORD_MAX_BYTES, what="a password").strip()
            except OSError as exc:
                raise UsageError(f"cannot read the password file {self.password_file}: "
                                 f"{exc.strerror or exc}", "check --password-file") from None
        if environ.get(self.password_env):
            return environ[self.password_env]
        if self.project_dir is not None and self.username:
            stored = stored_password(self.project_dir, self.username)
            if stored.is_file() or stored.is_symlink():
                return read_password(stored)
        if may_prompt and sys.stdin.isatty():
            # getpass (~0.5 ms, 2 modules with termios) only for a prompt: the '--help' of token,
            # login, verify and kubeconfig load this module.
            import getpass  # noqa: PLC0415

            return getpass.getpass(f"Password for {self.username}: ")
        return None

    def with_password(self, environ: Mapping[str, str], *, may_prompt: bool) -> LoginSettings:
        """For the password grant: these settings with the password found now (before any
        network), or a usage error that says where dexkit looks."""
        if self.grant is not Grant.PASSWORD:
            return self
        if not self.username:
            raise UsageError("the password grant needs a username", "pass --username")
        found = self.password(environ, may_prompt=may_prompt)
        if found is None:
            raise UsageError(f"no password for {self.username}", self.password_hint())
        return replace(self, password_arg=found, password_file=None)

    def looking_only(self) -> LoginSettings:
        """These settings for a login that only looks (``verify``, ``doctor --login``, the
        sandbox's readiness probe): without ``offline_access``, so Dex issues no refresh token.
        Dex keeps one refresh token per user and client and deletes the older one when it
        issues another: a look that asked for one would log the user's kubectl out (its next
        refresh refused, found by the node's fault tests)."""
        return replace(self, scopes=tuple(s for s in self.scopes if s != OFFLINE_ACCESS))

    def password_hint(self) -> str:
        return (f"set {self.password_env}, pass --password-file FILE, or run 'dexkit init "
                "--connector static' which keeps one in .dexkit/passwords/ (dexkit looks in "
                f"that order: --password, --password-file, {self.password_env}, the "
                "project's .dexkit/passwords/)")

    @property
    def plain_http(self) -> bool:
        """The issuer is plain http: everything sent to it can be read on the way."""
        return self.issuer.startswith("http://")

    def login_command(self) -> str:
        """The command that logs in with these settings in a terminal and fills the cache
        (secret values hidden: it is printed)."""
        return shlex.join(["dexkit", "login", *redact.argv(self.argv)])


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


# --- a project's login, as the command line of `dexkit token` --------------------------------


def default_username(config: Config) -> str | None:
    return config.static_users[0].email if config.static_users else None


def project_token_args(directory: Path, config: Config, *, grant: str = "authcode",
                       username: str | None = None, client_id: str | None = None,
                       scopes: tuple[str, ...] | None = None, embed_ca: bool = False,
                       password_file: bool = True, cluster: str | None = None) -> list[str]:
    """``dexkit token``'s arguments for logging in to this project's Dex.

    ``client_id`` and ``scopes`` default to dexkit.yaml's (the client the API server trusts;
    ``groups`` only when the API server maps a groups claim). The CA is the project's
    ``ca.pem``, by absolute path or inline (``embed_ca``). For the password grant the
    username defaults to the first static user, and ``--password-file`` points at the
    project's stored password when there is one.

    With several clusters, ``cluster`` (or the one ``config`` was made for) gets the login
    client, every cluster's audience scope (one login for all) and ``--audience`` its own.
    Robots: token-exchange names the tokenExchange connector, the audience and issuer its
    subject tokens must have; client-credentials logs in as the (first) robot client, its
    secret from ``$DEXKIT_CLIENT_SECRET`` unless another source follows, for the audience
    of the API server.
    """
    ca = project_ca(directory.resolve(), config)
    chosen = config.cluster_named(cluster) if cluster else config.selected_cluster
    audience = chosen.client_id if chosen else None
    login = config.cluster_login_client(chosen) if chosen else config.login_client_id
    if grant == Grant.CLIENT_CREDENTIALS:
        client_id = client_id or _robot(config)
        audience = audience or config.api_server.client_id
    args = ["--issuer", config.issuer, "--client-id", client_id or login]
    if embed_ca:
        import base64  # noqa: PLC0415

        # dexkit.files (~10 modules, ~5 ms: tempfile, random) only when a file is read: the
        # '--help' of token, login, verify and kubeconfig load this module.
        from dexkit.files import read_limited  # noqa: PLC0415

        try:
            data = read_limited(ca, trust=True)
        except OSError as exc:
            raise UsageError(f"cannot read the CA {ca}: {exc.strerror}",
                             "run 'dexkit init' first") from None
        args += ["--certificate-authority-data", base64.b64encode(data).decode()]
    else:
        args += ["--ca-file", str(ca)]
    for scope in scopes or project_scopes(config):
        args += ["--scope", scope]
    if chosen is not None and grant != Grant.CLIENT_CREDENTIALS:
        for other in config.clusters:
            if config.cluster_login_client(other) == login:
                args += ["--scope", AUDIENCE_SCOPE + other.client_id]
    if audience is not None:
        args += ["--audience", audience]
    if grant != Grant.AUTHCODE:
        args += ["--grant", grant]
    if grant == Grant.TOKEN_EXCHANGE:
        args += _exchange_args(config)
    if grant == Grant.CLIENT_CREDENTIALS:
        args += ["--client-secret-env", ROBOT_SECRET_ENV]
    if grant == Grant.PASSWORD:
        user = username or default_username(config)
        if not user:
            raise UsageError("the password grant needs --username", "name the user to log in as")
        args += ["--username", user]
        stored = stored_password(directory.resolve(), user)
        if password_file and stored.is_file():
            args += ["--password-file", str(stored)]
    return args


# Where 'dexkit verify --grant client-credentials' and a project's kubeconfig read a robot's
# secret from, unless --client-secret-file or another --client-secret-env follows.
ROBOT_SECRET_ENV = "DEXKIT_CLIENT_SECRET"  # noqa: S105 - a variable's name


def _robot(config: Config) -> str:
    if not config.robot_ids:
        raise UsageError("no client in dexkit.yaml logs in as itself",
                         "add clientCredentials to a confidential client under 'clients'")
    return config.robot_ids[0]


def _exchange_args(config: Config) -> list[str]:
    # The config model (~45 ms, ~46 modules) only for a project's login: the '--help' of
    # token, login, verify and kubeconfig load this module.
    from dexkit.config import OIDCConnector  # noqa: PLC0415

    found = [c for c in config.connectors
             if isinstance(c, OIDCConnector) and c.token_exchange is not None]
    if not found:
        raise UsageError("no connector in dexkit.yaml takes token exchanges",
                         "add an oidc connector with tokenExchange (the CI system's issuer)")
    conn = found[0]
    assert conn.token_exchange is not None
    return ["--connector-id", conn.id, "--subject-issuer", conn.issuer,
            "--subject-audience", conn.token_exchange.audience]


# The project's paths (dexkit.layout, ~0.8 ms) for the kubeconfig a project login writes;
# imported here, not at the top, so that the token path (which loads this module) loads one
# module fewer.
def project_ca(directory: Path, config: Config) -> Path:
    from dexkit.layout import tls_paths  # noqa: PLC0415

    return tls_paths(directory, config).ca


def stored_password(directory: Path, username: str) -> Path:
    from dexkit.layout import password_file  # noqa: PLC0415

    return password_file(directory, username)


PASSWORD_MAX_BYTES = 64 * 1024


def read_password(path: Path) -> str:
    """A project's stored password: from a regular file of the user's own that nobody else can
    read, never through a symbolic link (a cloned project must not turn any local file into
    the password it sends to its own issuer); see :mod:`dexkit.readfile`."""
    # dexkit.files (~10 modules, ~5 ms: tempfile, random) only when a file is read: the
    # '--help' of token, login, verify and kubeconfig load this module.
    from dexkit.files import read_text  # noqa: PLC0415

    return read_text(path, secret=True, max_bytes=PASSWORD_MAX_BYTES, what="a password").strip()


def project_scopes(config: Config) -> tuple[str, ...]:
    """dexkit's scopes, without ``groups`` when the API server maps no groups claim."""
    if config.api_server.groups_claim:
        return DEFAULT_SCOPES
    return tuple(s for s in DEFAULT_SCOPES if s != "groups")


def project_settings(directory: Path, config: Config, *, grant: str = "authcode",
                     username: str | None = None, client_id: str | None = None,
                     scopes: tuple[str, ...] | None = None, extra: list[str] | None = None,
                     environ: Mapping[str, str] | None = None,
                     cluster: str | None = None) -> LoginSettings:
    """A project's login settings: :func:`project_token_args`, then ``extra`` (later flags
    win), through :func:`build_settings`."""
    # No --password-file: the project's stored password comes after the environment.
    args = project_token_args(directory, config, grant=grant, username=username,
                              client_id=client_id, scopes=scopes, password_file=False,
                              cluster=cluster)
    return build_settings([*args, *(extra or [])], environ=environ,
                          project_dir=directory.resolve())
