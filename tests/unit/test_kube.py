"""The light bearer-token session's TLS: what a kubeconfig cluster entry makes it trust."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

from dexkit.kube import cluster_tls

CA = Path(__file__).resolve().parents[1] / "golden" / "ca.pem"


def _cas(context: ssl.SSLContext) -> int:
    return context.cert_store_stats()["x509_ca"]


def test_certificate_authority_data_is_the_only_trust() -> None:
    data = base64.b64encode(CA.read_bytes()).decode()
    context = cluster_tls({"server": "https://127.0.0.1:6443",
                           "certificate-authority-data": data}, Path("/nonexistent"))
    assert _cas(context) == 1  # not the system store beside it
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_relative_certificate_authority_is_read_beside_its_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(CA.read_bytes())
    context = cluster_tls({"server": "https://127.0.0.1:6443",
                           "certificate-authority": "ca.pem"}, tmp_path)
    assert _cas(context) == 1


def test_no_certificate_authority_means_the_system_store() -> None:
    context = cluster_tls({"server": "https://127.0.0.1:6443"}, Path("/nonexistent"))
    assert _cas(context) == _cas(ssl.create_default_context())


def test_insecure_skip_tls_verify_turns_verification_off() -> None:
    data = base64.b64encode(CA.read_bytes()).decode()
    context = cluster_tls({"server": "https://127.0.0.1:6443", "certificate-authority-data": data,
                           "insecure-skip-tls-verify": True}, Path("/nonexistent"))
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
