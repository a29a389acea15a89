"""The assets `dexkit init` writes, checked by tools that are not dexkit: openssl and a real
TLS handshake through Python's ssl module (OpenSSL underneath). A missing openssl fails."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HOSTS = ["dex.example.com", "dex.internal.example"]
IPS = ["127.0.0.1", "::1"]


def _openssl() -> str:
    path = shutil.which("openssl")
    assert path, "openssl is required for the interop tests (apt-get install openssl)"
    return path


@pytest.fixture(scope="module", params=["ecdsa-p256", "rsa-2048"])
def ssl_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dexkit.__main__ import main

    project = tmp_path_factory.mktemp(request.param)
    args = ["init", "--dir", str(project), "--key-type", request.param]
    for host in HOSTS[1:]:
        args += ["--host", host]
    for ip in IPS:
        args += ["--ip", ip]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    return project / "ssl"


def test_openssl_verifies_the_chain(ssl_dir: Path) -> None:
    result = subprocess.run(
        [_openssl(), "verify", "-CAfile", ssl_dir / "ca.pem", ssl_dir / "cert.pem"],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("cert.pem: OK")


def test_openssl_verifies_for_server_purpose_and_each_name(ssl_dir: Path) -> None:
    for name in HOSTS:
        result = subprocess.run(
            [_openssl(), "verify", "-purpose", "sslserver", "-verify_hostname", name,
             "-CAfile", ssl_dir / "ca.pem", ssl_dir / "cert.pem"],
            capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
    wrong = subprocess.run(
        [_openssl(), "verify", "-verify_hostname", "evil.example.com",
         "-CAfile", ssl_dir / "ca.pem", ssl_dir / "cert.pem"],
        capture_output=True, text=True, check=False)
    assert wrong.returncode != 0


def test_openssl_lists_every_san(ssl_dir: Path) -> None:
    result = subprocess.run(
        [_openssl(), "x509", "-noout", "-ext", "subjectAltName", "-in", ssl_dir / "cert.pem"],
        capture_output=True, text=True, check=True)
    for host in HOSTS:
        assert f"DNS:{host}" in result.stdout
    assert "IP Address:127.0.0.1" in result.stdout
    assert "IP Address:0:0:0:0:0:0:0:1" in result.stdout


def test_openssl_reads_the_ca_constraints(ssl_dir: Path) -> None:
    result = subprocess.run(
        [_openssl(), "x509", "-noout", "-ext", "basicConstraints,keyUsage", "-in",
         ssl_dir / "ca.pem"], capture_output=True, text=True, check=True)
    assert "critical" in result.stdout and "CA:TRUE, pathlen:0" in result.stdout
    assert "Certificate Sign, CRL Sign" in result.stdout


def test_openssl_matches_key_and_cert(ssl_dir: Path) -> None:
    def pub(args: list[str | Path]) -> str:
        return subprocess.run([_openssl(), *args], capture_output=True, text=True,
                              check=True).stdout
    assert pub(["x509", "-noout", "-pubkey", "-in", ssl_dir / "cert.pem"]) == pub(
        ["pkey", "-pubout", "-in", ssl_dir / "key.pem"])


@contextmanager
def _tls_server(ssl_dir: Path, family: socket.AddressFamily, address: str) -> Iterator[int]:
    """A real TLS server presenting cert.pem/key.pem; yields its port. Answers one byte."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ssl_dir / "cert.pem", ssl_dir / "key.pem")
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((address, 0))
    listener.listen(8)
    listener.settimeout(10)

    def serve() -> None:
        """One connection, then done: each test makes exactly one handshake."""
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"k")
        except (ssl.SSLError, OSError):
            pass  # the client refused us: that is what some tests want

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(timeout=5)


def _handshake(ssl_dir: Path, family: socket.AddressFamily, address: str,
               server_name: str) -> Callable[[], bytes]:
    client = ssl.create_default_context(cafile=str(ssl_dir / "ca.pem"))
    with _tls_server(ssl_dir, family, address) as port, \
            socket.create_connection((address, port), timeout=10) as raw, \
            client.wrap_socket(raw, server_hostname=server_name) as tls:
        data = tls.recv(1)
    return lambda: data


@pytest.mark.parametrize("name", HOSTS)
def test_tls_client_trusting_only_the_ca_accepts_each_host(ssl_dir: Path, name: str) -> None:
    assert _handshake(ssl_dir, socket.AF_INET, "127.0.0.1", name)() == b"k"


@pytest.mark.parametrize(("family", "address"), [(socket.AF_INET, "127.0.0.1"),
                                                 (socket.AF_INET6, "::1")])
def test_tls_client_accepts_each_ip(ssl_dir: Path, family: socket.AddressFamily,
                                    address: str) -> None:
    if family is socket.AF_INET6 and not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback; the IP SAN ::1 cannot be proven")
    assert _handshake(ssl_dir, family, address, address)() == b"k"


def test_tls_client_refuses_a_name_not_in_the_sans(ssl_dir: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match=r"match|mismatch"):
        _handshake(ssl_dir, socket.AF_INET, "127.0.0.1", "evil.example.com")


def test_tls_client_with_the_system_store_refuses(ssl_dir: Path) -> None:
    """Nothing but our CA makes the certificate trusted: no accidental public trust."""
    client = ssl.create_default_context()
    with _tls_server(ssl_dir, socket.AF_INET, "127.0.0.1") as port, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            pytest.raises(ssl.SSLCertVerificationError):
        client.wrap_socket(raw, server_hostname=HOSTS[0])
