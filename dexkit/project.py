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
    is_ip,
    issuer_host,
    load_config,
    to_data,
    validate_values,
)
from dexkit.errors import UsageError
from dexkit.render import render_template

STATE_DIR = ".dexkit"
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


@dataclass
class InitResult:
    config: Config
    config_path: Path
    config_action: str  # created | kept | updated
    config_backup: Path | None = None
    tls_changes: list[pki.Change] = field(default_factory=list)
    password_files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def tls_paths(directory: Path, config: Config) -> pki.TLSPaths:
    return pki.TLSPaths(directory / config.tls.dir)


def wanted_tls(config: Config) -> pki.Wanted:
    t = config.tls
    return pki.Wanted(tuple(t.hosts), tuple(t.ips), t.key_type, t.ca_days, t.cert_days)


def password_file(directory: Path, email: str) -> Path:
    return directory / STATE_DIR / "passwords" / email


def init_project(req: InitRequest, now: dt.datetime | None = None) -> InitResult:
    moment = now or dt.datetime.now(dt.UTC)
    directory = req.directory
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is not a directory", "pass --dir a directory path")
    path = directory / CONFIG_FILE
    existing = load_config(directory).config if path.exists() else None
    config, passwords = _build_config(req, existing, directory)
    result = InitResult(config=config, config_path=path, config_action="kept")
    directory.mkdir(parents=True, exist_ok=True)
    # Keys and passwords first, config last: a failure leaves no config that points at nothing.
    for email, password in passwords.items():
        target = password_file(directory, email)
        files.ensure_dir(target.parent)
        files.ensure_dir(target.parent.parent)
        files.atomic_write(target, password + "\n", files.PRIVATE)
        result.password_files.append(target)
    paths = tls_paths(directory, config)
    files.ensure_dir(paths.dir)
    result.tls_changes = pki.ensure_assets(paths, wanted_tls(config), force=req.force, now=moment)
    text = render_config_file(config)
    if existing is None:
        files.atomic_write(path, text)
        result.config_action = "created"
    elif path.read_text() != text and config != existing:
        result.config_backup = files.backup_copy(path, moment)
        files.atomic_write(path, text)
        result.config_action = "updated"
    gitignore = directory / ".gitignore"
    if not gitignore.exists():
        files.atomic_write(gitignore, GITIGNORE)
    result.warnings = config.warnings()
    return result


def render_config_file(config: Config) -> str:
    return render_template("project/dexkit.yaml.j2", c=config, d=to_data(config))


def _build_config(req: InitRequest, existing: Config | None,
                  directory: Path) -> tuple[Config, dict[str, str]]:
    """The config to write (validated) and any new plaintext passwords to store."""
    base: dict[str, Any] = to_data(existing or Config())
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
    passwords: dict[str, str] = {}
    if req.connector is not None:
        base["connectors"], base["staticUsers"], passwords = _connector_settings(
            req.connector, base, directory)
    return validate_values(base), passwords


def _names(issuer: str, hosts: tuple[str, ...],
           ips: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The issuer's host first, then the extra names, without duplicates."""
    try:
        host = issuer_host(issuer)
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
    from urllib.parse import urlsplit

    try:
        return urlsplit(issuer).port
    except ValueError:
        return None


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


def _static_users(existing: list[dict[str, Any]],
                  directory: Path) -> tuple[list[Any], dict[str, str]]:
    """Keep existing static users; otherwise create the guide's admin with a fresh password."""
    if existing:
        return existing, {}
    stored = password_file(directory, GUIDE_EMAIL)
    password = stored.read_text().strip() if stored.exists() else secrets.token_urlsafe(18)
    user = {
        "email": GUIDE_EMAIL,
        "username": "admin",
        # Stable across runs: derived from the email, as Dex's examples use a fixed UUID.
        "userID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"dexkit:{GUIDE_EMAIL}")),
        "hash": hash_password(password),
        "groups": list(GUIDE_GROUPS),
    }
    return [user], {GUIDE_EMAIL: password}


def hash_password(password: str) -> str:
    # Cost 10 as in Dex's docs: verification stays fast enough for the password grant.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
