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
    validate_service_monitor,
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
    # A Dex without crdHandling creates its CRDs itself, through a ClusterRole.
    "dex-2.44-creates-its-crds": {"dex": {"image": "ghcr.io/dexidp/dex:v2.44.0"}},
}


# Every knob the official Helm chart has that dexkit.yaml now types (tests/unit/render/
# test_knobs.py checks what each renders; here each must be valid Kubernetes).
CHART_KNOBS: dict[str, Any] = {
    "issuer": "https://login.example.com/dex",
    "dex": {
        "replicas": 2,
        "imagePullPolicy": "Always",
        "imagePullSecrets": [{"name": "regcred"}],
        "revisionHistoryLimit": 3,
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                      "limits": {"cpu": 1, "memory": "128Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "auth",
                         "effect": "NoSchedule"},
                        {"operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 30}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100, "podAffinityTerm": {
                    "topologyKey": "topology.kubernetes.io/zone",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "dex"}}}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "DoNotSchedule",
                                       "labelSelector": {"matchLabels": {
                                           "app.kubernetes.io/name": "dex"}}}],
        "priorityClassName": "system-cluster-critical",
        "hostAliases": [{"ip": "10.0.0.10", "hostnames": ["ldap.corp.example"]}],
        "commonLabels": {"team": "platform"},
        "podLabels": {"sidecar.istio.io/inject": "false"},
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "serviceAccount": {"annotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/dex"}},
        "env": {"TZ": "UTC"},
        "envVars": [{"name": "NODE_NAME",
                     "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "envFrom": [{"secretRef": {"name": "dex-extra"}},
                    {"configMapRef": {"name": "dex-settings", "optional": True},
                     "prefix": "DEX_"}],
        "volumes": [{"name": "theme", "configMap": {"name": "dex-theme"}},
                    {"name": "ca-bundle", "secret": {"secretName": "corp-ca"}}],
        "volumeMounts": [{"name": "theme", "mountPath": "/srv/dex/web/themes/corp",
                          "readOnly": True},
                         {"name": "ca-bundle", "mountPath": "/etc/ssl/corp", "readOnly": True}],
        "service": {"type": "ClusterIP", "annotations": {
            "service.beta.kubernetes.io/aws-load-balancer-internal": "true"},
            "telemetry": True},
        "ingress": {"enabled": True, "className": "nginx",
                    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                    "hosts": [{"host": "login.example.com"},
                              {"host": "dex.example.org",
                               "paths": [{"path": "/", "pathType": "ImplementationSpecific"}]}],
                    "tls": [{"hosts": ["login.example.com"], "secretName": "login-tls"},
                            {"hosts": ["dex.example.org"]}]},
        "serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "10s",
                           "labels": {"release": "prometheus"}},
        "networkPolicy": {"enabled": True,
                          "ingressFrom": [{"namespaceSelector": {"matchLabels": {
                              "kubernetes.io/metadata.name": "ingress-nginx"}}}],
                          "egressRules": [{"ports": [{"port": 53, "protocol": "UDP"}]},
                                          {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
                                           "ports": [{"port": 636, "protocol": "TCP"}]}]},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5,
                        "targetCPUUtilizationPercentage": 75,
                        "targetMemoryUtilizationPercentage": 80},
        "grpc": {"enabled": True},
        "extraConfig": {"expiry": {"refreshTokens": {"validIfNotUsedFor": "168h"}},
                        "frontend": {"theme": "dark"}},
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
    for name, data in {**VARIANTS, "chart-knobs": CHART_KNOBS}.items():
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
    assert kinds == {"CustomResourceDefinition", "Namespace", "ServiceAccount", "Role",
                     "RoleBinding", "ClusterRole", "ClusterRoleBinding", "Secret", "Deployment",
                     "Service",
                     "PodDisruptionBudget", "Ingress", "NetworkPolicy",
                     "HorizontalPodAutoscaler", "ServiceMonitor"}
    for _, obj in objects:
        if obj["kind"] == "ServiceMonitor":
            # A CRD: not in Kubernetes' OpenAPI; checked against its own schema instead.
            validate_service_monitor(obj)
        else:
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
