"""The light bearer-token session's TLS: what a kubeconfig cluster entry makes it trust."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest

from dexkit.errors import ClusterError
from dexkit.kube import Cluster, TokenSession, cluster_tls, translate

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


# --- ClusterError.status: the HTTP status as a field, never read back out of the message ---


def _answering(status: int) -> TokenSession:
    import httpx

    return TokenSession("https://127.0.0.1:6443", "c", httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(status, json={}))))


def test_the_token_sessions_refusal_carries_its_status() -> None:
    for status in (401, 500):
        with pytest.raises(ClusterError) as refused:
            _answering(status).post("/apis/x", {}, "review")
        assert refused.value.status == status


def test_the_clients_api_errors_carry_their_status() -> None:
    from kubernetes.client.exceptions import ApiException

    cluster = Cluster("https://127.0.0.1:6443", "c", None)
    for status in (401, 403, 404):
        assert translate(ApiException(status=status, reason="x"), cluster, "get").status == status


def test_no_answer_has_no_status_even_when_the_text_holds_401() -> None:
    """A port like 34017 put "401" in the text of an unreachable server, which the old
    ``"401" in message`` test took for a refused token."""
    refused = translate(ConnectionRefusedError(111, "Connection refused"),
                        Cluster("https://127.0.0.1:34017", "c", None), "review")
    assert "401" in refused.message
    assert refused.status is None
