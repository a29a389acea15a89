"""A dexkit project on disk: dexkit.yaml, ssl/, and .dexkit/ for generated secrets.

``init_project`` is the use case behind ``dexkit init``. Rules:
- No dexkit.yaml: write one from the defaults (the guide's) and the given options.
- A dexkit.yaml exists: it is the source of truth. Options that change it rewrite it, after a
  backup beside it; without such options it is left byte for byte.
- TLS assets are then made to fit the config (see :func:`dexkit.pki.ensure_assets`).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from dexkit import files, pki
from dexkit.config import (
    CONFIG_FILE,
    Config,
    Connector,
    GitHubConnector,
    LDAPConnector,
    MockConnector,
    OIDCConnector,
    check_issuer,
    is_ip,
    load_config,
    to_data,
    validate_values,
)
from dexkit.errors import UsageError
from dexkit.issuer import parse_issuer
from dexkit.layout import STATE_DIR
from dexkit.layout import password_file as password_file
from dexkit.layout import tls_paths as tls_paths
from dexkit.oidc.settings import read_password
from dexkit.render.projectfile import project_file
from dexkit.scenarios import get_scenario

CONNECTOR_CHOICES = ("github", "static", "ldap", "oidc", "mock")
GITIGNORE = "# Written by dexkit: private keys and generated passwords never go to git.\n" \
            f"{STATE_DIR}/\nssl/*key.pem\nssl/backup-*/\n*.bak-*\n"
# The guide's static user, with its groups (the groups field needs Dex >= v2.45.0).
GUIDE_EMAIL = "admin@example.com"
GUIDE_GROUPS = ("team-a", "team-a/admins")


@dataclass(frozen=True)
class InitRequest:
    directory: Path
    issuer: str | None = None
    hosts: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    key_type: str | None = None
    ca_days: int | None = None
    cert_days: int | None = None
    connector: str | None = None
    force: bool = False
    # Start from scenarios/<name>/ instead of the defaults (a new project only).
    scenario: str | None = None


@dataclass
class InitResult:
    config: Config
    config_path: Path
    config_action: str  # created | kept | updated
    config_backup: Path | None = None
    tls_changes: list[pki.Change] = field(default_factory=list)
    password_files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def wanted_tls(config: Config) -> pki.Wanted:
    t = config.tls
    return pki.Wanted(tuple(t.hosts), tuple(t.ips), t.key_type, t.ca_days, t.cert_days)


def init_project(req: InitRequest, now: dt.datetime | None = None) -> InitResult:
    """Plan every file change, then apply them in one transaction under the project lock:
    a failure anywhere (a bad value, a full disk) leaves every file as it was."""
    moment = now or dt.datetime.now(dt.UTC)
    directory = req.directory
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is not a directory", "pass --dir a directory path")
    with files.project_lock(directory):
        return _init_locked(req, directory, moment)


def _init_locked(req: InitRequest, directory: Path, moment: dt.datetime) -> InitResult:
    path = directory / CONFIG_FILE
    existing = load_config(directory).config if path.exists() else None
    if req.scenario is not None and existing is not None:
        raise UsageError(f"{path} already exists; --scenario starts a new project",
                         "pick an empty directory, or run 'dexkit init' without --scenario to "
                         "keep the project as it is")
    config, passwords = _build_config(req, existing, directory)
    result = InitResult(config=config, config_path=path, config_action="kept")
    tx = files.Transaction()
    for email, password in passwords.items():
        target = password_file(directory, email)
        tx.write(target, password + "\n", files.PRIVATE, dir_mode=files.PRIVATE_DIR)
        result.password_files.append(target)
    plan = pki.plan_assets(tls_paths(directory, config), wanted_tls(config), force=req.force,
                           now=moment, tx=tx)
    text = render_config_file(config)
    # dexkit.yaml may be a symbolic link (into a dotfiles repo, say): the file it points to is
    # updated and the link stays; the backup goes beside that file.
    real = files.real_path(path)
    stem = real.with_name(f"{real.name}.bak-{files.timestamp(moment)}")
    if existing is None:
        tx.write(path, text, files.PUBLIC, follow_symlinks=True)
        result.config_action = "created"
    elif files.read_text(real) != text and config != existing:
        tx.write(path, text, files.file_mode(real), follow_symlinks=True, backup=stem)
        result.config_action = "updated"
    gitignore = directory / ".gitignore"
    if not gitignore.exists() and not gitignore.is_symlink():
        tx.write(gitignore, GITIGNORE)
    # Everything that could fail is computed before the first write: a failure after apply()
    # would leave a whole project written and the command reporting an error.
    warnings = config.warnings() + plan.warnings
    applied = tx.apply()
    result.tls_changes = plan.resolved(applied)
    result.config_backup = applied.backups.get(stem)
    result.warnings = warnings + applied.warnings
    return result


@dataclass
class RotateResult:
    config: Config
    changes: list[pki.Change]
    warnings: list[str]


def rotate_tls(directory: Path, *, ca: bool, now: dt.datetime | None = None) -> RotateResult:
    """``dexkit certs rotate``: a new serving certificate and key (and CA), old files to a
    backup, in one transaction under the project lock."""
    moment = now or dt.datetime.now(dt.UTC)
    load_config(directory)  # a project that is not there fails before anything is made
    with files.project_lock(directory):
        config = load_config(directory).config
        tx = files.Transaction()
        plan = pki.plan_rotate(tls_paths(directory, config), wanted_tls(config), ca=ca,
                               now=moment, tx=tx)
        applied = tx.apply()
    return RotateResult(config, plan.resolved(applied), plan.warnings + applied.warnings)


def render_config_file(config: Config) -> str:
    """The commented dexkit.yaml (see :func:`config_file_keys`)."""
    return config_file_keys(config)[0]


def config_file_keys(config: Config) -> tuple[str, list[str]]:
    """The commented dexkit.yaml, and the keys of its key-by-key sections it does not show
    (see :mod:`dexkit.render.projectfile`; a unit test keeps that list empty)."""

    return project_file(config)


def _build_config(req: InitRequest, existing: Config | None,
                  directory: Path) -> tuple[Config, dict[str, str]]:
    """The config to write (validated) and any new plaintext passwords to store."""
    passwords: dict[str, str] = {}
    if req.scenario is not None:
        if req.connector is not None:
            raise UsageError("--scenario and --connector cannot be combined",
                             "a scenario brings its own connectors; drop --connector")
        base, passwords = _scenario_settings(req.scenario, directory)
    else:
        base = to_data(existing or Config())
    if req.issuer is not None:
        base["issuer"] = req.issuer
    if req.issuer is not None or req.hosts or req.ips:
        base["tls"]["hosts"], base["tls"]["ips"] = _names(base["issuer"], req.hosts, req.ips)
    for key, value in (("keyType", req.key_type), ("caDays", req.ca_days),
                       ("certDays", req.cert_days)):
        if value is not None:
            base["tls"][key] = value
    if existing is None and req.issuer is not None:
        # The guide's NodePort follows the issuer's port when it is a valid NodePort.
        port = _port_of(req.issuer)
        if port is not None and 30000 <= port <= 32767:
            base["dex"]["service"]["nodePort"] = port
    if req.connector is not None:
        base["connectors"], base["staticUsers"], passwords = _connector_settings(
            req.connector, base, directory)
    return validate_values(base), passwords


def _names(issuer: str, hosts: tuple[str, ...],
           ips: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The issuer's host first, then the extra names, without duplicates."""
    try:
        # A bad issuer is reported as such, not as a bad tls.hosts entry.
        host = check_issuer(issuer).host
    except ValueError:
        host = ""
    out_hosts = [] if not host or is_ip(host) else [host]
    out_ips = [host] if host and is_ip(host) else []
    # Like mkcert, a --host that is an address is an IP SAN; --ip values stay IPs (and fail
    # validation if they are not).
    for name in (*hosts, *ips):
        target = out_ips if is_ip(name) or name in ips else out_hosts
        if name not in target:
            target.append(name)
    return out_hosts, out_ips


def _port_of(issuer: str) -> int | None:
    try:
        return parse_issuer(issuer).port
    except ValueError:
        return None  # validation says what is wrong with it


def _connector_settings(choice: str, base: dict[str, Any],
                        directory: Path) -> tuple[list[Any], list[Any], dict[str, str]]:
    if choice not in CONNECTOR_CHOICES:
        raise UsageError(f"unknown connector '{choice}'",
                         f"use one of {', '.join(CONNECTOR_CHOICES)}")
    if choice == "static":
        users, passwords = _static_users(base.get("staticUsers") or [], directory)
        return [], users, passwords
    defaults: dict[str, Connector] = {"github": GitHubConnector(), "ldap": LDAPConnector(),
                                      "oidc": OIDCConnector(), "mock": MockConnector()}
    fresh = defaults[choice]
    kept = [c for c in base["connectors"] if c.get("type") == fresh.type]
    return kept or [to_data(fresh)], [], {}


def _scenario_settings(name: str, directory: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A scenario's config with every default filled in, and the passwords of its users."""

    data = get_scenario(name).config_data()
    data["staticUsers"], passwords = complete_static_users(data.get("staticUsers") or [],
                                                           directory)
    return to_data(validate_values(data)), passwords


def _static_users(existing: list[dict[str, Any]],
                  directory: Path) -> tuple[list[Any], dict[str, str]]:
    """Keep existing static users; otherwise create the guide's admin with a fresh password."""
    if existing:
        return existing, {}
    return complete_static_users(
        [{"email": GUIDE_EMAIL, "username": "admin", "groups": list(GUIDE_GROUPS)}], directory)


def complete_static_users(users: list[dict[str, Any]],
                          directory: Path) -> tuple[list[Any], dict[str, str]]:
    """Static users as dexkit.yaml holds them, and the plaintext passwords to store.

    A user with a ``hash`` is kept as is. Any other gets a password (the one the project already
    stores in .dexkit/passwords/<email>, else a fresh one) and its bcrypt hash; ``userID``
    defaults to a UUID derived from the email (stable across runs, as Dex's examples use a fixed
    one) and ``username`` to the email's local part.
    """
    out: list[Any] = []
    passwords: dict[str, str] = {}
    for user in users:
        if not isinstance(user, dict) or user.get("hash"):
            out.append(user)  # validation reports anything malformed, with its key path
            continue
        email = str(user.get("email", ""))
        if "/" in email or email.startswith("."):
            # The email names the password file: it must stay inside .dexkit/passwords/.
            raise UsageError(f"static user email '{email}' cannot name a password file",
                             "use a plain address such as admin@example.com")
        stored = password_file(directory, email)
        password = read_password(stored) if email and (stored.is_file() or stored.is_symlink()) \
            else secrets.token_urlsafe(18)
        out.append({
            "email": email,
            "username": user.get("username") or email.partition("@")[0],
            "userID": user.get("userID") or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                           f"dexkit:{email}")),
            "hash": hash_password(password),
            **{k: v for k, v in user.items() if k not in ("email", "username", "userID")},
        })
        passwords[email] = password
    return out, passwords


def hash_password(password: str) -> str:
    # Cost 10, the lowest Dex accepts: v2.45.1 refuses a login against a static password whose
    # hash costs less (server/api.go checkCost, bcrypt.DefaultCost), and its check of the
    # password is most of a password grant's time.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
