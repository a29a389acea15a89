"""A login, typed: the grants, :class:`LoginSettings` (everything a login needs, its secrets
out of its repr) and where its password is found, in the order :mod:`dexkit.oidc.settings`
documents."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from dexkit import redact
from dexkit.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

OFFLINE_ACCESS = "offline_access"


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


# The project's stored password (dexkit.layout, ~0.8 ms): imported in the function, not at the
# top, so that the token path (which loads this module) loads one module fewer.
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
