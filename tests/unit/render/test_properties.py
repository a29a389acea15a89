"""Properties over any valid issuer: every artefact names the same issuer and client.

Issuers: DNS names (any case), IPv4 and IPv6 addresses, with or without a port, with or without
a path such as /dex. For each, the issuer string is byte for byte the same in Dex's config, the
API-server flags, the AuthenticationConfiguration and the kind config (both kubeadm forms), and
the client ID the API server trusts is a Dex static client that may use the device flow.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dexkit.config import SUPPORTED_MINORS, Config
from dexkit.render.apiserver import apiserver_flags, oidc_flags, render_authentication_config
from dexkit.render.dex import render_dex_config, render_manifests, tls_secret_name
from dexkit.render.kind import render_kind_config
from tests.unit.render.helpers import documents, golden_ca, make_config

_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
# The last label is never a number (decimal or 0x…): URL parsers read such a host as IPv4.
_DNS = st.lists(_LABEL, min_size=1, max_size=4).filter(
    lambda labels: not re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]*", labels[-1])).map(".".join)
_IPV4 = st.ip_addresses(v=4).map(str)
_IPV6 = st.ip_addresses(v=6).map(lambda ip: f"[{ip}]")
_PORT = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_SEGMENT = st.from_regex(r"[a-z0-9_~-][a-z0-9._~-]{0,7}", fullmatch=True)
_PATH = st.one_of(st.just(""), st.lists(_SEGMENT, min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts)))
ISSUERS = st.builds(lambda host, port, path: f"https://{host}{port}{path}",
                    st.one_of(_DNS, _IPV4, _IPV6), _PORT, _PATH)
CLIENT_IDS = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)
MINORS = st.sampled_from(list(SUPPORTED_MINORS))
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _config(issuer: str, client_id: str, minor: int, mode: str) -> Config:
    return make_config({
        "issuer": issuer, "kubernetesVersion": f"1.{minor}",
        "clients": [{"id": client_id}, {"id": "other"}] if client_id != "other"
        else [{"id": client_id}],
        "apiServer": {"clientID": client_id, "mode": mode},
    })


def _kind_args(config: Config) -> dict[str, str]:
    cluster = yaml.safe_load(render_kind_config(config, ca_host_path="/p/ssl/ca.pem",
                                                authn_host_path="/p/out/authn.yaml",
                                                patches_host_path="/p/out/kind/patches"))
    patch = yaml.safe_load(cluster["nodes"][0]["kubeadmConfigPatches"][0])
    return dict(patch["apiServer"]["extraArgs"])  # a map on every minor: kind converts it


def _flag_values(flags: list[Any]) -> dict[str, str]:
    return {f.name: f.value for f in flags}


@settings(max_examples=150, deadline=None)
@given(issuer=ISSUERS, client_id=CLIENT_IDS, minor=MINORS)
def test_every_artefact_names_the_same_issuer_and_client(issuer: str, client_id: str,
                                                         minor: int) -> None:
    config = _config(issuer, client_id, minor, "flags")
    assert config.issuer == issuer
    dex = yaml.safe_load(render_dex_config(config))
    assert dex["issuer"] == issuer
    flags = _flag_values(oidc_flags(config))
    assert flags["oidc-issuer-url"] == issuer
    assert flags["oidc-client-id"] == client_id
    authn = yaml.safe_load(render_authentication_config(config, golden_ca()))
    assert authn["jwt"][0]["issuer"]["url"] == issuer
    assert authn["jwt"][0]["issuer"]["audiences"] == [client_id]
    kind_args = _kind_args(config)
    assert kind_args["oidc-issuer-url"] == issuer
    assert kind_args["oidc-client-id"] == client_id
    clients = {c["id"]: c for c in dex["staticClients"]}
    assert client_id in clients
    assert "/device/callback" in clients[client_id]["redirectURIs"]


@settings(max_examples=40, deadline=None)
@given(issuer=ISSUERS, minor=MINORS)
def test_authentication_config_mode_uses_only_its_flag(issuer: str, minor: int) -> None:
    config = _config(issuer, "kubernetes", minor, "authentication-config")
    flags = [str(f) for f in apiserver_flags(config)]
    assert flags == [f"--authentication-config={config.api_server.authentication_config_file}"]
    assert _kind_args(config) == {"authentication-config":
                                  config.api_server.authentication_config_file}


@settings(max_examples=60, deadline=None)
@given(issuer=ISSUERS)
def test_object_names_are_valid_for_any_issuer(issuer: str) -> None:
    """Secret names follow the guide's <host>.tls but stay DNS subdomains (IPv6, capitals)."""
    config = _config(issuer, "kubernetes", 34, "flags")
    assert _NAME.match(tls_secret_name(config)), tls_secret_name(config)
    for manifest in render_manifests(config):
        for doc in documents(manifest.text):
            name = doc["metadata"]["name"]
            assert "/" not in name and "%" not in name, name
