"""The kind Cluster config and the /etc/hosts helper."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit.render.kind import (
    KUBEADM_PATCHES_DIR,
    kubeadm_api_version,
    render_apiserver_patch,
    render_hosts_script,
    render_kind_config,
)
from tests.unit.render.helpers import make_config

PATCHES = "/srv/p/out/kind/kubeadm-patches"


def _cluster(data: dict[str, Any] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(render_kind_config(
        make_config(data), ca_host_path="/srv/p/ssl/ca.pem",
        authn_host_path="/srv/p/out/apiserver/authentication-config.yaml",
        patches_host_path=PATCHES))
    return loaded


def _patches(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return [yaml.safe_load(text) for text in cluster["nodes"][0]["kubeadmConfigPatches"]]


def _patch(cluster: dict[str, Any]) -> dict[str, Any]:
    return _patches(cluster)[0]


@pytest.mark.parametrize("minor", [30, 35, 36, 37])
def test_kubeadm_patches_name_no_version_so_kind_applies_them_to_any_node(minor: int) -> None:
    """kind (pkg/internal/patch) matches a patch without apiVersion to the ClusterConfiguration
    of any kubeadm version and converts map-form extraArgs for v1beta4 itself; proven on real
    clusters by tests/e2e/test_kind.py."""
    assert kubeadm_api_version(minor) == \
        f"kubeadm.k8s.io/{'v1beta4' if minor >= 36 else 'v1beta3'}"
    cluster, init = _patches(_cluster({"kubernetesVersion": f"1.{minor}"}))
    assert "apiVersion" not in cluster and "apiVersion" not in init
    assert cluster["kind"] == "ClusterConfiguration"
    args = cluster["apiServer"]["extraArgs"]
    assert isinstance(args, dict)
    assert args["oidc-issuer-url"] == "https://dex.example.com:32000"
    assert init == {"kind": "InitConfiguration", "patches": {"directory": KUBEADM_PATCHES_DIR}}


def test_the_api_server_pod_gets_the_issuer_host_as_an_alias() -> None:
    cluster = _cluster()
    assert {"hostPath": PATCHES, "containerPath": KUBEADM_PATCHES_DIR, "readOnly": True} in \
        cluster["nodes"][0]["extraMounts"]
    patch = yaml.safe_load(render_apiserver_patch(make_config()) or "")
    assert patch == {"spec": {"hostAliases": [{"ip": "127.0.0.1",
                                               "hostnames": ["dex.example.com"]}]}}


def test_an_ip_issuer_needs_no_alias_nor_patches_directory() -> None:
    cluster = _cluster({"issuer": "https://127.0.0.1:32000"})
    assert [p["kind"] for p in _patches(cluster)] == ["ClusterConfiguration"]
    assert all(m["containerPath"] != KUBEADM_PATCHES_DIR
               for m in cluster["nodes"][0]["extraMounts"])
    assert render_apiserver_patch(make_config({"issuer": "https://127.0.0.1:32000"})) is None


def test_flags_mode_mounts_the_ca_into_node_and_pod() -> None:
    cluster = _cluster()
    assert cluster["kind"] == "Cluster" and cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (node,) = cluster["nodes"]
    assert node["role"] == "control-plane"
    assert node["extraMounts"][0] == {"hostPath": "/srv/p/ssl/ca.pem",
                                      "containerPath": "/etc/ssl/certs/openid-ca.pem",
                                      "readOnly": True}
    assert _patch(cluster)["apiServer"]["extraVolumes"] == [{
        "name": "dexkit-oidc-ca", "hostPath": "/etc/ssl/certs/openid-ca.pem",
        "mountPath": "/etc/ssl/certs/openid-ca.pem", "readOnly": True, "pathType": "File"}]


def test_authentication_config_mode_mounts_the_config() -> None:
    cluster = _cluster({"apiServer": {"mode": "authentication-config"}})
    assert cluster["nodes"][0]["extraMounts"][0] == {
        "hostPath": "/srv/p/out/apiserver/authentication-config.yaml",
        "containerPath": "/etc/kubernetes/dexkit/authentication-config.yaml", "readOnly": True}
    patch = _patch(cluster)
    assert patch["apiServer"]["extraArgs"] == {
        "authentication-config": "/etc/kubernetes/dexkit/authentication-config.yaml"}
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
    # Only the CI host's file: no container engine's CLI (kind drives docker, podman, nerdctl).
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not any(cli in line for line in code for cli in ("docker", "podman", "nerdctl"))
    sh = shutil.which("sh")
    assert sh is not None
    subprocess.run([sh, "-n"], input=script, text=True, check=True)


def test_hosts_script_adds_the_host_entry_once(tmp_path: Path) -> None:
    """Run the script against a scratch hosts file, twice."""
    script = render_hosts_script(make_config())
    assert script is not None
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    for _ in range(2):
        subprocess.run(["sh", "-c", script.replace("/etc/hosts", str(hosts)), "hosts.sh"],
                       check=True)
    assert hosts.read_text() == "127.0.0.1 localhost\n127.0.0.1 dex.example.com\n"
