"""Network checks with the edges faked: resolver, HTTP transport; whose certificate is served."""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dexkit import pki
from dexkit.doctor.local import covers
from dexkit.doctor.network import judge_jwks, key_algorithm, whose
from tests.unit.doctor.helpers import ISSUER, NOW, ca_and_leaf, context, issue, run, self_signed

Project = Callable[..., Path]


def _no_dns(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_unresolvable_host_fails_with_hosts_hint(new_project: Project) -> None:
    result = run(context(new_project(), resolve=_no_dns), "network.resolve")
    assert result.status == "fail"
    assert result.message == ("the issuer host 'dex.example.com' does not resolve (Name or "
                              "service not known)")
    assert "/etc/hosts" in result.hint and "API server must resolve it too" in result.hint


def test_an_ip_issuer_resolves_to_itself(new_project: Project) -> None:
    project = new_project(issuer="https://127.0.0.1:32000", tls={"hosts": [],
                                                                 "ips": ["127.0.0.1"]})
    result = run(context(project), "network.resolve")
    assert result.status == "ok" and "127.0.0.1" in result.message


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_closed_port_fails_with_where_dex_should_be(new_project: Project) -> None:
    port = _closed_port()
    project = new_project(issuer=f"https://dex.example.com:{port}")
    result = run(context(project, resolve=lambda h, p: ["127.0.0.1"]), "network.tcp")
    assert result.status == "fail"
    assert f"dex.example.com:{port} (127.0.0.1: connection refused)" in result.message
    assert "cluster.deployment" in result.hint


# --- whose certificate ----------------------------------------------------------------------------

HOST = "dex.example.com"


@pytest.fixture(scope="module")
def ours() -> tuple[Any, Any, Any]:
    ca, ca_key, leaf, _ = ca_and_leaf([HOST], common_name="dexkit CA")
    return ca, ca_key, leaf


def _whose(served: Any, ours: tuple[Any, Any, Any], now: dt.datetime = NOW) -> tuple[str, str]:
    ca, _, leaf = ours
    return whose(served, ours=leaf, ca=ca, host=HOST, now=now, tls_secret="dex/dex.tls")


def test_served_is_ours(ours: tuple[Any, Any, Any]) -> None:
    message, hint = _whose(ours[2], ours, now=NOW + dt.timedelta(days=400))
    assert message.startswith("the server presents ssl/cert.pem itself, which expired on")
    assert "certs rotate" in hint


def test_served_is_from_our_ca_for_another_host(ours: tuple[Any, Any, Any]) -> None:
    other, _ = issue(ours[0], ours[1], ["old.example.com"])
    message, hint = _whose(other, ours)
    assert message == ("the server presents a certificate from dexkit's CA for "
                       "old.example.com, which does not cover 'dex.example.com'")
    assert "dexkit deploy" in hint and "dex/dex.tls" in hint


def test_served_is_self_signed(ours: tuple[Any, Any, Any]) -> None:
    message, hint = _whose(self_signed(HOST), ours)
    assert message == ("the server presents a self-signed certificate (CN=dex.example.com), "
                       "not ssl/cert.pem")
    assert "ingress" in hint


def test_served_is_from_another_ca(ours: tuple[Any, Any, Any]) -> None:
    _, _, foreign, _ = ca_and_leaf([HOST], common_name="Someone Else CA")
    message, _ = _whose(foreign, ours)
    assert "issued by 'CN=Someone Else CA,O=dexkit'" in message
    assert "not by dexkit's CA ('CN=dexkit CA,O=dexkit')" in message


# --- discovery and JWKS -------------------------------------------------------------------------


def _provider_http(issuer: str, keys: list[dict[str, Any]]) -> Callable[[Path], httpx.Client]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={
                "issuer": issuer, "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/keys",
                "grant_types_supported": ["authorization_code", "password"]})
        if request.url.path == "/keys":
            return httpx.Response(200, content=json.dumps({"keys": keys}))
        return httpx.Response(404)
    return lambda ca: httpx.Client(transport=httpx.MockTransport(handler))


RSA_KEY = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "1", "n": "x", "e": "AQAB"}


def test_discovery_with_a_trailing_slash_fails_and_says_so(new_project: Project) -> None:
    ctx = context(new_project(), http=_provider_http(ISSUER + "/", [RSA_KEY]))
    result = run(ctx, "network.discovery")
    assert result.status == "fail"
    assert result.message == (f"{ISSUER}/.well-known/openid-configuration publishes issuer "
                              f"'{ISSUER}/', not '{ISSUER}': they differ only by a trailing "
                              "slash")
    assert "byte for byte" in result.hint


def test_discovery_and_jwks_pass(new_project: Project) -> None:
    ctx = context(new_project(), http=_provider_http(ISSUER, [RSA_KEY]))
    discovery = run(ctx, "network.discovery")
    assert discovery.status == "ok" and "grants: authorization_code, password" in \
        discovery.message
    jwks = run(ctx, "network.jwks")
    assert jwks.status == "ok" and "RS256, accepted" in jwks.message


def test_jwks_alg_the_api_server_does_not_accept_fails(new_project: Project) -> None:
    ctx = context(new_project(apiServer={"signingAlgs": ["ES256"]}),
                  http=_provider_http(ISSUER, [RSA_KEY]))
    result = run(ctx, "network.jwks")
    assert result.status == "fail"
    assert "keys for RS256, but the API server accepts only ES256 (--oidc-signing-algs)" in \
        result.message


def test_judge_jwks_rules() -> None:
    assert judge_jwks({"keys": []}, ("RS256",), "u", "").status == "fail"
    enc_only = {"keys": [dict(RSA_KEY, use="enc")]}
    assert "no signing keys" in judge_jwks(enc_only, ("RS256",), "u", "").message
    ec = {"kty": "EC", "crv": "P-256"}
    assert key_algorithm(ec) == "ES256" and key_algorithm({"kty": "RSA"}) == "RS256"
    assert judge_jwks({"keys": [ec]}, ("ES256", "RS256"), "u", "").status == "ok"


def test_discovery_http_error(new_project: Project) -> None:
    ctx = context(new_project(), http=lambda ca: httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(404))))
    result = run(ctx, "network.discovery")
    assert result.status == "fail" and "answered HTTP 404" in result.message


def test_ip_sans_are_matched_as_addresses() -> None:
    ca, ca_key, _, _ = ca_and_leaf(["x"])
    leaf = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=pki.generate_key("ecdsa-p256"),
                                  hosts=[], ips=["127.0.0.1"], days=1, now=NOW)
    assert covers(leaf, "127.0.0.1") and not covers(leaf, "127.0.0.2")


def test_discovery_without_login_endpoints_warns() -> None:
    from dexkit.doctor.network import judge_discovery

    document = {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/keys"}
    result = judge_discovery(document, ISSUER, "u")
    assert result.status == "warn" and "nobody can log in here" in result.message
    assert judge_discovery({"issuer": ISSUER}, ISSUER, "u").status == "fail"
