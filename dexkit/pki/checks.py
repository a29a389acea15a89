"""What is wrong with a project's CA, key and certificate (found where :class:`TLSPaths` says),
as :class:`Problem` records; nothing is printed here.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dexkit import files
from dexkit.errors import TLSError
from dexkit.layout import TLSPaths as TLSPaths
from dexkit.pki.inspection import is_ca, key_matches, key_type_of, load_cert, load_key, sans_of

Severity = Literal["fail", "warn"]


@dataclass(frozen=True)
class Problem:
    code: str
    severity: Severity
    message: str
    hint: str


ROTATE_CA = ("run 'dexkit certs rotate --ca' for a new CA (the old files go to a backup), then "
             "give every API server the new ssl/ca.pem")


def ca_problems(path: Path, ca: x509.Certificate, now: dt.datetime) -> list[Problem]:
    """Why the CA in ``path`` cannot sign Dex's serving certificate now, each with the next step.

    What TLS clients ask of the CA that signs a server's certificate: that it is a CA
    (basicConstraints CA:TRUE), that its keyUsage, if it has one, allows signing certificates
    (OpenSSL checks it; Go ignores keyUsage), and that it is valid now (Go and OpenSSL check the
    CA's own dates too). A certificate issued under a CA that fails any of these is rejected
    by every client, so dexkit refuses to keep or sign with such a CA.
    """
    problems: list[Problem] = []
    if not is_ca(ca):
        why = "basicConstraints CA:FALSE" if _has(ca, x509.BasicConstraints) else \
            "no basicConstraints CA:TRUE"
        problems.append(Problem(
            "ca-not-ca", "fail", f"{path} is not a CA certificate ({why}): TLS clients refuse a "
            "certificate it signs", ROTATE_CA))
    elif not _may_sign_certificates(ca):
        problems.append(Problem(
            "ca-no-cert-sign", "fail", f"the CA in {path} may not sign certificates (its "
            "keyUsage lacks keyCertSign): TLS clients refuse a certificate it signs", ROTATE_CA))
    unusable = _unusable_key(ca)
    if unusable:
        problems.append(Problem("ca-key", "fail", f"the CA in {path} has {unusable}", ROTATE_CA))
    expired = _expired(f"the CA in {path}", ca, now)
    if expired:
        problems.append(Problem("expired", "fail", expired + ": TLS clients refuse every "
                                "certificate it signed", ROTATE_CA))
    elif ca.not_valid_before_utc > now:
        problems.append(Problem(
            "not-yet-valid", "fail", f"the CA in {path} is not valid before "
            f"{ca.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "check this machine's clock ('date -u'); if it is right, " + ROTATE_CA))
    return problems


# The signature keys every client of Dex verifies: Go's crypto/x509 (the API server) knows only
# the NIST curves, and OpenSSL's default security level (Debian, Ubuntu) refuses RSA keys under
# 2048 bits in a TLS chain.
_CLIENT_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def _unusable_key(ca: x509.Certificate) -> str:
    """'' when TLS clients can verify signatures of the CA's key, else what the key is."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = ca.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "" if key.key_size >= 2048 else (
            f"a {key.key_size}-bit RSA key, which OpenSSL's default security level refuses")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "" if key.curve.name in _CLIENT_CURVES else (
            f"a key on the curve {key.curve.name}, which Go's TLS clients (the API server) "
            "cannot verify")
    return f"a {key_type_of(key)} key, which dexkit cannot sign with"


def _has(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> bool:
    try:
        cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return False
    return True


def _may_sign_certificates(ca: x509.Certificate) -> bool:
    try:
        return ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True  # no keyUsage: every use is allowed (RFC 5280 4.2.1.3)


def _within(left: dt.timedelta) -> str:
    return "within a day" if left.days == 0 else f"in {left.days} days"


def _expired(what: str, cert: x509.Certificate, now: dt.datetime) -> str:
    """``<what> expired on 2026-11-25, 10 days ago (it was valid for 10 days)``, or ''."""
    end = cert.not_valid_after_utc
    if end > now:
        return ""
    ago = (now - end).days
    life = (end - cert.not_valid_before_utc).days
    when = "today" if ago == 0 else "1 day ago" if ago == 1 else f"{ago} days ago"
    lived = f" (it was valid for {life} day{'s' if life != 1 else ''}" if life <= 31 else ""
    if lived and cert.subject.rfc4514_string() == "CN=kube-ca":
        lived += ", as the guide's gencert.sh makes its CA"
    return f"{what} expired on {end:%Y-%m-%d}, {when}{lived}{')' if lived else ''}"


def check_key_dir(directory: Path) -> None:
    """The one rule for the directory that holds the private keys, for ``init``, ``certs
    rotate``, ``certs check`` and doctor alike: the rule every write into a directory applies
    (:func:`dexkit.files.check_dir`: not another user's, not writable by every user), applied
    also when nothing is written. Whoever can write to the directory can replace the keys."""
    try:
        files.check_dir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return  # not there yet: it is created private


def check_assets(
    paths: TLSPaths, *, issuer_host: str, within_days: int, now: dt.datetime
) -> list[Problem]:
    """Everything that would make Dex's TLS fail, or fail soon, as a list of problems."""
    ca, cert = load_cert(paths.ca), load_cert(paths.cert)
    key, problems = load_key(paths.key), []
    try:
        check_key_dir(paths.dir)
    except files.FileError as exc:
        problems.append(Problem("key-dir", "fail", exc.message, exc.hint))
    ca_found = ca_problems(paths.ca, ca, now)
    problems += [p for p in ca_found if p.code not in ("expired", "not-yet-valid")]
    if not key_matches(cert, key):
        problems.append(Problem("key-mismatch", "fail",
                                f"{paths.key} does not match {paths.cert}",
                                "run 'dexkit certs rotate' to issue a matching pair"))
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, Exception) as exc:  # InvalidSignature has no common base
        problems.append(Problem("not-signed-by-ca", "fail",
                                f"{paths.cert} is not signed by {paths.ca} "
                                f"({exc or 'bad signature'})",
                                "run 'dexkit certs rotate' to re-issue it under this CA"))
    for path in (paths.key, paths.ca_key):
        try:
            check_key_modes([path])
        except TLSError as exc:
            problems.append(Problem("key-mode", "fail", exc.message, exc.hint))
    dns, ips = sans_of(cert)
    if not _covers(dns, ips, issuer_host):
        problems.append(Problem("san-mismatch", "fail",
                                f"the serving certificate does not cover the issuer host "
                                f"'{issuer_host}' (SANs: {', '.join(dns + ips) or 'none'})",
                                "add the host to tls.hosts and run 'dexkit certs rotate'"))
    # The validity problems last, the CA's first: expired before expiring.
    problems += [p for p in ca_found if p.code in ("expired", "not-yet-valid")] or \
        _expiry_problems("CA", ca, within_days, now)
    problems += _expiry_problems("serving certificate", cert, within_days, now)
    return problems


def _expiry_problems(role: str, cert: x509.Certificate, within: int,
                     now: dt.datetime) -> list[Problem]:
    left = cert.not_valid_after_utc - now
    fix = "dexkit certs rotate --ca" if role == "CA" else "dexkit certs rotate"
    if left.total_seconds() <= 0:
        return [Problem("expired", "fail", _expired(f"the {role}", cert, now), f"run '{fix}'")]
    if left < dt.timedelta(days=within):
        return [Problem("expiring", "fail",
                        f"the {role} expires {_within(left)} "
                        f"({cert.not_valid_after_utc:%Y-%m-%d}), within {within}",
                        f"run '{fix}'")]
    if cert.not_valid_before_utc > now:
        return [Problem("not-yet-valid", "fail",
                        f"the {role} is not valid before "
                        f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}",
                        "check this machine's clock")]
    return []


def _covers(dns: list[str], ips: list[str], host: str) -> bool:
    try:
        return ipaddress.ip_address(host) in {ipaddress.ip_address(i) for i in ips}
    except ValueError:
        pass
    host = host.lower()
    wildcard = "*." + host.split(".", 1)[-1]
    return host in (d.lower() for d in dns) or wildcard in (d.lower() for d in dns)


def check_key_modes(keys: Sequence[Path]) -> None:
    """Refuse private keys that other users can read.

    Not fixed with a chmod on the quiet: while the key was readable, anyone on the machine
    could have copied it, which a chmod does not undo. Only the user knows whether that
    matters, so the error says both ways out.
    """
    for path in keys:
        try:
            mode = files.file_mode(path)
        except OSError:
            continue
        if mode & 0o077:
            rotate = "dexkit certs rotate --ca" if path.name == "ca-key.pem" else \
                "dexkit certs rotate"
            raise TLSError(f"{path} is readable by other users (mode {mode:04o}); a private key "
                           "must be 0600", f"'chmod 600 {path}'; if anyone else could log in "
                           f"here, treat the key as leaked and run '{rotate}' after the chmod")
