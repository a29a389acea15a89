"""`dexkit kind config` through the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def _project(dexkit: Any, project: Path, config: dict[str, Any] | None = None) -> Path:
    project.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (project / "dexkit.yaml").write_text(yaml.safe_dump(config))
    assert dexkit("init", "--dir", project).code == 0
    return project


def test_kind_config(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("kind", "config", "--dir", project)
    assert result.code == 0, result.err
    cluster = yaml.safe_load(result.out)
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    node = cluster["nodes"][0]
    assert node["extraMounts"][0]["hostPath"] == str((project / "ssl/ca.pem").resolve())
    assert node["extraMounts"][1]["hostPath"] == str(
        (project / "out/kind/kubeadm-patches").resolve())
    patch = yaml.safe_load(node["kubeadmConfigPatches"][0])
    assert "apiVersion" not in patch  # kind applies it to the node image's kubeadm version
    assert patch["kind"] == "ClusterConfiguration"
    assert "hosts.sh" in result.err


def test_kind_config_for_136_and_authentication_config(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {"kubernetesVersion": "1.36",
                               "apiServer": {"mode": "authentication-config"}})
    result = dexkit("kind", "config", "--dir", project, "--out", project / "rendered")
    assert result.code == 0, result.err
    node = yaml.safe_load(result.out)["nodes"][0]
    assert node["extraMounts"][0]["hostPath"] == str(
        (project / "rendered/apiserver/authentication-config.yaml").resolve())
    patch = yaml.safe_load(node["kubeadmConfigPatches"][0])
    assert "apiVersion" not in patch
    assert patch["apiServer"]["extraArgs"] == {
        "authentication-config": "/etc/kubernetes/dexkit/authentication-config.yaml"}
    assert "run 'dexkit render' first" in result.err


def test_kind_config_warns_when_the_issuer_port_is_not_the_node_port(  # type: ignore[no-untyped-def]
        dexkit, project: Path) -> None:
    _project(dexkit, project, {"issuer": "https://dex.example.com:8443"})
    result = dexkit("kind", "config", "--dir", project)
    assert result.code == 0
    assert "differs from the Dex NodePort" in result.err
