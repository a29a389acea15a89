"""`dexkit render` through the real CLI: files, stdout stream, idempotence, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import snapshot
from tests.unit.render.helpers import GUIDE_HASH


def _project(dexkit: Any, project: Path, config: dict[str, Any] | None = None) -> Path:
    """A project made by 'dexkit init' (CA and certificates), with ``config`` as dexkit.yaml."""
    project.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (project / "dexkit.yaml").write_text(yaml.safe_dump(config))
    result = dexkit("init", "--dir", project)
    assert result.code == 0, result.err
    return project


def test_render_writes_every_artefact(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("render", "--dir", project)
    assert result.code == 0, result.err
    out = project / "out"
    for name in ("dex/00-namespace.yaml", "dex/08-deployment.yaml", "dex.yaml",
                 "apiserver/flags.txt", "apiserver/volumes.yaml", "kind/cluster.yaml",
                 "kind/hosts.sh"):
        assert (out / name).is_file(), name
    assert not (out / "apiserver/authentication-config.yaml").exists()
    assert (out / "kind/hosts.sh").stat().st_mode & 0o777 == 0o755
    assert result.out == ""  # files were written; stdout stays empty
    assert "created" in result.err and "next:" in result.err
    cluster = yaml.safe_load((out / "kind/cluster.yaml").read_text())
    assert cluster["nodes"][0]["extraMounts"][0]["hostPath"] == str(
        (project / "ssl/ca.pem").resolve())


def test_second_render_changes_nothing(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    assert dexkit("render", "--dir", project).code == 0
    before = snapshot(project / "out")
    result = dexkit("render", "--dir", project)
    assert result.code == 0
    assert snapshot(project / "out") == before
    assert "created" not in result.err and "updated" not in result.err
    assert "unchanged" in result.err


def test_stream_on_stdout_for_kubectl(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("render", "--dir", project, "--out", "-")
    assert result.code == 0, result.err
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.out) if doc]
    assert kinds == ["CustomResourceDefinition"] * 10 + [
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "Secret", "Deployment", "Service"]
    assert not (project / "out").exists()


def test_stale_files_are_removed(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {"dex": {"replicas": 2}})
    assert dexkit("render", "--dir", project).code == 0
    pdb = project / "out/dex/10-poddisruptionbudget.yaml"
    assert pdb.is_file()
    (project / "out/notes.txt").write_text("mine\n")
    (project / "dexkit.yaml").write_text(yaml.safe_dump({"dex": {"replicas": 1}}))
    result = dexkit("render", "--dir", project)
    assert result.code == 0, result.err
    assert not pdb.exists()
    assert "removed" in result.err
    assert (project / "out/notes.txt").read_text() == "mine\n"  # not ours: kept


def test_authentication_config_mode_renders_the_config_with_the_ca(  # type: ignore[no-untyped-def]
        dexkit, project: Path) -> None:
    _project(dexkit, project, {"apiServer": {"mode": "authentication-config"},
                               "kubernetesVersion": "1.33"})
    assert dexkit("render", "--dir", project).code == 0
    authn = yaml.safe_load((project / "out/apiserver/authentication-config.yaml").read_text())
    assert authn["apiVersion"] == "apiserver.config.k8s.io/v1beta1"
    assert authn["jwt"][0]["issuer"]["certificateAuthority"] == \
        (project / "ssl/ca.pem").read_text()
    flags = (project / "out/apiserver/flags.txt").read_text()
    assert [line for line in flags.splitlines() if line.startswith("--")] == [
        "--authentication-config=/etc/kubernetes/dexkit/authentication-config.yaml"]


def test_custom_out_directory(dexkit, project: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    target = tmp_path / "elsewhere"
    assert dexkit("render", "--dir", project, "--out", target).code == 0
    assert (target / "dex.yaml").is_file()
    assert not (project / "out").exists()


BAD_CONFIGS = {
    "unknown connector type": ({"connectors": [{"type": "gitlab"}]}, "unknown type 'gitlab'"),
    "github without credentials": ({"connectors": [{"type": "github",
                                                    "credentialsSecret": None}]},
                                   "needs a credential source"),
    "invalid redirect URI": ({"clients": [{"id": "kubernetes", "redirectURIs": [
        "http://example.com/callback"]}]}, "plain http on a non-loopback host"),
    "memory with replicas": ({"dex": {"replicas": 2, "storage": {"type": "memory"}}},
                             "its own users, keys and sessions"),
    "bad secret name": ({"connectors": [{"type": "github", "credentialsSecret": "Git_Hub"}]},
                        "not a valid Secret name"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_fails_cleanly_and_writes_nothing(  # type: ignore[no-untyped-def]
        dexkit, project: Path, name: str) -> None:
    _project(dexkit, project)
    config, message = BAD_CONFIGS[name]
    (project / "dexkit.yaml").write_text(yaml.safe_dump(config))
    before = snapshot(project)
    result = dexkit("render", "--dir", project)
    assert result.code == 1
    assert message in result.err
    assert "error:" in result.err and "hint:" in result.err
    assert "Traceback" not in result.err
    assert snapshot(project) == before


def test_authentication_config_without_a_ca_fails(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {"apiServer": {"mode": "authentication-config"}})
    (project / "ssl/ca.pem").unlink()
    result = dexkit("render", "--dir", project)
    assert result.code == 1
    assert "ca.pem does not exist" in result.err
    assert not (project / "out").exists()


def test_no_project_is_a_clear_error(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("render", "--dir", project)
    assert result.code == 1
    assert "no dexkit.yaml" in result.err


def test_static_users_and_rbac_render(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {
        "connectors": [],
        "staticUsers": [{"email": "admin@example.com", "username": "admin", "userID": "1",
                         "hash": GUIDE_HASH}],
        "rbac": [{"group": "team-a/admins", "clusterRole": "cluster-admin"}]})
    assert dexkit("render", "--dir", project).code == 0
    (binding,) = sorted((project / "out/rbac").iterdir())
    assert yaml.safe_load(binding.read_text())["subjects"][0]["name"] == "oidc:team-a/admins"
    secret = yaml.safe_load((project / "out/dex/06-config-secret.yaml").read_text())
    assert GUIDE_HASH in secret["stringData"]["config.yaml"]


def test_real_process_pipes_a_stream(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    """`python -m dexkit render --out -` in its own process, as `| kubectl apply -f -` runs it."""
    _project(dexkit, project)
    assert dexkit("render", "--dir", project).code == 0
    done = subprocess.run([sys.executable, "-m", "dexkit", "render", "--dir", str(project),
                           "--out", "-"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "Secret"}
    # The stream is the all-in-one dex.yaml, byte for byte.
    assert done.stdout == (project / "out/dex.yaml").read_text()


def test_render_formats_print_or_write_one_file(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project, {"issuer": "https://login.acme-corp.io",
                               "eks": {"clusterName": "prod", "region": "eu-west-1"}})
    values = dexkit("render", "--dir", project, "--format", "helm-values")
    assert values.code == 0, values.err
    assert yaml.safe_load(values.out)["config"]["issuer"] == "https://login.acme-corp.io"
    assert "warning: the chart always runs Dex's plain-HTTP listener" in values.err
    eks = dexkit("render", "--dir", project, "--format", "eks")
    assert eks.code == 0, eks.err
    assert json.loads(eks.out)["clusterName"] == "prod"
    assert "aws eks associate-identity-provider-config --cli-input-json" in eks.err
    target = project / "cluster.yaml"
    eksctl = dexkit("render", "--dir", project, "--format", "eksctl", "--out", target)
    assert eksctl.code == 0, eksctl.err
    assert eksctl.out == ""
    assert yaml.safe_load(target.read_text())["kind"] == "ClusterConfig"
    assert not (project / "out").exists()


def test_render_format_errors_are_one_line_each(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("render", "--dir", project, "--format", "eks")
    assert result.code == 1
    assert result.err.count("error:") == 1 and result.err.count("hint:") == 1
    assert "eks.clusterName" in result.err
    bad = dexkit("render", "--dir", project, "--format", "yaml")
    assert bad.code == 2 and "error:" in bad.err and "hint:" in bad.err
    into_dir = dexkit("render", "--dir", project, "--format", "helm-values", "--out", project)
    assert into_dir.code == 2 and "is a directory" in into_dir.err
