"""The pure parts of the level-1 sandbox start (dexkit.sandbox.stack): storage choice, the
objects applied for Dex's storage, the readiness login, the probe token."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import msgspec
import pytest
import yaml

from dexkit.config import parse_config
from dexkit.oidc.tokens import probe_token
from dexkit.project import InitRequest, init_project, password_file
from dexkit.sandbox import stack
from dexkit.sandbox.dexlocal import kubernetes_storage, local_dex_config

PROJECT = Path("/srv/project")


@pytest.mark.parametrize(("storage", "choice", "expected"), [
    ("{type: kubernetes}", "rendered", "kubernetes"),
    ("{type: kubernetes}", "memory", "memory"),
    ("{type: memory}", "rendered", "memory"),
])
def test_storage_the_sandbox_runs(storage: str, choice: stack.StorageChoice,
                                  expected: str) -> None:
    config = parse_config(f"issuer: https://127.0.0.1:31555\ndex: {{storage: {storage}}}\n")
    assert stack.dex_storage_for(config, choice) == (expected, "")


def test_storage_the_sandbox_cannot_run_falls_back_to_memory_and_says_so() -> None:
    config = parse_config("issuer: https://127.0.0.1:31555\n"
                          "dex: {storage: {type: postgres, host: db.example.com}}\n")
    storage, note = stack.dex_storage_for(config, "rendered")
    assert storage == "memory"
    assert "runs no postgres server" in note


def test_kubernetes_storage_reads_a_kubeconfig_instead_of_the_pods_account() -> None:
    config = parse_config("issuer: https://127.0.0.1:31555\nconnectors: [{type: mockCallback}]\n")
    local = yaml.safe_load(local_dex_config(
        config, PROJECT, telemetry_port=1,
        storage=kubernetes_storage(Path("/srv/sandbox/files/dex.kubeconfig"))))
    assert local["storage"] == {"type": "kubernetes",
                                "config": {"kubeConfigFile": "/srv/sandbox/files/dex.kubeconfig"}}
    # Dex with crdHandling (v2.45.1, the default image) only checks the CRDs dexkit applies.
    local = yaml.safe_load(local_dex_config(
        config, PROJECT, telemetry_port=1,
        storage=kubernetes_storage(Path("/srv/sandbox/files/dex.kubeconfig"), config)))
    assert local["storage"]["config"] == {"kubeConfigFile": "/srv/sandbox/files/dex.kubeconfig",
                                          "crdHandling": "check"}


def test_the_objects_applied_for_dex_storage_are_the_rendered_rbac(tmp_path: Path) -> None:
    init_project(InitRequest(directory=tmp_path, issuer="https://127.0.0.1:31555",
                             connector="mock"))
    from dexkit.config import load_config

    config = load_config(tmp_path).config
    objects = stack.rbac_objects(config, tmp_path)
    assert [o["kind"] for o in objects] == ["CustomResourceDefinition"] * 10 + [
        "Namespace", "ServiceAccount", "Role", "RoleBinding"]
    # As `dexkit deploy` sends them: with the instance label, except on the shared CRDs.
    labels = {o["kind"]: o["metadata"].get("labels", {}) for o in objects}
    assert labels["ServiceAccount"]["app.kubernetes.io/instance"] == "dex"
    assert "app.kubernetes.io/instance" not in labels["CustomResourceDefinition"]
    # A Dex without crdHandling creates its CRDs itself, through the one ClusterRole.
    older = msgspec.structs.replace(config, dex=msgspec.structs.replace(
        config.dex, image="ghcr.io/dexidp/dex:v2.44.0"))
    objects = stack.rbac_objects(older, tmp_path)
    assert [o["kind"] for o in objects] == ["Namespace", "ServiceAccount", "Role", "ClusterRole",
                                            "RoleBinding", "ClusterRoleBinding"]
    assert "app.kubernetes.io/instance" not in objects[3]["metadata"]["labels"]


def test_the_readiness_login_is_the_first_static_user_with_a_stored_password(
        tmp_path: Path) -> None:
    init_project(InitRequest(directory=tmp_path, issuer="https://127.0.0.1:31555",
                             connector="static"))
    from dexkit.config import load_config

    config = load_config(tmp_path).config
    user, password = stack.sandbox_login(config, tmp_path) or ("", "")
    assert user == "admin@example.com"
    assert password == password_file(tmp_path, user).read_text().strip()
    password_file(tmp_path, user).unlink()
    assert stack.sandbox_login(config, tmp_path) is None


def test_the_probe_token_names_the_issuer_and_audience_and_is_short_lived() -> None:
    token = probe_token("https://127.0.0.1:31555", "kubernetes")
    header, payload, _ = (_b64(part) for part in token.split("."))
    claims = json.loads(payload)
    assert json.loads(header)["alg"] == "ES256"
    assert claims["iss"] == "https://127.0.0.1:31555" and claims["aud"] == "kubernetes"
    assert 0 < claims["exp"] - claims["iat"] <= 300
    # Signed by a throwaway key: two probes never share one.
    assert token.split(".")[2] != probe_token("https://x", "y").split(".")[2]


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
