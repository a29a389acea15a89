"""The kind Cluster config and the /etc/hosts helper."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit.render.kind import kubeadm_api_version, render_hosts_script, render_kind_config
from tests.unit.render.helpers import make_config


def _cluster(data: dict[str, Any] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(render_kind_config(
        make_config(data), ca_host_path="/srv/p/ssl/ca.pem",
        authn_host_path="/srv/p/out/apiserver/authentication-config.yaml"))
    return loaded


def _patch(cluster: dict[str, Any]) -> dict[str, Any]:
    (text,) = cluster["nodes"][0]["kubeadmConfigPatches"]
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


@pytest.mark.parametrize(("minor", "version"), [(30, "v1beta3"), (35, "v1beta3"),
                                                (36, "v1beta4"), (37, "v1beta4")])
def test_kubeadm_version_follows_kind(minor: int, version: str) -> None:
    assert kubeadm_api_version(minor) == f"kubeadm.k8s.io/{version}"
    patch = _patch(_cluster({"kubernetesVersion": f"1.{minor}"}))
    assert patch["apiVersion"] == f"kubeadm.k8s.io/{version}"
    assert patch["kind"] == "ClusterConfiguration"
    args = patch["apiServer"]["extraArgs"]
    if version == "v1beta3":
        assert isinstance(args, dict)
        assert args["oidc-issuer-url"] == "https://dex.example.com:32000"
    else:
        assert isinstance(args, list)
        assert {"name": "oidc-issuer-url", "value": "https://dex.example.com:32000"} in args


def test_flags_mode_mounts_the_ca_into_node_and_pod() -> None:
    cluster = _cluster()
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (node,) = cluster["nodes"]
    assert node["role"] == "control-plane"
    assert node["extraMounts"] == [{"hostPath": "/srv/p/ssl/ca.pem",
                                    "containerPath": "/etc/ssl/certs/openid-ca.pem",
                                    "readOnly": True}]
    assert _patch(cluster)["apiServer"]["extraVolumes"] == [{
        "name": "dexkit-oidc-ca", "hostPath": "/etc/ssl/certs/openid-ca.pem",
        "mountPath": "/etc/ssl/certs/openid-ca.pem", "readOnly": True, "pathType": "File"}]


def test_authentication_config_mode_mounts_the_config() -> None:
    cluster = _cluster({"apiServer": {"mode": "authentication-config"}})
    assert cluster["nodes"][0]["extraMounts"] == [{
        "hostPath": "/srv/p/out/apiserver/authentication-config.yaml",
        "containerPath": "/etc/kubernetes/dexkit/authentication-config.yaml", "readOnly": True}]
    patch = _patch(cluster)
    assert patch["apiServer"]["extraArgs"] == [{
        "name": "authentication-config",
        "value": "/etc/kubernetes/dexkit/authentication-config.yaml"}]
    assert patch["apiServer"]["extraVolumes"][0]["mountPath"] == "/etc/kubernetes/dexkit"


def test_port_mapping_reaches_the_node_port() -> None:
    assert _cluster()["nodes"][0]["extraPortMappings"] == [{
        "containerPort": 32000, "hostPort": 32000, "listenAddress": "127.0.0.1",
        "protocol": "TCP"}]
    mapped = _cluster({"issuer": "https://dex.example.com", "dex": {"service": {
        "nodePort": 31000}}})["nodes"][0]["extraPortMappings"][0]
    assert (mapped["hostPort"], mapped["containerPort"]) == (443, 31000)
    assert "extraPortMappings" not in _cluster({"dex": {"service": {"type": "ClusterIP"}}})[
        "nodes"][0]


@pytest.mark.parametrize(("issuer", "address"), [("https://127.0.0.1:32000", "127.0.0.1"),
                                                 ("https://[::1]:32000", "::1"),
                                                 ("https://10.1.2.3:32000", "0.0.0.0")])  # noqa: S104
def test_ip_issuers_listen_on_their_address_and_need_no_names(issuer: str, address: str) -> None:
    cluster = _cluster({"issuer": issuer})
    assert cluster["nodes"][0]["extraPortMappings"][0]["listenAddress"] == address
    assert render_hosts_script(make_config({"issuer": issuer})) is None


def test_hosts_script_is_valid_shell_and_names_the_issuer_host() -> None:
    script = render_hosts_script(make_config())
    assert script is not None
    assert script.startswith("#!/bin/sh\n")
    assert "host=dex.example.com\n" in script
    assert 'echo "127.0.0.1 $host"' in script
    assert "docker exec" in script
    sh = shutil.which("sh")
    assert sh is not None
    subprocess.run([sh, "-n"], input=script, text=True, check=True)


def test_hosts_script_adds_the_host_entry_once(tmp_path: Path) -> None:
    """Run the script's CI-host half against a scratch hosts file, twice."""
    script = render_hosts_script(make_config())
    assert script is not None
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    host_half = script.split("# Node:")[0].replace("/etc/hosts", str(hosts))
    for _ in range(2):
        subprocess.run(["sh", "-c", host_half, "hosts.sh"], check=True)
    assert hosts.read_text() == "127.0.0.1 localhost\n127.0.0.1 dex.example.com\n"
