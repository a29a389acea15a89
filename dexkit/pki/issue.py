"""Making keys and certificates: the path-length-0 CA and the serving certificate it signs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dexkit.errors import TLSError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
# Certificates start this far in the past so that a node whose clock runs behind accepts them.
CLOCK_SKEW = dt.timedelta(minutes=5)


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
