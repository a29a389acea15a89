"""`dexkit apiserver flags | config | patch | snippet` through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import snapshot
from tests.unit.render.helpers import FIXTURES


def _project(dexkit: Any, project: Path, config: dict[str, Any] | None = None) -> Path:
    project.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (project / "dexkit.yaml").write_text(yaml.safe_dump(config))
    assert dexkit("init", "--dir", project).code == 0
    return project


def _manifest(tmp_path: Path, fixture: str = "kube-apiserver-1.30.yaml") -> Path:
    """A copy of a kubeadm manifest where kubeadm keeps it: <dir>/manifests/, mode 0600."""
    path = tmp_path / "kubernetes" / "manifests" / "kube-apiserver.yaml"
    path.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / fixture, path)
    path.chmod(0o600)
    return path


def test_flags(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("apiserver", "flags", "--dir", project)
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "--oidc-issuer-url=https://dex.example.com:32000"
    assert all(line.startswith("--oidc-") for line in result.out.splitlines())
    assert "note: usernames are the email claim" in result.err


def test_flags_explain_the_issuer_prefix(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {"apiServer": {"usernameClaim": "sub"}})
    result = dexkit("apiserver", "flags", "--dir", project)
    assert "--oidc-username-prefix=https://dex.example.com:32000#" in result.out
    assert "'https://dex.example.com:32000#<sub>'" in result.err


def test_flags_as_json(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {"apiServer": {"mode": "authentication-config"}})
    result = dexkit("apiserver", "flags", "--dir", project, "--output", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["mode"] == "authentication-config"
    assert data["flags"] == [
        "--authentication-config=/etc/kubernetes/dexkit/authentication-config.yaml"]


@pytest.mark.parametrize(("version", "api"), [("1.32", "v1beta1"), ("1.35", "v1")])
def test_config(dexkit, project: Path, version: str, api: str) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {"apiServer": {"mode": "authentication-config"},
                               "kubernetesVersion": version})
    result = dexkit("apiserver", "config", "--dir", project)
    assert result.code == 0, result.err
    config = yaml.safe_load(result.out)
    assert config["apiVersion"] == f"apiserver.config.k8s.io/{api}"
    assert config["jwt"][0]["issuer"]["certificateAuthority"] == \
        (project / "ssl/ca.pem").read_text()
    assert "warning" not in result.err


def test_config_in_flags_mode_warns(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("apiserver", "config", "--dir", project)
    assert result.code == 0
    assert "warning: dexkit.yaml has apiServer.mode: flags" in result.err


def test_config_without_ca_fails(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    (project / "ssl/ca.pem").unlink()
    result = dexkit("apiserver", "config", "--dir", project)
    assert result.code == 1
    assert "ca.pem does not exist" in result.err and "hint:" in result.err


def test_snippet(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("apiserver", "snippet", "--dir", project)
    assert result.code == 0
    snippet = yaml.safe_load(result.out)
    assert snippet["volumeMounts"][0] == {"mountPath": "/etc/ssl/certs/openid-ca.pem",
                                          "name": "dexkit-oidc-ca", "readOnly": True}


@pytest.mark.parametrize("fixture", ["kube-apiserver-1.30.yaml", "kube-apiserver-1.34.yaml",
                                     "kube-apiserver-1.36-hand-oidc.yaml"])
def test_patch_then_already_configured(  # type: ignore[no-untyped-def]
        dexkit, project: Path, tmp_path: Path, fixture: str) -> None:
    _project(dexkit, project)
    manifest = _manifest(tmp_path, fixture)
    result = dexkit("apiserver", "patch", str(manifest), "--dir", project)
    assert result.code == 0, result.err
    assert "patched" in result.err and "backed up" in result.err
    command = yaml.safe_load(manifest.read_text())["spec"]["containers"][0]["command"]
    assert "--oidc-issuer-url=https://dex.example.com:32000" in command
    assert manifest.stat().st_mode & 0o777 == 0o600
    # The backup is outside the kubelet's manifest directory, and holds the old manifest.
    assert [p.name for p in manifest.parent.iterdir()] == ["kube-apiserver.yaml"]
    (backup,) = (tmp_path / "kubernetes" / "dexkit-backups").iterdir()
    assert backup.read_text() == (FIXTURES / fixture).read_text()
    first = snapshot(tmp_path)
    again = dexkit("apiserver", "patch", str(manifest), "--dir", project)
    assert again.code == 0
    assert "already configured" in again.err
    assert snapshot(tmp_path) == first  # byte for byte, and no second backup


def test_patch_dry_run_prints_a_diff_and_writes_nothing(  # type: ignore[no-untyped-def]
        dexkit, project: Path, tmp_path: Path) -> None:
    _project(dexkit, project)
    manifest = _manifest(tmp_path)
    before = snapshot(tmp_path)
    result = dexkit("apiserver", "patch", str(manifest), "--dir", project, "--dry-run")
    assert result.code == 0
    assert result.out.startswith(f"--- a/{manifest}\n+++ b/{manifest}\n")
    assert "+    - --oidc-client-id=kubernetes" in result.out
    assert "nothing written" in result.err
    assert snapshot(tmp_path) == before


def test_patch_without_backup(dexkit, project: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    manifest = _manifest(tmp_path)
    assert dexkit("apiserver", "patch", str(manifest), "--dir", project, "--no-backup").code == 0
    assert not (tmp_path / "kubernetes" / "dexkit-backups").exists()


def test_patch_switches_modes(dexkit, project: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    manifest = _manifest(tmp_path)
    assert dexkit("apiserver", "patch", str(manifest), "--dir", project).code == 0
    (project / "dexkit.yaml").write_text(yaml.safe_dump(
        {"apiServer": {"mode": "authentication-config"}}))
    result = dexkit("apiserver", "patch", str(manifest), "--dir", project)
    assert result.code == 0, result.err
    assert "removed --oidc-issuer-url" in result.err
    command = yaml.safe_load(manifest.read_text())["spec"]["containers"][0]["command"]
    assert not [f for f in command if f.startswith("--oidc-")]
    assert "dexkit apiserver config" in result.err


BAD = {
    "deployment": ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n",
                   "not a kube-apiserver Pod manifest"),
    "etcd": ((FIXTURES / "kube-apiserver-1.30.yaml").read_text().replace(
        "- kube-apiserver\n", "- etcd\n", 1), "no container runs the kube-apiserver command"),
    "malformed": ("apiVersion: v1\nkind: Pod\nspec:\n  containers: [\n", "not valid YAML"),
    "binary": (None, "not a text file"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_patch_refuses_what_is_not_an_apiserver_manifest(  # type: ignore[no-untyped-def]
        dexkit, project: Path, tmp_path: Path, name: str) -> None:
    _project(dexkit, project)
    text, message = BAD[name]
    manifest = _manifest(tmp_path)
    if text is None:
        manifest.write_bytes(b"\x00\xff\xfe binary")
    else:
        manifest.write_text(text)
    before = snapshot(tmp_path)
    result = dexkit("apiserver", "patch", str(manifest), "--dir", project)
    assert result.code == 2
    assert message in result.err and "hint:" in result.err
    assert "Traceback" not in result.err
    assert snapshot(tmp_path) == before


def test_patch_of_a_missing_file(dexkit, project: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("apiserver", "patch", str(tmp_path / "nope.yaml"), "--dir", project)
    assert result.code == 2
    assert "does not exist" in result.err


OTHER_ISSUER = """\
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: https://token.actions.githubusercontent.com  # CI
    audiences: [sts.example.com]
  claimMappings:
    username: {claim: sub, prefix: "gh:"}
"""


def test_config_merge_prints_and_write_replaces_after_a_backup(  # type: ignore[no-untyped-def]
        dexkit, project: Path, tmp_path: Path) -> None:
    _project(dexkit, project, {"apiServer": {"mode": "authentication-config"}})
    target = tmp_path / "authn" / "authentication-config.yaml"
    target.parent.mkdir()
    target.write_text(OTHER_ISSUER)
    target.chmod(0o600)
    printed = dexkit("apiserver", "config", "--dir", project, "--merge", target)
    assert printed.code == 0, printed.err
    assert printed.out.startswith(OTHER_ISSUER)
    assert "added dexkit's jwt entry" in printed.err
    assert "token.actions.githubusercontent.com" in printed.err
    assert target.read_text() == OTHER_ISSUER  # printing changes nothing
    written = dexkit("apiserver", "config", "--dir", project, "--merge", target, "--write")
    assert written.code == 0, written.err
    assert target.read_text() == printed.out
    assert target.stat().st_mode & 0o777 == 0o600
    (backup,) = target.parent.glob("authentication-config.yaml.bak-*")
    assert backup.read_text() == OTHER_ISSUER
    again = dexkit("apiserver", "config", "--dir", project, "--merge", target, "--write")
    assert again.code == 0 and "nothing changed" in again.err
    assert len(list(target.parent.glob("*.bak-*"))) == 1


def test_config_merge_errors(dexkit, project: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {"apiServer": {"mode": "authentication-config"}})
    missing = dexkit("apiserver", "config", "--dir", project, "--merge", tmp_path / "nope")
    assert missing.code == 2 and missing.err.count("error:") == 1 and "hint:" in missing.err
    pod = tmp_path / "pod.yaml"
    pod.write_text((FIXTURES / "kube-apiserver-1.34.yaml").read_text())
    before = snapshot(tmp_path)
    refused = dexkit("apiserver", "config", "--dir", project, "--merge", pod, "--write")
    assert refused.code == 2 and "not an AuthenticationConfiguration" in refused.err
    assert snapshot(tmp_path) == before
    lone = dexkit("apiserver", "config", "--dir", project, "--write")
    assert lone.code == 2 and "--write needs --merge" in lone.err
