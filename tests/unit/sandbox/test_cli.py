"""`dexkit sandbox` through the real CLI, without peer binaries: outputs and exit codes."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from dexkit.sandbox import peers

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("DEXKIT_CACHE_DIR", str(cache))
    for variable in peers.ENV_OVERRIDES.values():
        monkeypatch.delenv(variable, raising=False)
    return cache


def test_peers_json_lists_every_peer_as_missing(dexkit, empty_cache: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("sandbox", "peers", "--output", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["cache"] == str(empty_cache)
    assert [p["name"] for p in data["peers"]] == list(peers.PEER_NAMES)
    assert not any(p["built"] for p in data["peers"])
    apiserver = next(p for p in data["peers"] if p["name"] == "kube-apiserver")
    assert apiserver["version"] == "1.37.2"
    assert apiserver["path"] == str(empty_cache / "bin" / "kube-apiserver-1.37.2" /
                                    "kube-apiserver")


def test_peers_table_follows_the_kubernetes_version(dexkit) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("sandbox", "peers", "--kubernetes-version", "1.37")
    assert result.code == 0, result.err
    assert "1.37.2" in result.out and "missing" in result.out


def test_bad_versions_and_names_are_usage_errors(dexkit) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("sandbox", "build", "--only", "kubeadmin")
    assert result.code == 2
    assert "unknown peer 'kubeadmin'" in result.err
    result = dexkit("sandbox", "build", "--only", "dex", "--dex", "nightly")
    assert result.code == 2
    assert "unknown Dex build 'nightly'" in result.err
    result = dexkit("sandbox", "peers", "-k", "1.20")
    assert result.code == 2
    assert "Kubernetes 1.20 is not served" in result.err


def test_up_without_peers_says_how_to_build_them(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", tmp_path, "--issuer", "https://127.0.0.1:32000").code == 0
    result = dexkit("sandbox", "up", "--dir", tmp_path)
    assert result.code == 1
    assert "etcd 3.7.0 is not built" in result.err
    assert "dexkit sandbox build --only etcd" in result.err


def test_up_needs_a_project(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("sandbox", "up", "--dir", tmp_path)
    assert result.code == 1
    assert result.err.startswith(f"error: no dexkit.yaml in {tmp_path}")


def test_up_rejects_an_unknown_mode(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("sandbox", "up", "--dir", tmp_path, "--mode", "both")
    assert result.code == 2
    assert "'both' is not one of 'flags', 'authentication-config'" in result.err


def test_status_and_down_without_a_sandbox(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("sandbox", "status", "--dir", tmp_path)
    assert result.code == 0 and "no sandbox in" in result.err
    result = dexkit("sandbox", "status", "--dir", tmp_path, "-o", "json")
    assert json.loads(result.out)["running"] is False
    result = dexkit("sandbox", "down", "--dir", tmp_path)
    assert result.code == 0 and "nothing was running" in result.err


def test_restart_names_what_it_cannot_do(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("sandbox", "restart", "kubelet", "--dir", tmp_path)
    assert result.code == 2
    assert result.err.splitlines() == ["error: dexkit cannot restart 'kubelet'",
                                       "hint: name one of etcd, kube-apiserver"]
    result = dexkit("sandbox", "restart", "etcd", "--dir", tmp_path)
    assert result.code == 1
    assert result.err.splitlines()[0].startswith("error: no sandbox runs in ")
