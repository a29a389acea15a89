"""Rendered objects against a real kube-apiserver: a server-side dry run accepts every one.

The unit tests validate against the OpenAPI schema offline; this asks the API server itself
(defaulting, validation and admission included), for the version the sandbox runs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit.render.apiserver import patch_static_pod
from dexkit.render.bundle import render_bundle
from dexkit.sandbox import controlplane
from tests.e2e.conftest import KUBERNETES_VERSION
from tests.unit.render.helpers import (
    FIXTURES,
    GOLDEN,
    SERVICE_MONITOR_CRD,
    golden_ca,
    make_config,
)
from tests.unit.render.test_schema import CHART_KNOBS

pytestmark = pytest.mark.e2e

MINOR = ".".join(KUBERNETES_VERSION.lstrip("v").split(".")[:2])


def _kubectl(kubectl: Path, plane: controlplane.ControlPlane, *args: str,
             stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kubectl), "--kubeconfig", str(plane.kubeconfig), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def _case(case: str, namespace: str) -> dict[str, Any]:
    data = yaml.safe_load((GOLDEN / case / "dexkit.yaml").read_text()) or {}
    return dict(data, namespace=namespace, kubernetesVersion=MINOR)


@pytest.mark.parametrize("case", ["default", "static-authn", "ldap-postgres"])
def test_server_side_dry_run_accepts_every_object(
        control_plane: controlplane.ControlPlane, kubectl: Path, case: str) -> None:
    namespace = f"dexkit-render-{case}"
    config = make_config(_case(case, namespace))
    pems = {"ldap": golden_ca()} if case == "ldap-postgres" else {}
    bundle = render_bundle(config, ca_pem=golden_ca(), project_dir="/srv/dexkit",
                           out_dir="/srv/dexkit/out", connector_ca_pems=pems)
    # A dry run persists nothing, so the namespace the objects go into must really exist.
    created = _kubectl(kubectl, control_plane, "create", "namespace", namespace)
    assert created.returncode == 0, created.stderr
    try:
        result = _kubectl(kubectl, control_plane, "apply", "--server-side", "--dry-run=server",
                          "--field-manager=dexkit", "-f", "-", stdin=bundle["dex.yaml"])
        assert result.returncode == 0, result.stderr
        kinds = [doc["kind"] for doc in yaml.safe_load_all(bundle["dex.yaml"]) if doc]
        applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
        assert len(applied) == len(kinds), result.stdout
    finally:
        _kubectl(kubectl, control_plane, "delete", "namespace", namespace, "--wait=false")


def install_service_monitor_crd(kubectl: Path, plane: controlplane.ControlPlane) -> None:
    """The test's own minimal ServiceMonitor CRD (tests/fixtures), established before use."""
    applied = _kubectl(kubectl, plane, "apply", "--server-side", "-f", str(SERVICE_MONITOR_CRD))
    assert applied.returncode == 0, applied.stderr
    ready = _kubectl(kubectl, plane, "wait", "--for=condition=Established", "--timeout=60s",
                     "crd/servicemonitors.monitoring.coreos.com")
    assert ready.returncode == 0, ready.stderr


def test_every_chart_knob_passes_a_server_side_dry_run(
        control_plane: controlplane.ControlPlane, kubectl: Path) -> None:
    """Every knob at once (NetworkPolicy, HPA, ServiceMonitor, Ingress hosts/TLS, scheduling,
    env, volumes...), with strict field validation: an unknown field fails, not dropped."""
    install_service_monitor_crd(kubectl, control_plane)
    namespace = "dexkit-render-knobs"
    config = make_config(dict(CHART_KNOBS, namespace=namespace, kubernetesVersion=MINOR))
    bundle = render_bundle(config, ca_pem=golden_ca(), project_dir="/srv/dexkit",
                           out_dir="/srv/dexkit/out")
    created = _kubectl(kubectl, control_plane, "create", "namespace", namespace)
    assert created.returncode == 0, created.stderr
    try:
        result = _kubectl(kubectl, control_plane, "apply", "--server-side", "--dry-run=server",
                          "--validate=strict", "--field-manager=dexkit", "-f", "-",
                          stdin=bundle["dex.yaml"])
        assert result.returncode == 0, result.stderr
        kinds = {doc["kind"] for doc in yaml.safe_load_all(bundle["dex.yaml"]) if doc}
        assert {"ServiceMonitor", "NetworkPolicy", "HorizontalPodAutoscaler"} <= kinds
        applied = [line for line in result.stdout.splitlines() if "(server dry run)" in line]
        assert len(applied) == len([d for d in yaml.safe_load_all(bundle["dex.yaml"]) if d])
    finally:
        _kubectl(kubectl, control_plane, "delete", "namespace", namespace, "--wait=false")


def test_a_misspelt_service_monitor_field_is_refused(
        control_plane: controlplane.ControlPlane, kubectl: Path) -> None:
    """The CRD is strict enough that the dry run above can fail."""
    install_service_monitor_crd(kubectl, control_plane)
    config = make_config({"kubernetesVersion": MINOR, "namespace": "default",
                          "dex": {"serviceMonitor": {"enabled": True}}})
    bundle = render_bundle(config, ca_pem=golden_ca(), project_dir="/srv/dexkit",
                           out_dir="/srv/dexkit/out")
    (monitor,) = [d for d in yaml.safe_load_all(bundle["dex.yaml"])
                  if d and d["kind"] == "ServiceMonitor"]
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    result = _kubectl(kubectl, control_plane, "create", "--dry-run=server", "--validate=strict",
                      "-f", "-", stdin=yaml.safe_dump(monitor))
    assert result.returncode != 0
    assert "intervall" in result.stderr


@pytest.mark.parametrize("mode", ["flags", "authentication-config"])
def test_patched_static_pod_is_accepted(control_plane: controlplane.ControlPlane, kubectl: Path,
                                        mode: str) -> None:
    config = make_config({"kubernetesVersion": MINOR, "apiServer": {"mode": mode}})
    patched = patch_static_pod((FIXTURES / "kube-apiserver-1.34.yaml").read_text(), config)
    result = _kubectl(kubectl, control_plane, "create", "--dry-run=server", "-f", "-",
                      stdin=patched.text)
    assert result.returncode == 0, result.stderr


def _access(kubectl: Path, plane: controlplane.ControlPlane, user: str,
            checks: list[tuple[str, str, str, str]]) -> list[bool]:
    """SubjectAccessReviews for ``user``: (verb, group, resource, namespace) -> allowed."""
    reviews = [{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": ["system:serviceaccounts"],
                         "resourceAttributes": {"verb": verb, "group": group,
                                                "resource": resource, "namespace": ns}}}
               for verb, group, resource, ns in checks]
    stream = "".join(f"---\n{yaml.safe_dump(r)}" for r in reviews)
    result = _kubectl(kubectl, plane, "create", "-f", "-", "-o", "json", stdin=stream)
    assert result.returncode == 0, result.stderr
    items, text, decoder = [], result.stdout.strip(), json.JSONDecoder()
    while text:  # one JSON object per review, one after the other
        item, end = decoder.raw_decode(text)
        items.append(item)
        text = text[end:].strip()
    assert len(items) == len(checks)
    return [bool(item["status"].get("allowed")) for item in items]


@pytest.mark.parametrize("image", ["ghcr.io/dexidp/dex:v2.45.1", "ghcr.io/dexidp/dex:v2.44.0",
                                   "dexkit.local/dex:v2.46.0-20260806171424-ab64ed77"])
def test_dex_service_account_may_do_what_its_storage_does_and_no_more(
        control_plane: controlplane.ControlPlane, kubectl: Path, image: str) -> None:
    """The rendered RBAC, applied for real, allows exactly the calls of the project's Dex's
    kubernetes storage (dexidp/dex storage/kubernetes: list, get, create, update, delete of its
    own resources in its namespace; create of its CRDs only for a Dex without crdHandling,
    whose CRDs dexkit does not apply) and denies their neighbours."""
    from dexkit.render.dex import CRD_GROUP, STORAGE_VERBS, crd_resources, dexkit_applies_crds

    # One namespace per image: the one before may still be terminating.
    namespace = f"dexkit-rbac-{hashlib.sha256(image.encode()).hexdigest()[:6]}"
    config = make_config({"namespace": namespace, "kubernetesVersion": MINOR,
                          "dex": {"image": image}})
    bundle = render_bundle(config, ca_pem=golden_ca(), project_dir="/srv/dexkit",
                           out_dir="/srv/dexkit/out")
    applied = _kubectl(kubectl, control_plane, "apply", "--server-side",
                       "--field-manager=dexkit", "-f", "-", stdin=bundle["dex.yaml"])
    assert applied.returncode == 0, applied.stderr
    user = f"system:serviceaccount:{namespace}:dex"
    crd_create = ("create", "apiextensions.k8s.io", "customresourcedefinitions", "")
    try:
        needed = [(verb, CRD_GROUP, resource, namespace)
                  for resource in crd_resources(config) for verb in STORAGE_VERBS]
        if not dexkit_applies_crds(config):
            needed.append(crd_create)
        assert all(_access(kubectl, control_plane, user, needed))
        denied = [
            ("watch", CRD_GROUP, "authcodes", namespace),
            ("patch", CRD_GROUP, "refreshtokens", namespace),
            ("list", CRD_GROUP, "passwords", "default"),
            ("create", CRD_GROUP, "passwords", "kube-system"),
            ("get", "", "secrets", namespace),
            ("list", "", "pods", namespace),
            ("delete", "apiextensions.k8s.io", "customresourcedefinitions", ""),
            ("update", "apiextensions.k8s.io", "customresourcedefinitions", ""),
            ("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""),
        ]
        if dexkit_applies_crds(config):
            denied.append(crd_create)
        assert _access(kubectl, control_plane, user, denied) == [False] * len(denied)
    finally:
        _kubectl(kubectl, control_plane, "delete", "-f", "-", "--wait=false",
                 stdin=bundle["dex.yaml"])
