"""The project's TLS files as a plan: what ``init`` creates, what ``certs rotate`` re-issues, and
why; the plan is applied through one :class:`~dexkit.files.Transaction`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509

from dexkit import files
from dexkit.errors import TLSError
from dexkit.pki.checks import (
    ROTATE_CA,
    TLSPaths,
    _expired,
    _within,
    ca_problems,
    check_key_dir,
    check_key_modes,
)
from dexkit.pki.inspection import days_left, key_matches, key_type_of, load_cert, load_key, sans_of
from dexkit.pki.issue import (
    PrivateKey,
    ca_common_name,
    cert_pem,
    create_ca,
    generate_key,
    issue_serving_cert,
    key_pem,
)

# Re-issue the serving certificate when it expires within this window.
RENEW_BEFORE = dt.timedelta(days=30)


# --- ensuring the assets (init, rotate) -----------------------------------------------------
#
# Planning reads the files and decides; it writes nothing. The writes go into a
# files.Transaction that the caller applies (with the rest of its changes, under the project
# lock), so that a failure anywhere leaves every file as it was.


@dataclass(frozen=True)
class Change:
    """One thing done to the TLS files, for the user: ``created ssl/ca.pem``."""

    verb: Literal["created", "kept", "reissued", "replaced", "backed up"]
    path: Path
    reason: str = ""


@dataclass(frozen=True)
class Wanted:
    """What the serving certificate must be, from the config."""

    hosts: tuple[str, ...]
    ips: tuple[str, ...]
    key_type: str
    ca_days: int
    cert_days: int


@dataclass
class AssetPlan:
    """What planning decided: the changes to report (backups by their planned name, see
    :meth:`resolved`), and warnings that need the user's attention."""

    changes: list[Change]
    warnings: list[str]

    def resolved(self, applied: files.Applied) -> list[Change]:
        """The changes with each backup's real name (a taken name gets ``.1``…)."""
        return [Change(c.verb, applied.backup(c.path), c.reason) if c.verb == "backed up"
                else c for c in self.changes]


@dataclass(frozen=True)
class _View:
    """The TLS files as they will be: the ones being moved to a backup count as gone."""

    paths: TLSPaths
    gone: frozenset[Path]

    def exists(self, path: Path) -> bool:
        return path not in self.gone and path.exists()


def plan_assets(paths: TLSPaths, wanted: Wanted, *, force: bool, now: dt.datetime,
                tx: files.Transaction, gone: frozenset[Path] = frozenset()) -> AssetPlan:
    """Plan the four files to exist and fit ``wanted``, changing as little as possible.

    The CA and both keys are kept byte for byte when they exist. The serving certificate is
    re-issued only when it is missing, its names differ, it expires within 30 days (and a new
    one would last longer: a leaf never outlives its CA), or it no longer fits the key or the
    CA; a certificate it replaces is kept as ``cert.pem.bak-<timestamp>`` first. An existing
    CA is replaced only with ``force``, after the old files were moved to
    ``backup-<timestamp>/`` beside them. A private key that other users can read is refused,
    never silently kept (see :func:`check_key_modes`).
    """
    changes: list[Change] = []
    if force and (paths.ca.exists() or paths.ca_key.exists()):
        stem = tx.backup_group(paths.dir / f"backup-{files.timestamp(now)}", paths.all())
        changes.append(Change("backed up", stem, "previous CA, key and certificate"))
        gone = frozenset(paths.all())
    view = _View(paths, gone)
    check_key_dir(paths.dir)
    check_key_modes([p for p in (paths.ca_key, paths.key) if view.exists(p)])
    ca_cert, ca_key, ca_new = _ensure_ca(view, wanted, now, changes, tx)
    key, key_new = _ensure_serving_key(view, wanted, now, changes, tx)
    reason = "new CA" if ca_new else "new key" if key_new else _reissue_reason(
        view, wanted, ca_cert, key, now)
    if reason:
        cert = issue_serving_cert(ca_cert=ca_cert, ca_key=ca_key, key=key, hosts=wanted.hosts,
                                  ips=wanted.ips, days=wanted.cert_days, now=now)
        _check_issued(cert, ca_cert, paths.ca)
        existed = view.exists(paths.cert)
        # Kept like key.pem: the certificate may not be dexkit's (a gencert.sh ssl/, a tls.dir
        # pointing at an existing directory), and nothing tells whose it was.
        old_cert = paths.cert.with_name(f"{paths.cert.name}.bak-{files.timestamp(now)}") \
            if existed else None
        _write(tx, paths.cert, cert_pem(cert), files.PUBLIC, backup=old_cert)
        if old_cert is not None:
            changes.append(Change("backed up", old_cert, "the previous serving certificate"))
        changes.append(Change("reissued" if existed else "created", paths.cert,
                              reason if existed else ""))
    else:
        changes.append(Change("kept", paths.cert))
    return AssetPlan(changes, _ca_warnings(ca_cert, now))


def ensure_assets(paths: TLSPaths, wanted: Wanted, *, force: bool,
                  now: dt.datetime) -> list[Change]:
    """:func:`plan_assets`, applied at once (for callers with nothing else to write)."""
    tx = files.Transaction()
    plan = plan_assets(paths, wanted, force=force, now=now, tx=tx)
    return plan.resolved(tx.apply())


def _write(tx: files.Transaction, path: Path, data: bytes, mode: int,
           backup: Path | None = None) -> None:
    # The TLS directory is private whichever of its files is written first.
    tx.write(path, data, mode, dir_mode=files.PRIVATE_DIR, backup=backup)


def _check_issued(cert: x509.Certificate, ca_cert: x509.Certificate, ca_path: Path) -> None:
    """A certificate just signed verifies under its CA (signature and names), before any
    file is written: a CA key or certificate of an unusual kind fails here, not in Dex."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception as exc:  # InvalidSignature, ValueError, TypeError: no common base
        raise TLSError(f"a certificate signed with the CA in {ca_path} does not verify under it "
                       f"({type(exc).__name__}: {exc or 'bad signature'})", ROTATE_CA) from None


def _ca_warnings(ca_cert: x509.Certificate, now: dt.datetime) -> list[str]:
    left = ca_cert.not_valid_after_utc - now
    if left < RENEW_BEFORE:
        return [f"the CA expires {_within(left)} ({ca_cert.not_valid_after_utc:%Y-%m-%d}) and the "
                "serving certificate cannot outlive it: run 'dexkit certs rotate --ca' (then give "
                "every API server the new ssl/ca.pem)"]
    return []


def _ensure_ca(view: _View, wanted: Wanted, now: dt.datetime, changes: list[Change],
               tx: files.Transaction) -> tuple[x509.Certificate, PrivateKey, bool]:
    paths = view.paths
    has_cert, has_key = view.exists(paths.ca), view.exists(paths.ca_key)
    if has_cert and has_key:
        ca_cert, ca_key = load_cert(paths.ca), load_key(paths.ca_key)
        if not key_matches(ca_cert, ca_key):
            raise TLSError(f"{paths.ca_key} does not belong to {paths.ca}",
                           "restore the matching pair, or replace both with --force")
        # A CA no client would accept is refused before anything is written or signed.
        problems = ca_problems(paths.ca, ca_cert, now)
        if problems:
            raise TLSError(problems[0].message, problems[0].hint)
        changes += [Change("kept", paths.ca), Change("kept", paths.ca_key)]
        return ca_cert, ca_key, False
    if has_cert or has_key:
        present, missing = (paths.ca, paths.ca_key) if has_cert else (paths.ca_key, paths.ca)
        raise TLSError(
            f"{present} exists but {missing} is missing; refusing to create a new CA over it",
            "restore the missing file, or pass --force to back up the old CA and make a new one",
        )
    ca_key = generate_key(wanted.key_type)
    ca_cert = create_ca(ca_key, common_name=ca_common_name(wanted.hosts + wanted.ips),
                        days=wanted.ca_days, now=now)
    _write(tx, paths.ca_key, key_pem(ca_key), files.PRIVATE)
    _write(tx, paths.ca, cert_pem(ca_cert), files.PUBLIC)
    changes += [Change("created", paths.ca_key), Change("created", paths.ca)]
    return ca_cert, ca_key, True


def _ensure_serving_key(view: _View, wanted: Wanted, now: dt.datetime, changes: list[Change],
                        tx: files.Transaction) -> tuple[PrivateKey, bool]:
    paths = view.paths
    if view.exists(paths.key):
        key = load_key(paths.key)
        have = key_type_of(key.public_key())
        if have == wanted.key_type:
            changes.append(Change("kept", paths.key))
            return key, False
        key = generate_key(wanted.key_type)
        stem = paths.key.with_name(f"{paths.key.name}.bak-{files.timestamp(now)}")
        _write(tx, paths.key, key_pem(key), files.PRIVATE, backup=stem)
        changes.append(Change("replaced", paths.key,
                              f"key type {have} -> {wanted.key_type}; old key in {stem.name}"))
        return key, True
    key = generate_key(wanted.key_type)
    _write(tx, paths.key, key_pem(key), files.PRIVATE)
    changes.append(Change("created", paths.key))
    return key, True


def _reissue_reason(view: _View, wanted: Wanted, ca_cert: x509.Certificate,
                    key: PrivateKey, now: dt.datetime) -> str:
    """Why the existing serving certificate must be re-issued, or '' to keep it."""
    paths = view.paths
    if not view.exists(paths.cert):
        return "missing"
    cert = load_cert(paths.cert)
    dns, ips = sans_of(cert)
    want_ips = sorted(str(ipaddress.ip_address(i)) for i in wanted.ips)
    if sorted(d.lower() for d in dns) != sorted(h.lower() for h in wanted.hosts) or \
            sorted(ips) != want_ips:
        return f"hosts changed: {', '.join(dns + ips)} -> {', '.join(wanted.hosts + wanted.ips)}"
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        # Re-issuing helps only if the new one lasts longer: it is clamped to the CA's end,
        # and a CA about to expire is the CA warning's business, not a reason every run.
        longest = min(now + dt.timedelta(days=wanted.cert_days), ca_cert.not_valid_after_utc)
        if longest - cert.not_valid_after_utc > dt.timedelta(days=1):
            return _expired("it", cert, now) or f"expires in {days_left(cert, now)} days"
    if not key_matches(cert, key):
        return "it did not match key.pem"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception:
        return "it was not signed by ca.pem"
    return ""


def plan_rotate(paths: TLSPaths, wanted: Wanted, *, ca: bool, now: dt.datetime,
                tx: files.Transaction) -> AssetPlan:
    """Plan a new serving certificate and key; with ``ca``, a new CA first.

    Old files are moved to ``backup-<timestamp>/`` (``.1``… when taken) so that a rotation can
    be undone.
    """
    moved = paths.all() if ca else [paths.cert, paths.key]
    if not ca and not (paths.ca.exists() and paths.ca_key.exists()):
        raise TLSError(f"no CA in {paths.dir} to sign with", "run 'dexkit init' first")
    existing = [p for p in moved if p.exists()]
    changes: list[Change] = []
    if existing:
        stem = tx.backup_group(paths.dir / f"backup-{files.timestamp(now)}", existing)
        changes.append(Change("backed up", stem, ", ".join(p.name for p in existing)))
    plan = plan_assets(paths, wanted, force=False, now=now, tx=tx, gone=frozenset(moved))
    return AssetPlan(changes + plan.changes, plan.warnings)


def rotate(paths: TLSPaths, wanted: Wanted, *, ca: bool, now: dt.datetime) -> list[Change]:
    """:func:`plan_rotate`, applied at once."""
    tx = files.Transaction()
    plan = plan_rotate(paths, wanted, ca=ca, now=now, tx=tx)
    return plan.resolved(tx.apply())
