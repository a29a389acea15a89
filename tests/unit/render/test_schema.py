"""Every rendered Kubernetes object validates against the OpenAPI schema of its version.

The schemas are kubernetes-validate's, strict (unknown fields fail), for exactly the configured
minor: a minor it does not ship fails the test instead of validating against another version.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from dexkit.config import SUPPORTED_MINORS
from dexkit.render.apiserver import patch_static_pod
from dexkit.render.dex import render_manifests
from tests.unit.render.helpers import (
    FIXTURES,
    GOLDEN,
    GUIDE_HASH,
    case_config,
    connector_pems,
    documents,
    make_config,
    schema_version,
    validate_object,
)

# Configs that between them render every object and every option of every object.
VARIANTS: dict[str, dict[str, Any]] = {
    "sqlite-oidc-loadbalancer": {
        "issuer": "https://id.example.net:8443/dex",
        "dex": {"storage": {"type": "sqlite3"}, "service": {"type": "LoadBalancer"},
                "ingress": {"enabled": True}},
        "connectors": [{"type": "oidc", "rootCA": "/etc/ssl/certs/upstream.pem"},
                       {"type": "github", "orgs": [{"name": "kubernetes", "teams": ["a"]}]}],
    },
    "memory-ipv6-builtin-namespace": {
        "issuer": "https://[fd00::53]:32000", "namespace": "kube-system",
        "dex": {"storage": {"type": "memory"}, "ingress": {"enabled": True}},
        "connectors": [{"type": "mockCallback"}],
        "staticUsers": [{"email": "a@example.com", "username": "a", "userID": "1",
                         "hash": GUIDE_HASH}],
        "rbac": [{"user": "a@example.com", "clusterRole": "view"}],
    },
}


def _objects(minor: int) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for case in ("default", "static-authn", "ldap-postgres"):
        data = dict(_case_data(case), kubernetesVersion=f"1.{minor}")
        config = make_config(data)
        pems = connector_pems(config, GOLDEN / case)
        found += [(f"{case}:{m.path}", doc) for m in render_manifests(config, pems)
                  for doc in documents(m.text)]
    for name, data in VARIANTS.items():
        config = make_config(dict(data, kubernetesVersion=f"1.{minor}"))
        found += [(f"{name}:{m.path}", doc) for m in render_manifests(config)
                  for doc in documents(m.text)]
    return found


def _case_data(case: str) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load((GOLDEN / case / "dexkit.yaml").read_text()) or {}
    assert case_config(case)  # the golden input itself is valid
    return dict(data)


def test_every_supported_minor_has_a_schema() -> None:
    for minor in SUPPORTED_MINORS:
        assert schema_version(minor) == f"1.{minor}.0"


@pytest.mark.parametrize("minor", list(SUPPORTED_MINORS))
def test_every_object_validates(minor: int) -> None:
    objects = _objects(minor)
    kinds = {obj["kind"] for _, obj in objects}
    # Every kind dexkit renders is covered by the configs above.
    assert kinds == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                     "ClusterRoleBinding", "Secret", "Deployment", "Service",
                     "PodDisruptionBudget", "Ingress"}
    for _, obj in objects:
        validate_object(obj, minor)


@pytest.mark.parametrize(("fixture", "minor"), [("kube-apiserver-1.30.yaml", 30),
                                                ("kube-apiserver-1.34.yaml", 34),
                                                ("kube-apiserver-1.36-hand-oidc.yaml", 36)])
@pytest.mark.parametrize("mode", ["flags", "authentication-config"])
def test_patched_static_pods_validate(fixture: str, minor: int, mode: str) -> None:
    config = make_config({"kubernetesVersion": f"1.{minor}", "apiServer": {"mode": mode}})
    patched = patch_static_pod((FIXTURES / fixture).read_text(), config).text
    (pod,) = documents(patched)
    validate_object(pod, minor)


def test_an_invalid_object_is_caught() -> None:
    """The validator is strict: a misspelt field fails (so the tests above can fail)."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dex"},
           "spec": {"ports": [{"port": 5556, "nodeport": 32000}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, schema_version(34), strict=True)
