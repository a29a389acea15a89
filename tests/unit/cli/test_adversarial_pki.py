"""The second adversarial pass (2026-12-05), kept: issuers, CAs, certificates, the key
directory, the static-pod flag reading and error texts (N-03, N-10, N-11, N-14 in part, N-17
to N-20), each through the real CLI. Every case is a user mistake or a hostile input that
must end in one ``error:``/``hint:`` pair with nothing changed, or in a result that holds up."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from tests.promise import Result, assert_clean_failure, assert_no_traceback, run, snapshot
from tests.unit.render.helpers import FIXTURES

NOW = dt.datetime.now(dt.UTC)
# An issuer on a loopback port where nothing listens: doctor's network checks stay here.
LOCAL_ISSUER = "https://127.0.0.1:9"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "p"
    assert run("init", "--dir", path).code == 0
    return path


def _ok(result: Result) -> None:
    assert result.code == 0, result.err
    assert_no_traceback(result)


def _unchanged(directory: Path, action: Callable[[], Result], *, code: int | None = None,
               ) -> Result:
    """``action`` fails cleanly and leaves every file below ``directory`` as it was."""
    before = snapshot(directory)
    result = action()
    assert_clean_failure(result, code=code)
    assert snapshot(directory) == before
    return result


# --- N-03: one issuer parse; nothing validated fails later ------------------------------------

BAD_PORTS = ["https://dex.example.com:1:2", "https://[::1]:32000:1", "https://127.0.0.1:9:1",
             "https://dex.example.com:32000:", "https://dex.example.com::32000",
             "https://dex.example.com:3:2000", "https://[::1]:1:2/dex",
             "https://dex.example.com:32000:80/dex", "https://dex.example.com:+443",
             "https://dex.example.com: 443", "https://dex.example.com:4_43",
             "https://[::1]]:32000", "https://[::1]x:32000", "https://dex.example.com]:32000"]


@pytest.mark.parametrize("issuer", BAD_PORTS)
def test_n03_an_issuer_two_parsers_read_differently_is_refused_before_init_writes(
        tmp_path: Path, issuer: str) -> None:
    result = run("init", "--dir", tmp_path / "p", "--issuer", issuer)
    assert_clean_failure(result, code=2)
    assert not (tmp_path / "p").exists()


# Hosts httpx cannot take (idna, a number where WHATWG reads an IPv4 address), found by trying.
BAD_HOSTS = ["https://a..b:9", "https://999.1.1.1:9", "https://10.0x1:9", "https://-a.b:9"]


@pytest.mark.parametrize("issuer", BAD_PORTS + BAD_HOSTS)
def test_n03_dexkit_token_refuses_them_as_a_usage_error(tmp_path: Path, issuer: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    result = run("token", "--issuer", issuer, "--client-id", "kubernetes",
                 "--token-cache-dir", tmp_path / "cache")
    assert_clean_failure(result, code=2)
    assert "--issuer" in result.err


@pytest.mark.parametrize("issuer", BAD_PORTS[:3])
def test_n03_a_dexkit_yaml_with_such_an_issuer_fails_every_command_cleanly(
        project: Path, issuer: str) -> None:
    path = project / "dexkit.yaml"
    path.write_text(path.read_text().replace("https://dex.example.com:32000", issuer))
    for args in (["certs", "check"], ["certs", "show"], ["apiserver", "flags"], ["init"],
                 ["render", "--out", project / "out"]):
        result = _unchanged(project, lambda a=args: run(*a, "--dir", project))  # type: ignore[misc]
        assert "dexkit.yaml" in result.err and "port" in result.err, args
    doctor = run("doctor", "--dir", project, "--offline", "-o", "json")
    assert_no_traceback(doctor)
    config = next(r for r in json.loads(doctor.out)["results"] if r["id"] == "local.config")
    assert config["status"] == "fail" and "port" in config["message"]


def test_n03_init_computes_its_warnings_before_it_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dexkit.config import Config
    from dexkit.errors import DexkitError

    def broken(self: Config) -> list[str]:
        raise DexkitError("warnings broke", "this test's doing")

    monkeypatch.setattr(Config, "warnings", broken)
    result = run("init", "--dir", tmp_path / "p", "--issuer", "https://dex.example.com:31000")
    assert_clean_failure(result, code=1)
    assert not (tmp_path / "p").exists() or snapshot(tmp_path / "p") == {}


@pytest.mark.parametrize("issuer", ["https://dex.example.com:32000", "https://[::1]:32000/dex",
                                    "https://127.0.0.1", "https://dex.example.com:443/a/b-c"])
def test_n03_what_init_accepts_every_later_command_can_use(tmp_path: Path, issuer: str) -> None:
    project = tmp_path / "p"
    _ok(run("init", "--dir", project, "--issuer", issuer))
    _ok(run("certs", "check", "--dir", project))
    flags = json.loads(run("apiserver", "flags", "--dir", project, "-o", "json").out)
    assert f"--oidc-issuer-url={issuer}" in flags["flags"]
    _ok(run("render", "--dir", project, "--out", project / "out"))


# --- N-17: issuers Dex and the API server could never agree on; merge keys --------------------


@pytest.mark.parametrize("scheme", ["HTTPS", "Https", "hTTPs"])
def test_n17_an_upper_case_scheme_is_refused_and_the_fix_is_spelled_out(
        tmp_path: Path, scheme: str) -> None:
    result = run("init", "--dir", tmp_path / "p", "--issuer", f"{scheme}://dex.example.com:32000")
    assert_clean_failure(result, code=2)
    assert "hint: write 'https://dex.example.com:32000'" in result.err
    assert not (tmp_path / "p").exists()
    token = run("token", "--issuer", f"{scheme}://127.0.0.1:9", "--client-id", "k",
                "--token-cache-dir", tmp_path / "cache")
    assert_clean_failure(token, code=2)
    assert "https://127.0.0.1:9" in token.err


@pytest.mark.parametrize(("path", "clean"), [
    ("/.", ""), ("/dex/..", ""), ("/dex/.", "/dex"), ("/./dex", "/dex"), ("/a/../dex", "/dex"),
    ("/dex/%2e%2E", ""), ("/%2E/dex", "/dex"), ("//dex", "/dex"), ("/a//dex", "/a/dex"),
    ("/dex/./", "/dex")])
def test_n17_dot_and_empty_path_segments_are_refused(tmp_path: Path, path: str,
                                                     clean: str) -> None:
    result = run("init", "--dir", tmp_path / "p", "--issuer",
                 f"https://dex.example.com:32000{path}")
    assert_clean_failure(result, code=2)
    assert f"hint: write 'https://dex.example.com:32000{clean}'" in result.err
    assert not (tmp_path / "p").exists()


def test_n17_a_dexkit_yaml_with_such_issuers_is_refused(project: Path) -> None:
    path = project / "dexkit.yaml"
    original = path.read_text()
    for issuer in ("HTTPS://dex.example.com:32000", "https://dex.example.com:32000/dex/.."):
        path.write_text(original.replace("https://dex.example.com:32000", issuer))
        result = _unchanged(project, lambda: run("apiserver", "flags", "--dir", project))
        assert "dexkit.yaml" in result.err


@pytest.mark.parametrize("text", [
    '<<: {issuer: "https://a.example.com:32000"}\n<<: {issuer: "https://b.example.com:32000"}\n'
    "tls: {hosts: [a.example.com, b.example.com]}\n",
    "dex:\n  <<: {replicas: 1}\n  <<: {replicas: 2}\n",
    "dex:\n  service: &svc {type: NodePort}\n  podLabels:\n    <<: *svc\n"
    "    <<: {type: ClusterIP}\n",
    '<<: {issuer: "https://a.example.com:32000", issuer: "https://b.example.com:32000"}\n',
    # One merge key, a list: PyYAML lets the last inline mapping win but the first alias.
    "dex:\n  service: &svc {type: NodePort}\n  podLabels:\n    <<: [*svc, {type: ClusterIP}]\n",
    '<<: [{issuer: "https://a.example.com:32000"}, {issuer: "https://b.example.com:32000"}]\n'
    "tls: {hosts: [a.example.com, b.example.com]}\n",
])
def test_n17_two_merge_keys_cannot_set_a_key_twice(project: Path, text: str) -> None:
    (project / "dexkit.yaml").write_text(text)
    result = _unchanged(project, lambda: run("apiserver", "flags", "--dir", project), code=1)
    assert "dexkit.yaml:" in result.err


def test_n17_one_merge_key_with_a_list_is_still_fine(project: Path) -> None:
    (project / "dexkit.yaml").write_text(
        "x-a: &a {issuer: 'https://a.example.com:32000'}\nx-b: &b {namespace: dex}\n"
        "<<: [*a, *b]\n")
    result = run("apiserver", "flags", "--dir", project)
    assert result.code == 1 and "x-a" in result.err  # an unknown key, named, not a merge error


# --- N-10: CAs that cannot sign ---------------------------------------------------------------


def _ca_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *, not_before: dt.datetime,
            not_after: dt.datetime, ski: bool = True, is_ca: bool = True,
            cert_sign: bool | None = True, name: str = "old CA") -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None),
                              critical=True))
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if cert_sign is not None:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
            crl_sign=cert_sign, encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _plant_ca(project: Path, key_type: str = "p256", **kwargs: Any) -> None:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "rsa-1024":
        key = rsa.generate_private_key(65537, 1024)  # noqa: S505 - weak on purpose: refused
    else:
        key = ec.generate_private_key(ec.SECP256K1() if key_type == "k1" else ec.SECP256R1())
    (project / "ssl/ca.pem").write_bytes(_ca_pem(key, **kwargs))
    (project / "ssl/ca-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def _days(start: int, end: int) -> dict[str, Any]:
    """A validity from ``start`` to ``end`` days from now (negative: in the past)."""
    return {"not_before": NOW + dt.timedelta(days=start),
            "not_after": NOW + dt.timedelta(days=end)}


EXPIRED = _days(-20, -10)
GENCERT = {**_days(-15, -5), "name": "kube-ca", "cert_sign": None}  # CN, life, no keyUsage
VALID = _days(-1, 900)
UNUSABLE: dict[str, dict[str, Any]] = {
    "expired": EXPIRED,
    "expired-without-ski": {**EXPIRED, "ski": False},
    "not-yet-valid": _days(1, 900),
    "not-a-ca": {**VALID, "is_ca": False, "cert_sign": False},
    "may-not-sign": {**VALID, "cert_sign": False},
    "secp256k1-key": {**VALID, "key_type": "k1"},  # Go's crypto/x509 has no such curve
    "rsa-1024-key": {**VALID, "key_type": "rsa-1024"},
}
COMMANDS = {"rotate": ["certs", "rotate"], "init": ["init"],
            "init-host": ["init", "--host", "extra.example.com"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("kind", sorted(UNUSABLE))
def test_n10_a_ca_no_client_accepts_is_refused_before_any_write(
        project: Path, kind: str, command: str) -> None:
    _plant_ca(project, **UNUSABLE[kind])
    result = _unchanged(project, lambda: run(*COMMANDS[command], "--dir", project), code=1)
    assert "ssl/ca.pem" in result.err
    assert "dexkit certs rotate --ca" in result.err
    check = run("certs", "check", "--dir", project)
    assert check.code == 1 and "ssl/ca.pem" in check.err


def test_n10_an_expired_gencert_ca_gets_a_message_that_says_what_happened(project: Path) -> None:
    _plant_ca(project, **GENCERT)
    result = _unchanged(project, lambda: run("certs", "rotate", "--dir", project), code=1)
    error = next(line for line in result.err.splitlines() if line.startswith("error: "))
    stamp = f"{NOW - dt.timedelta(days=5):%Y-%m-%d}"
    assert f"expired on {stamp}, 5 days ago" in error
    assert "valid for 10 days" in error and "gencert.sh" in error
    assert "hint: run 'dexkit certs rotate --ca'" in result.err
    # ... and the next step it names works.
    _ok(run("certs", "rotate", "--ca", "--dir", project))
    _ok(run("certs", "check", "--dir", project))


def test_n10_init_never_keeps_an_expired_leaf_under_an_expired_ca(project: Path) -> None:
    _plant_ca(project, **EXPIRED)
    result = _unchanged(project, lambda: run("init", "--dir", project), code=1)
    assert "expires in 0 days" not in result.err and "expired on" in result.err


def test_n10_a_ca_without_a_subject_key_identifier_still_signs(project: Path) -> None:
    _plant_ca(project, **VALID, ski=False)
    _ok(run("certs", "rotate", "--dir", project))
    _ok(run("init", "--dir", project, "--host", "extra.example.com"))
    _ok(run("certs", "check", "--dir", project))
    leaf = x509.load_pem_x509_certificate((project / "ssl/cert.pem").read_bytes())
    ca = x509.load_pem_x509_certificate((project / "ssl/ca.pem").read_bytes())
    leaf.verify_directly_issued_by(ca)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(
        ca.public_key()).digest
    show = run("certs", "show", "--dir", project)
    _ok(show)
    assert "verifies (for dex.example.com)" in show.out


# --- N-11: certificates that parse but are malformed ------------------------------------------


def _leaf_pem(project: Path, *extensions: x509.ExtensionType, days: tuple[int, int] = (-1, 300),
              ) -> bytes:
    """A serving certificate for the project's key, signed by its CA, valid ``days`` from now
    (start, end), with exactly ``extensions``."""
    ca_key = serialization.load_pem_private_key((project / "ssl/ca-key.pem").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((project / "ssl/ca.pem").read_bytes())
    key = serialization.load_pem_private_key((project / "ssl/key.pem").read_bytes(), None)
    validity = _days(*days)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dex")]))
               .issuer_name(ca.subject).public_key(key.public_key())  # type: ignore[arg-type]
               .serial_number(7).not_valid_before(validity["not_before"])
               .not_valid_after(validity["not_after"]))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(  # type: ignore[arg-type]
        serialization.Encoding.PEM)


def _raw(oid: x509.ObjectIdentifier, hexdata: str) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(oid, bytes.fromhex(hexdata))


def _duplicated_san(project: Path) -> bytes:
    """A leaf with two subjectAltName extensions (its signature no longer verifies: the DER
    is edited after signing, which parsing does not notice)."""
    san = "3011820f6465782e6578616d706c652e636f6d"  # the same SAN's DER, under OID 2.5.29.99
    pem = _leaf_pem(project, x509.SubjectAlternativeName([x509.DNSName("dex.example.com")]),
                    _raw(x509.ObjectIdentifier("2.5.29.99"), san))
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    der = der.replace(bytes.fromhex("0603551d63"), bytes.fromhex("0603551d11"))
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


MALFORMED: dict[str, Callable[[Path], bytes]] = {
    "ip-of-3-bytes": lambda p: _leaf_pem(p, _raw(ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                                                 "30058703010203")),
    "dns-with-escape": lambda p: _leaf_pem(p, x509.SubjectAlternativeName(
        [x509.DNSName("dex\x1b]0;PWNED\x07.example.com")])),
    "duplicate-san": _duplicated_san,
    "bad-basic-constraints": lambda p: _leaf_pem(p, _raw(ExtensionOID.BASIC_CONSTRAINTS, "0102")),
    "bad-key-usage": lambda p: _leaf_pem(p, _raw(ExtensionOID.KEY_USAGE, "30")),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_n11_a_malformed_certificate_is_named_by_every_command(project: Path, kind: str) -> None:
    (project / "ssl/cert.pem").write_bytes(MALFORMED[kind](project))
    for args in (["certs", "show"], ["certs", "check"], ["init"],
                 ["init", "--host", "extra.example.com"]):
        result = _unchanged(project, lambda a=args: run(*a, "--dir", project), code=1)  # type: ignore[misc]
        assert "ssl/cert.pem is a malformed certificate" in result.err, args
        assert "\x1b" not in result.err
    # The hint's next step works.
    _ok(run("certs", "rotate", "--dir", project))
    _ok(run("certs", "check", "--dir", project))


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_n11_doctor_names_the_malformed_file_instead_of_breaking(tmp_path: Path,
                                                                 kind: str) -> None:
    project = tmp_path / "p"
    _ok(run("init", "--dir", project, "--issuer", LOCAL_ISSUER))
    (project / "ssl/cert.pem").write_bytes(MALFORMED[kind](project))
    result = run("doctor", "--dir", project, "--offline", "-o", "json")
    assert_no_traceback(result)
    results = {r["id"]: r for r in json.loads(result.out)["results"]}
    assert results["local.tls-files"]["status"] == "fail"
    assert "ssl/cert.pem is a malformed certificate" in results["local.tls-files"]["message"]
    assert "broke" not in result.out


def test_n11_a_malformed_ca_is_named_too(project: Path) -> None:
    key = serialization.load_pem_private_key((project / "ssl/ca-key.pem").read_bytes(), None)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")])
    pem = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
           .public_key(key.public_key()).serial_number(1)  # type: ignore[arg-type]
           .not_valid_before(NOW - dt.timedelta(days=1))
           .not_valid_after(NOW + dt.timedelta(days=300))
           .add_extension(_raw(ExtensionOID.BASIC_CONSTRAINTS, "0102"), critical=True)
           .sign(key, hashes.SHA256())  # type: ignore[arg-type]
           .public_bytes(serialization.Encoding.PEM))
    (project / "ssl/ca.pem").write_bytes(pem)
    for args in (["certs", "show"], ["certs", "check"], ["init"], ["certs", "rotate"]):
        result = _unchanged(project, lambda a=args: run(*a, "--dir", project), code=1)  # type: ignore[misc]
        assert "ssl/ca.pem is a malformed certificate" in result.err, args
        assert "certs rotate --ca" in result.err


def test_n11_a_key_of_an_unknown_algorithm_is_named(project: Path) -> None:
    import base64

    # An Ed25519 key whose algorithm OID is 1.3.101.99, which no library knows.
    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    unknown = key.replace(bytes.fromhex("06032b6570"), bytes.fromhex("06032b6563"))
    (project / "ssl/key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\n" +
                                          base64.encodebytes(unknown) +
                                          b"-----END PRIVATE KEY-----\n")
    for args in (["certs", "check"], ["init"]):
        result = _unchanged(project, lambda a=args: run(*a, "--dir", project), code=1)  # type: ignore[misc]
        assert "ssl/key.pem is not an unencrypted PEM private key" in result.err


def test_n11_a_first_san_no_verifier_can_check_does_not_break_doctor(tmp_path: Path) -> None:
    project = tmp_path / "p"
    _ok(run("init", "--dir", project, "--issuer", LOCAL_ISSUER))
    ca = x509.load_pem_x509_certificate((project / "ssl/ca.pem").read_bytes())
    (project / "ssl/cert.pem").write_bytes(_leaf_pem(
        project,
        x509.SubjectAlternativeName([x509.DNSName("a_b.example.com"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value)))
    result = run("doctor", "--dir", project, "--offline", "-o", "json")
    assert_no_traceback(result)
    assert "broke" not in result.out
    results = {r["id"]: r for r in json.loads(result.out)["results"]}
    assert results["local.chain"]["status"] == "ok", results["local.chain"]


# --- N-20: one rule for the directory holding the keys ----------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o773, 0o707])
def test_n20_a_key_directory_anyone_can_write_is_refused_by_all_four(tmp_path: Path,
                                                                     mode: int) -> None:
    project = tmp_path / "p"
    _ok(run("init", "--dir", project, "--issuer", LOCAL_ISSUER))
    (project / "ssl").chmod(mode)
    try:
        messages = set()
        for args in (["init"], ["certs", "check"], ["certs", "rotate"]):
            result = _unchanged(project, lambda a=args: run(*a, "--dir", project), code=1)  # type: ignore[misc]
            messages.add(next(line for line in result.err.splitlines()
                              if line.startswith("error: ")))
        assert len(messages) == 1 and "writable by every user" in messages.pop()
        doctor = run("doctor", "--dir", project, "--offline", "-o", "json")
        results = {r["id"]: r for r in json.loads(doctor.out)["results"]}
        assert results["local.tls-files"]["status"] == "fail"
        assert "writable by every user" in results["local.tls-files"]["message"]
    finally:
        (project / "ssl").chmod(0o700)


def test_n20_a_sticky_shared_directory_stays_allowed_by_all_four(tmp_path: Path) -> None:
    project = tmp_path / "p"
    _ok(run("init", "--dir", project, "--issuer", LOCAL_ISSUER))
    (project / "ssl").chmod(0o1777)
    _ok(run("init", "--dir", project))
    _ok(run("certs", "check", "--dir", project))
    doctor = run("doctor", "--dir", project, "--offline", "-o", "json")
    results = {r["id"]: r for r in json.loads(doctor.out)["results"]}
    assert results["local.tls-files"]["status"] == "ok"
    (project / "ssl").chmod(0o700)


# --- N-18 (and M26): the manifest's command read as kube-apiserver reads it -------------------

MANIFEST = """\
apiVersion: v1
kind: Pod
metadata: {name: kube-apiserver, namespace: kube-system}
spec:
  containers:
  - command:
    - kube-apiserver
    - --secure-port=6443
%s    - --tls-cert-file=/etc/kubernetes/pki/apiserver.crt
    image: registry.k8s.io/kube-apiserver:v1.34.0
    name: kube-apiserver
    volumeMounts:
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
"""


def _command(path: Path) -> list[str]:
    return [str(a) for a in yaml.safe_load(path.read_text())["spec"]["containers"][0]["command"]]


def _manifest(tmp_path: Path, items: list[str]) -> Path:
    path = tmp_path / "node/manifests/kube-apiserver.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(MANIFEST % "".join(f"    - {item}\n" for item in items))
    return path


@pytest.mark.parametrize("spaced", [
    "--oidc-issuer-url https://old.example.com", "--oidc-issuer-url\thttps://old.example.com",
    "--oidc-client-id  kubernetes", "--authentication-config /etc/x.yaml",
    "--oidc-issuer-url https://old.example.com --service-cluster-ip-range=10.0.0.0/8"])
def test_n18_an_item_with_a_space_never_takes_the_next_flag_with_it(
        project: Path, tmp_path: Path, spaced: str) -> None:
    manifest = _manifest(tmp_path, [json.dumps(spaced),
                                    "--service-cluster-ip-range=10.96.0.0/12"])
    _ok(run("apiserver", "patch", "--dir", project, manifest))
    command = _command(manifest)
    assert "--service-cluster-ip-range=10.96.0.0/12" in command
    assert spaced not in command  # one unknown (dexkit) flag: replaced
    others = [a for a in command if not a.startswith(("--oidc-", "--authentication-config"))]
    assert others == ["kube-apiserver", "--secure-port=6443",
                      "--service-cluster-ip-range=10.96.0.0/12",
                      "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt"]
    again = run("apiserver", "patch", "--dir", project, manifest)
    assert again.code == 0 and "already configured" in again.err


@pytest.mark.parametrize("items", [
    ["--oidc-issuer-url"],  # M26: the last item, its value missing
    ["--oidc-issuer-url", "--service-cluster-ip-range=10.96.0.0/12"],
    ["--oidc-client-id", "--oidc-issuer-url=https://old.example.com"],
    ["--authentication-config", "-v=2"],
    ["--", "--oidc-issuer-url=https://old.example.com"],
])
def test_n18_a_dexkit_flag_without_its_value_is_a_user_error(
        project: Path, tmp_path: Path, items: list[str]) -> None:
    manifest = _manifest(tmp_path, items)
    result = _unchanged(tmp_path / "node", lambda: run("apiserver", "patch", "--dir", project,
                                                       manifest))
    assert "kube-apiserver.yaml" in result.err and "overlapping" not in result.err


def test_n18_an_underscored_flag_is_the_same_flag_to_kube_apiserver(project: Path,
                                                                    tmp_path: Path) -> None:
    # component-base's WordSepNormalizeFunc: '--oidc_issuer_url' sets --oidc-issuer-url, so
    # keeping it beside dexkit's flag would leave two issuer flags, the later one winning.
    manifest = _manifest(tmp_path, ["--oidc_issuer_url=https://old.example.com",
                                    "--oidc_client_id", "old"])
    _ok(run("apiserver", "patch", "--dir", project, manifest))
    command = _command(manifest)
    issuers = [a for a in command if a.replace("_", "-").startswith("--oidc-issuer-url")]
    assert issuers == ["--oidc-issuer-url=https://dex.example.com:32000"]
    assert "old" not in command and "--oidc_client_id" not in command


def test_n18_a_two_item_flag_is_still_one_flag(project: Path, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, ["--oidc-issuer-url", "https://old.example.com",
                                    "--oidc-username-prefix", "-"])
    _ok(run("apiserver", "patch", "--dir", project, manifest))
    command = _command(manifest)
    assert "https://old.example.com" not in command and "-" not in command
    assert "--oidc-issuer-url=https://dex.example.com:32000" in command


# --- N-19: error texts ------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["podLabels", "commonLabels", "podAnnotations", "nodeSelector"])
@pytest.mark.parametrize(("value", "got"), [("no", "bool"), ("3", "int"), ("[a]", "array"),
                                            ("~", "null")])
def test_n19_a_bad_value_in_a_mapping_is_named_by_its_key(project: Path, key: str, value: str,
                                                          got: str) -> None:
    path = project / "dexkit.yaml"
    path.write_text(path.read_text().replace("\ndex:\n", f"\ndex:\n  {key}: {{a: b, team: "
                                             f"{value}}}\n", 1))
    result = _unchanged(project, lambda: run("apiserver", "flags", "--dir", project), code=1)
    assert f": dex.{key}.team: Expected str, got {got}" in result.err
    assert ".]" not in result.err


def test_n19_a_dangling_backup_link_is_named_as_one(project: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "node/manifests/kube-apiserver.yaml"
    manifest.parent.mkdir(parents=True)
    manifest.write_bytes((FIXTURES / "kube-apiserver-1.34.yaml").read_bytes())
    (tmp_path / "node/dexkit-backups").symlink_to("../elsewhere/backups")
    result = _unchanged(tmp_path / "node",
                        lambda: run("apiserver", "patch", "--dir", project, manifest), code=1)
    assert "dexkit-backups is a symbolic link to ../elsewhere/backups, which does not exist" \
        in result.err
    assert f"hint: create {tmp_path / 'node/../elsewhere/backups'}" in result.err
    assert not (tmp_path / "elsewhere").exists()


def test_n19_a_misbehaving_exec_plugin_prints_no_library_logging(project: Path,
                                                                 tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1", "command": "sh",
            "args": ["-c", "echo not-json"], "interactiveMode": "Never"}}}]}))
    # A process of its own: pytest's own logging handlers would hide what a user sees.
    done = subprocess.run([sys.executable, "-m", "dexkit", "deploy", "--dir", str(project),
                           "--kubeconfig", str(kubeconfig)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    assert_clean_failure(Result(done.returncode, done.stdout, done.stderr), code=1)
    noise = [line for line in done.stderr.splitlines()
             if re.match(r"(WARNING|ERROR|INFO|DEBUG):", line) or "Retrying" in line]
    assert noise == []
    assert len(done.stderr.splitlines()) <= 4, done.stderr


def test_n19_a_reissue_reason_never_says_expires_in_minus_days(project: Path) -> None:
    (project / "ssl/cert.pem").write_bytes(_leaf_pem(
        project, x509.SubjectAlternativeName([x509.DNSName("dex.example.com")]), days=(-20, -3)))
    result = run("init", "--dir", project)
    _ok(result)
    assert f"(it expired on {NOW - dt.timedelta(days=3):%Y-%m-%d}, 3 days ago" in result.err
    assert "expires in -" not in result.err


# --- N-14 (part): apiserver config --merge ----------------------------------------------------


def test_n14_a_binary_merge_file_is_a_user_error(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "authn.yaml"
    target.write_bytes(b"\x80\x81\xfe\xff binary")
    result = _unchanged(tmp_path, lambda: run("apiserver", "config", "--dir", project,
                                              "--merge", target))
    # The one reader (dexkit.readfile) names the file and the first byte that is not text.
    assert "authn.yaml is not UTF-8 text (byte 1 is 0x80)" in result.err


HEAD = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"


def test_n14_an_entry_whose_issuer_is_text_is_kept_with_a_note(project: Path,
                                                              tmp_path: Path) -> None:
    target = tmp_path / "authn.yaml"
    target.write_text(HEAD + "jwt:\n- issuer: https://other.example.com\n")
    result = run("apiserver", "config", "--dir", project, "--merge", target)
    _ok(result)
    assert "- issuer: https://other.example.com\n" in result.out
    assert "jwt entry 1 has no issuer.url" in result.err


@pytest.mark.parametrize("text", [
    "jwt:\n- &dex\n  issuer:\n    url: https://dex.example.com:32000\n    audiences: [x]\n"
    "x-copy: *dex\n",
    "jwt:\n- issuer: &u\n    url: https://dex.example.com:32000\n    audiences: [x]\n"
    "x-copy: {issuer: *u}\n",
    "jwt:\n- issuer:\n    url: https://dex.example.com:32000\n    audiences: &aud [x]\n"
    "- issuer:\n    url: https://other.example.com\n    audiences: *aud\n",
])
def test_n14_an_anchor_in_dexs_entry_used_elsewhere_is_a_user_error(
        project: Path, tmp_path: Path, text: str) -> None:
    target = tmp_path / "authn.yaml"
    target.write_text(HEAD + text)
    for extra in ([], ["--write"]):
        result = _unchanged(tmp_path, lambda e=extra: run(  # type: ignore[misc]
            "apiserver", "config", "--dir", project, "--merge", target, *e), code=2)
        assert "authn.yaml:" in result.err and "alias" in result.err


# --- beyond the report: the guide's own CA and certificate are judged as their clients do -----

GENCERT_REQ = """\
[req]
req_extensions = v3_req
distinguished_name = req_distinguished_name
[req_distinguished_name]
[ v3_req ]
basicConstraints = CA:FALSE
keyUsage = nonRepudiation, digitalSignature, keyEncipherment
subjectAltName = @alt_names
[alt_names]
DNS.1 = dex.example.com
"""


def test_the_guides_gencert_files_verify_in_certs_show_and_doctor(tmp_path: Path) -> None:
    """gencert.sh's commands, run with the real openssl: its CA has no keyUsage and its leaf
    no authorityKeyIdentifier; Go (the API server) and OpenSSL accept both, so dexkit must."""
    ssl = tmp_path / "p/ssl"
    ssl.mkdir(parents=True, mode=0o700)
    (ssl / "req.cnf").write_text(GENCERT_REQ)
    for command in (
            "openssl genrsa -out ca-key.pem 2048",
            "openssl req -x509 -new -nodes -key ca-key.pem -days 10 -out ca.pem -subj /CN=kube-ca",
            "openssl genrsa -out key.pem 2048",
            "openssl req -new -key key.pem -out csr.pem -subj /CN=kube-ca -config req.cnf",
            "openssl x509 -req -in csr.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial "
            "-out cert.pem -days 10 -extensions v3_req -extfile req.cnf"):
        subprocess.run(command.split(), cwd=ssl, check=True, capture_output=True)
    for key in ("ca-key.pem", "key.pem"):
        (ssl / key).chmod(0o600)
    assert subprocess.run(["openssl", "verify", "-CAfile", "ca.pem", "cert.pem"], cwd=ssl,
                          capture_output=True).returncode == 0
    cert = (ssl / "cert.pem").read_bytes()
    result = run("init", "--dir", ssl.parent, "--issuer", "https://dex.example.com:32000",
                 "--key-type", "rsa-2048")
    _ok(result)
    assert (ssl / "cert.pem").read_bytes() == cert  # adopted as it is
    show = run("certs", "show", "--dir", ssl.parent)
    assert "chain  verifies (for dex.example.com)" in show.out, show.out
    # Doctor on a loopback issuer (its network checks stay here): a leaf re-issued under
    # the same CA.
    _ok(run("init", "--dir", ssl.parent, "--issuer", LOCAL_ISSUER))
    doctor = run("doctor", "--dir", ssl.parent, "--offline", "-o", "json")
    results = {r["id"]: r for r in json.loads(doctor.out)["results"]}
    assert results["local.chain"]["status"] == "ok", results["local.chain"]
