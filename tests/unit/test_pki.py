"""PKI: the certificates dexkit makes, how it checks them, and how it keeps them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from dexkit import pki
from dexkit.errors import TLSError

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
WANTED = pki.Wanted(("dex.example.com", "dex.internal"), ("127.0.0.1", "::1"), "ecdsa-p256",
                    3650, 365)


@pytest.fixture
def paths(tmp_path: Path) -> pki.TLSPaths:
    paths = pki.TLSPaths(tmp_path / "ssl")
    pki.ensure_assets(paths, WANTED, force=False, now=NOW)
    return paths


def test_ca_is_a_constrained_ca(paths: pki.TLSPaths) -> None:
    ca = pki.load_cert(paths.ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert (ca.not_valid_after_utc - NOW).days == 3650
    assert ca.not_valid_before_utc == NOW - pki.CLOCK_SKEW


def test_serving_cert_has_every_name_and_server_auth(paths: pki.TLSPaths) -> None:
    cert = pki.load_cert(paths.cert)
    assert pki.sans_of(cert) == (["dex.example.com", "dex.internal"], ["127.0.0.1", "::1"])
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == "dex.example.com"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment and not ku.key_cert_sign
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert not bc.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = pki.load_cert(paths.ca).extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert 0 < cert.serial_number < 2**128
    assert (cert.not_valid_after_utc - NOW).days == 365
    assert pki.verify_chain(pki.load_cert(paths.ca), cert, "dex.internal", NOW) is None
    assert pki.verify_chain(pki.load_cert(paths.ca), cert, "::1", NOW) is None
    assert pki.verify_chain(pki.load_cert(paths.ca), cert, "evil.example.com", NOW)


@pytest.mark.parametrize(("key_type", "bits"), [("rsa-2048", 2048), ("rsa-3072", 3072)])
def test_rsa_keys_get_key_encipherment(tmp_path: Path, key_type: str, bits: int) -> None:
    paths = pki.TLSPaths(tmp_path)
    pki.ensure_assets(paths, pki.Wanted(("a.example",), (), key_type, 10, 5), force=False, now=NOW)
    key = pki.load_key(paths.key)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == bits
    cert = pki.load_cert(paths.cert)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    assert pki.key_type_of(cert.public_key()) == key_type


def test_default_key_type_is_p256(paths: pki.TLSPaths) -> None:
    key = pki.load_key(paths.ca_key)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"


def test_serials_are_random(tmp_path: Path) -> None:
    key = pki.generate_key("ecdsa-p256")
    serials = {pki.create_ca(key, common_name="x", days=1, now=NOW).serial_number
               for _ in range(20)}
    assert len(serials) == 20


def test_leaf_never_outlives_its_ca(tmp_path: Path) -> None:
    paths = pki.TLSPaths(tmp_path)
    pki.ensure_assets(paths, pki.Wanted(("a.example",), (), "ecdsa-p256", 30, 365), force=False,
                      now=NOW)
    assert pki.load_cert(paths.cert).not_valid_after_utc == pki.load_cert(
        paths.ca).not_valid_after_utc


def test_keys_are_private_in_a_private_dir(paths: pki.TLSPaths) -> None:
    assert paths.dir.stat().st_mode & 0o777 == 0o700
    assert paths.key.stat().st_mode & 0o777 == 0o600
    assert paths.ca_key.stat().st_mode & 0o777 == 0o600
    assert paths.cert.stat().st_mode & 0o777 == 0o644
    assert paths.ca.stat().st_mode & 0o777 == 0o644


def _bytes(paths: pki.TLSPaths) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in paths.all()}


def test_second_run_keeps_everything(paths: pki.TLSPaths) -> None:
    before = _bytes(paths)
    changes = pki.ensure_assets(paths, WANTED, force=False, now=NOW + dt.timedelta(days=1))
    assert {c.verb for c in changes} == {"kept"}
    assert _bytes(paths) == before


def test_host_change_reissues_cert_only(paths: pki.TLSPaths) -> None:
    before = _bytes(paths)
    wanted = pki.Wanted(("dex.example.com", "new.example.com"), (), "ecdsa-p256", 3650, 365)
    changes = pki.ensure_assets(paths, wanted, force=False, now=NOW)
    reissued = [c for c in changes if c.verb == "reissued"]
    assert [c.path.name for c in reissued] == ["cert.pem"]
    assert "hosts changed" in reissued[0].reason
    after = _bytes(paths)
    assert after["ca.pem"] == before["ca.pem"] and after["key.pem"] == before["key.pem"]
    assert after["ca-key.pem"] == before["ca-key.pem"]
    assert pki.sans_of(pki.load_cert(paths.cert))[0] == ["dex.example.com", "new.example.com"]


def test_near_expiry_reissues(paths: pki.TLSPaths) -> None:
    later = NOW + dt.timedelta(days=340)
    changes = pki.ensure_assets(paths, WANTED, force=False, now=later)
    assert any(c.verb == "reissued" and "expires in" in c.reason for c in changes)


def test_force_backs_up_a_restorable_ca(paths: pki.TLSPaths) -> None:
    before = _bytes(paths)
    changes = pki.ensure_assets(paths, WANTED, force=True, now=NOW)
    backup = next(c.path for c in changes if c.verb == "backed up")
    assert _bytes(paths)["ca.pem"] != before["ca.pem"]
    assert {p.name: p.read_bytes() for p in backup.iterdir()} == before
    assert backup.stat().st_mode & 0o777 == 0o700


def test_half_a_ca_is_never_replaced_silently(paths: pki.TLSPaths) -> None:
    paths.ca_key.unlink()
    with pytest.raises(TLSError, match="refusing to create a new CA"):
        pki.ensure_assets(paths, WANTED, force=False, now=NOW)


def test_key_type_change_keeps_a_backup_of_the_old_key(paths: pki.TLSPaths) -> None:
    old = paths.key.read_bytes()
    wanted = pki.Wanted(WANTED.hosts, WANTED.ips, "rsa-2048", 3650, 365)
    changes = pki.ensure_assets(paths, wanted, force=False, now=NOW)
    replaced = next(c for c in changes if c.verb == "replaced")
    backup = paths.dir / replaced.reason.split("old key in ")[1]
    assert backup.read_bytes() == old
    assert backup.stat().st_mode & 0o777 == 0o600


# --- check ----------------------------------------------------------------------------------


def _codes(paths: pki.TLSPaths, now: dt.datetime = NOW, host: str = "dex.example.com",
           within: int = 30) -> list[str]:
    return [p.code for p in pki.check_assets(paths, issuer_host=host, within_days=within,
                                             now=now)]


def test_check_passes_on_fresh_assets(paths: pki.TLSPaths) -> None:
    assert _codes(paths) == []
    assert _codes(paths, host="127.0.0.1") == []


def test_check_expired_and_expiring(paths: pki.TLSPaths) -> None:
    assert _codes(paths, now=NOW + dt.timedelta(days=400)) == ["expired"]
    assert _codes(paths, now=NOW + dt.timedelta(days=350)) == ["expiring"]
    assert _codes(paths, now=NOW + dt.timedelta(days=350), within=10) == []


def test_check_san_mismatch(paths: pki.TLSPaths) -> None:
    assert _codes(paths, host="other.example.com") == ["san-mismatch"]


def test_check_key_mismatch(paths: pki.TLSPaths) -> None:
    pki.write_key(paths.key, pki.generate_key("ecdsa-p256"))
    assert _codes(paths) == ["key-mismatch"]


def test_check_not_signed_by_ca(paths: pki.TLSPaths, tmp_path: Path) -> None:
    other = pki.TLSPaths(tmp_path / "other")
    pki.ensure_assets(other, WANTED, force=False, now=NOW)
    paths.ca.write_bytes(other.ca.read_bytes())
    assert "not-signed-by-ca" in _codes(paths)


def test_check_ca_not_a_ca(paths: pki.TLSPaths) -> None:
    paths.ca.write_bytes(paths.cert.read_bytes())
    assert "ca-not-ca" in _codes(paths)


def test_rotate_keeps_ca_and_backs_up(paths: pki.TLSPaths) -> None:
    before = _bytes(paths)
    changes = pki.rotate(paths, WANTED, ca=False, now=NOW)
    after = _bytes(paths)
    assert after["ca.pem"] == before["ca.pem"]
    assert after["cert.pem"] != before["cert.pem"] and after["key.pem"] != before["key.pem"]
    backup = next(c.path for c in changes if c.verb == "backed up")
    assert (backup / "key.pem").read_bytes() == before["key.pem"]
    assert _codes(paths) == []


def test_rotate_ca_replaces_everything(paths: pki.TLSPaths) -> None:
    before = _bytes(paths)
    pki.rotate(paths, WANTED, ca=True, now=NOW)
    after = _bytes(paths)
    assert all(after[name] != before[name] for name in before)
    assert _codes(paths) == []


def test_broken_files_are_clear_errors(paths: pki.TLSPaths) -> None:
    paths.cert.write_text("not a cert")
    with pytest.raises(TLSError, match="is not a PEM certificate"):
        pki.load_cert(paths.cert)
    paths.key.write_text("junk")
    with pytest.raises(TLSError, match="not an unencrypted PEM private key"):
        pki.load_key(paths.key)


def test_a_host_longer_than_a_common_name_may_be_is_named_by_its_san(tmp_path: Path) -> None:
    # Found by the atheris issuer target: a valid 66-character DNS name (CN max is 64) made
    # `dexkit init` report an internal error.
    import datetime as dt

    from cryptography import x509

    host = "a.b." + "2" * 61 + "c"
    now = dt.datetime.now(dt.UTC)
    ca_key = pki.generate_key("ecdsa-p256")
    ca = pki.create_ca(ca_key, common_name="test CA", days=10, now=now)
    leaf = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=pki.generate_key("ecdsa-p256"),
                                  hosts=[host, "dex.example.com"], ips=[], days=1, now=now)
    cn = leaf.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "dex.example.com"
    assert pki.verify_chain(ca, leaf, host, now) is None
    only = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=pki.generate_key("ecdsa-p256"),
                                  hosts=[host], ips=[], days=1, now=now)
    assert only.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == \
        pki.LONG_NAME_CN
    assert pki.verify_chain(ca, only, host, now) is None


# --- CAs dexkit did not make ------------------------------------------------------------------


def _foreign_ca(*, ski: bool = True, ca: bool = True, cert_sign: bool | None = True,
                start: int = -1,
                end: int = 900) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "their CA")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(NOW + dt.timedelta(days=start))
               .not_valid_after(NOW + dt.timedelta(days=end))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if cert_sign is not None:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(key, hashes.SHA256()), key


@pytest.mark.parametrize(("kwargs", "codes"), [
    ({}, []),
    ({"cert_sign": None}, []),  # no keyUsage: every use allowed (OpenSSL's -x509 default)
    ({"ski": False}, []),
    ({"ca": False}, ["ca-not-ca"]),
    ({"cert_sign": False}, ["ca-no-cert-sign"]),
    ({"start": -20, "end": -10}, ["expired"]),
    ({"start": 1, "end": 900}, ["not-yet-valid"]),
    ({"ca": False, "start": -20, "end": -10}, ["ca-not-ca", "expired"]),
])
def test_ca_problems_are_what_tls_clients_refuse(kwargs: dict[str, Any],
                                                 codes: list[str]) -> None:
    ca, _ = _foreign_ca(**kwargs)
    problems = pki.ca_problems(Path("ssl/ca.pem"), ca, NOW)
    assert [p.code for p in problems] == codes
    assert all("dexkit certs rotate --ca" in p.hint for p in problems)


def test_an_expired_ca_says_when_and_for_how_long(tmp_path: Path) -> None:
    ca, _ = _foreign_ca(start=-15, end=-5)
    (problem,) = pki.ca_problems(Path("ssl/ca.pem"), ca, NOW)
    assert problem.message.startswith(
        f"the CA in ssl/ca.pem expired on {NOW - dt.timedelta(days=5):%Y-%m-%d}, 5 days ago "
        "(it was valid for 10 days)")


def test_a_ca_without_a_subject_key_identifier_signs_a_leaf_that_verifies() -> None:
    ca, ca_key = _foreign_ca(ski=False)
    leaf = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=pki.generate_key("ecdsa-p256"),
                                  hosts=["dex.example.com"], ips=[], days=30, now=NOW)
    assert pki.verify_chain(ca, leaf, "dex.example.com", NOW) is None
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(
        ca_key.public_key()).digest


def test_a_malformed_certificate_is_a_tls_error_naming_its_file(paths: pki.TLSPaths) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtensionOID

    ca_key, ca = pki.load_key(paths.ca_key), pki.load_cert(paths.ca)
    bad = (x509.CertificateBuilder().subject_name(ca.subject).issuer_name(ca.subject)
           .public_key(ca_key.public_key()).serial_number(5)
           .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
           .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                                                     bytes.fromhex("30058703010203")), False)
           .sign(ca_key, hashes.SHA256()))
    paths.cert.write_bytes(bad.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(TLSError, match=r"cert.pem is a malformed certificate \(ValueError: ") \
            as error:
        pki.load_cert(paths.cert)
    assert "dexkit certs rotate" in error.value.hint


def test_verify_chain_reports_a_name_no_verifier_can_check(paths: pki.TLSPaths) -> None:
    ca, cert = pki.load_cert(paths.ca), pki.load_cert(paths.cert)
    problem = pki.verify_chain(ca, cert, "a_b.example.com", NOW)
    assert problem is not None and "is not a name a TLS client can check" in problem
