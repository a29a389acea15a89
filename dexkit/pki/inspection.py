"""Reading keys and certificates back: load, describe, and verify the chain as a TLS client would.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from dexkit import files
from dexkit.errors import TLSError
from dexkit.pki.issue import PrivateKey, cert_pem, key_pem


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
