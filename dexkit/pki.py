"""The CA and the serving certificate: create, load, inspect, check, ensure.

Replaces the guide's gencert.sh (RSA-2048, a CA valid 10 days with the leaf's CN, keys left at
the umask) with what mkcert and cert-manager do: a path-length-0 CA, a leaf with every SAN and
the serverAuth EKU, random serials, a back-dated notBefore for clock skew, and keys that are
0600 from the first byte. File names stay the guide's (``ssl/ca.pem`` …) so that its later
steps still work.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from dexkit import files
from dexkit.errors import TLSError
from dexkit.layout import TLSPaths as TLSPaths

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# Certificates start this far in the past so that a node whose clock runs behind accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)
# Re-issue the serving certificate when it expires within this window.
RENEW_BEFORE = dt.timedelta(days=30)


# --- creation -------------------------------------------------------------------------------


def generate_key(key_type: str) -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("rsa-2048", "rsa-3072", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise TLSError(f"unknown key type '{key_type}'",
                   "use one of ecdsa-p256, rsa-2048, rsa-3072, rsa-4096")


def _serial() -> int:
    # 128 random bits, top bit cleared so DER keeps it positive in 16 bytes; never zero.
    return secrets.randbits(127) | 1


def _validity(now: dt.datetime, days: int) -> tuple[dt.datetime, dt.datetime]:
    return now - CLOCK_SKEW, now + dt.timedelta(days=days)


def create_ca(key: PrivateKey, *, common_name: str, days: int,
              now: dt.datetime) -> x509.Certificate:
    """A CA that can sign leaves only (pathlen 0), as mkcert makes it."""
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dexkit"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    not_before, not_after = _validity(now, days)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


CN_MAX = 64  # RFC 5280 ub-common-name
LONG_NAME_CN = "dexkit serving certificate"


def ca_common_name(names: Sequence[str]) -> str:
    """``dexkit CA for <first name>``, or ``dexkit CA`` when that would pass the CN limit."""
    named = f"dexkit CA for {names[0]}" if names else "dexkit CA"
    return named if len(named) <= CN_MAX else "dexkit CA"

def issue_serving_cert(
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    key: PrivateKey,
    hosts: Sequence[str],
    ips: Sequence[str],
    days: int,
    now: dt.datetime,
) -> x509.Certificate:
    """A TLS server certificate for every host and IP, signed by the CA."""
    if not hosts and not ips:
        raise TLSError("a serving certificate needs at least one host or IP",
                       "set tls.hosts or tls.ips in dexkit.yaml")
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    # CN = the first name: ignored by modern clients (SANs rule) but shown by every tool. RFC
    # 5280 caps a CN at 64 characters while a DNS name may have 253: a longer host is named by
    # its SAN alone, and the CN says what the certificate is.
    names = [n for n in (*hosts, *ips) if len(n) <= CN_MAX]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                            names[0] if names else LONG_NAME_CN)])
    not_before, not_after = _validity(now, days)
    # A leaf must not outlive its CA: clamp, so verification never fails on that alone.
    # (:func:`ca_problems` refuses an expired CA first, so the window is never empty.)
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(rsa_key=isinstance(key, rsa.RSAPrivateKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_authority_key_id(ca_cert, ca_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _authority_key_id(ca_cert: x509.Certificate,
                      ca_key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    """The CA's own key identifier, or (a CA made without one, by hand or by other tools) the
    one RFC 5280 4.2.1.2 derives from its public key: verifiers want an AKI in every leaf."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(*, cert_sign: bool = False, rsa_key: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        # RSA key exchange (TLS 1.2 RSA suites) encrypts to the key; ECDSA keys never do.
        key_encipherment=rsa_key and not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# --- encoding and files ---------------------------------------------------------------------


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_cert(path: Path) -> x509.Certificate:
    """The certificate in ``path``, inspected whole (see :func:`inspect_cert`)."""
    try:
        cert = x509.load_pem_x509_certificate(files.read_limited(path))
    except FileNotFoundError:
        raise TLSError(f"missing certificate {path}", "run 'dexkit init' to create it") from None
    except ValueError as exc:
        raise TLSError(f"{path} is not a PEM certificate: {exc}",
                       "restore it from a backup or re-run 'dexkit init --force'") from None
    return inspect_cert(cert, str(path), hint=_replace_hint(path))


def _replace_hint(path: Path) -> str:
    if path.name == "ca.pem":
        return ("restore the CA from a backup (ssl/backup-*/), or run 'dexkit certs rotate --ca' "
                "for a new one (then give every API server the new ssl/ca.pem)")
    return "run 'dexkit certs rotate' to issue a new one (the old one goes to a backup)"


def inspect_cert(cert: x509.Certificate, source: str, *,
                 hint: str = "replace the certificate") -> x509.Certificate:
    """``cert``, once every part dexkit reads from it has been parsed; else a TLSError that
    names ``source`` and the problem.

    cryptography parses a certificate's extensions lazily: a subjectAltName with a 3-byte IP
    address or a duplicated extension loads fine and raises only when something first looks
    (``ValueError``, ``DuplicateExtension``, ``UnsupportedGeneralNameType``,
    ``UnsupportedAlgorithm``: no common base). Looking at all of it here, once, means that
    no later use (show, check, init, doctor) meets a malformed certificate.
    """
    try:
        cert.subject.rfc4514_string()
        cert.issuer.rfc4514_string()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a DSA key's deprecation: not the user's business
            cert.public_key()
        extensions = list(cert.extensions)
        for extension in extensions:
            if isinstance(extension.value, x509.SubjectAlternativeName):
                _check_san(extension.value)
    except Exception as exc:  # cryptography's parse errors share no base
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise TLSError(f"{source} is a malformed certificate ({type(exc).__name__}: "
                       f"{detail[:200]})", hint) from None
    return cert


def _check_san(san: x509.SubjectAlternativeName) -> None:
    for name in san.get_values_for_type(x509.DNSName):
        if not name.isascii() or not name.isprintable() or " " in name:
            raise ValueError(f"the subjectAltName DNS name {name!r} is not a host name")
    san.get_values_for_type(x509.IPAddress)


def load_key(path: Path) -> PrivateKey:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DSA's deprecation: refused below, by name
            key = serialization.load_pem_private_key(files.read_limited(path, secret=True),
                                                     password=None)
    except FileNotFoundError:
        raise TLSError(f"missing private key {path}", "run 'dexkit init' to create it") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise TLSError(f"{path} is not an unencrypted PEM private key: {exc}",
                       "restore it from a backup or re-run 'dexkit init --force'") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TLSError(f"{path} holds a {type(key).__name__}, not an ECDSA or RSA key",
                       "dexkit supports ecdsa-p256 and rsa-2048/3072/4096")
    return key


def write_key(path: Path, key: PrivateKey) -> None:
    files.ensure_dir(path.parent)
    files.atomic_write(path, key_pem(key), files.PRIVATE)


def write_cert(path: Path, cert: x509.Certificate) -> None:
    files.ensure_dir(path.parent)
    files.atomic_write(path, cert_pem(cert), files.PUBLIC)


# --- inspection -----------------------------------------------------------------------------


def key_type_of(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "p256", "secp384r1": "p384"}.get(public_key.curve.name)
        return f"ecdsa-{curve or public_key.curve.name}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"rsa-{public_key.key_size}"
    return type(public_key).__name__


def sans_of(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) in the certificate's subjectAltName."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return ext.get_values_for_type(x509.DNSName), [
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    ]


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def days_left(cert: x509.Certificate, now: dt.datetime) -> int:
    return (cert.not_valid_after_utc - now).days


@dataclass(frozen=True)
class CertInfo:
    role: str
    path: str
    subject: str
    issuer: str
    dns_names: list[str]
    ip_addresses: list[str]
    not_before: str
    not_after: str
    days_left: int
    key_type: str
    sha256_fingerprint: str
    serial: str
    is_ca: bool


def describe(role: str, path: Path, cert: x509.Certificate, now: dt.datetime) -> CertInfo:
    dns, ips = sans_of(cert)
    return CertInfo(
        role=role,
        path=str(path),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        dns_names=dns,
        ip_addresses=ips,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        days_left=days_left(cert, now),
        key_type=key_type_of(cert.public_key()),
        sha256_fingerprint=fingerprint(cert),
        serial=f"{cert.serial_number:x}",
        is_ca=is_ca(cert),
    )


def _cert_sign_if_present(_policy: object, _cert: x509.Certificate,
                          usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("the CA's keyUsage lacks keyCertSign")


# The web PKI profile cryptography verifies by default (CA/Browser Forum) is stricter than the
# clients of Dex: Go's crypto/x509 (the API server, kubectl's plugins) and OpenSSL (Python)
# accept a CA without keyUsage (what 'openssl req -x509' makes, the guide's gencert.sh CA) and
# a leaf without an authorityKeyIdentifier (gencert.sh's cert.pem). dexkit judges a chain as
# those clients do, or it would call a chain they accept broken.
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.KeyUsage, Criticality.AGNOSTIC, _cert_sign_if_present)
_LEAF_POLICY = ExtensionPolicy.webpki_defaults_ee().may_be_present(
    x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)


def verify_chain(ca: x509.Certificate, leaf: x509.Certificate, name: str,
                 now: dt.datetime) -> str | None:
    """Full RFC 5280 path validation of ``leaf`` for ``name`` as Dex's clients do it (see
    :data:`_CA_POLICY`); None when it verifies."""
    address: x509.IPAddress | None
    try:
        address = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        address = None
    try:
        verifier = (PolicyBuilder().store(Store([ca])).time(now)
                    .extension_policies(ca_policy=_CA_POLICY, ee_policy=_LEAF_POLICY)
                    .build_server_verifier(address or x509.DNSName(name)))
    except ValueError as exc:  # a name the verifier cannot match: 'a_b.example.com', '-a.io'
        return f"'{name}' is not a name a TLS client can check a certificate for ({exc})"
    try:
        verifier.verify(leaf, [])
    except VerificationError as exc:
        return str(exc)
    return None


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt)


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
