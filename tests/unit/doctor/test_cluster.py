"""Cluster checks over live objects given as facts (what the API server would return)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit import kube, pki
from dexkit.config import load_config
from dexkit.doctor.cluster import HIDDEN, config_drift, hide_pair
from dexkit.doctor.core import Context
from dexkit.kube import ServerClock
from dexkit.render.dex import render_dex_config, render_service
from tests.unit.doctor.helpers import ca_and_leaf, context, run

Project = Callable[..., Path]
NS = "dex"


class FakeCluster:
    server = "https://127.0.0.1:6443"
    context = "test"
    api = None


TLS_SECRET = "Secret/dex.example.com.tls"


def _ctx(project: Path, live: dict[str, dict[str, Any] | None] | None = None, *,
         version: str = "v1.34.4") -> Context:
    """A context whose cluster returns ``live`` objects, keyed ``Kind/name`` (in dex)."""
    facts: dict[str, object] = {"cluster": FakeCluster(),
                                "cluster.clock": (ServerClock(version, None), None)}
    for key, value in (live or {}).items():
        kind, name = key.split("/")
        facts[f"live:{kind}:{NS}/{name}"] = value
    return context(project, facts=facts)


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _deployment(available: int = 1, status: bool = True, message: str = "") -> dict[str, Any]:
    return {"spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "dex", "image": "ghcr.io/dexidp/dex:v2.45.1"}]}}},
        "status": {"availableReplicas": available, "conditions": [
            {"type": "Available", "status": "True" if status else "False",
             "message": message}]}}


def test_reachable_names_server_and_version(new_project: Project) -> None:
    result = run(_ctx(new_project()), "cluster.reachable")
    assert result.message == "https://127.0.0.1:6443 (context test) answers: Kubernetes v1.34.4"


def test_version_in_the_proven_range_and_as_configured(new_project: Project) -> None:
    result = run(_ctx(new_project(), version="v1.37.2"), "cluster.version")
    assert (result.status, result.message) == ("ok", "Kubernetes v1.37.2, a minor dexkit proves")
    same = run(_ctx(new_project(), version="v1.36.3"), "cluster.version")
    # Flags mode renders the same flags for 1.36 and 1.37: said, not warned about.
    assert same.status == "ok" and "the rendered files are the same" in same.message


def test_a_version_that_changes_what_is_rendered_is_named(new_project: Project) -> None:
    # kind's kubeadm patches name no apiVersion, so a node image of another minor is no
    # difference in what is rendered (tests/e2e/test_kind.py proves it on real clusters).
    flags = run(_ctx(new_project(), version="v1.36.3"), "cluster.version")
    assert "kubeadm" not in flags.message
    authn = new_project(apiServer={"mode": "authentication-config"}, kubernetesVersion="1.33")
    result = run(_ctx(authn, version="v1.36.0"), "cluster.version")
    assert result.status == "warn"
    assert "the AuthenticationConfiguration would be apiserver.config.k8s.io/v1, not " \
           "apiserver.config.k8s.io/v1beta1" in result.message
    assert 'kubernetesVersion: "1.36"' in result.hint


def test_a_version_outside_the_proven_range_is_warned_about(new_project: Project) -> None:
    old = run(_ctx(new_project(kubernetesVersion="1.34"), version="v1.34.4"), "cluster.version")
    assert old.status == "warn"
    assert "outside the minors dexkit proves (1.35-1.37): Kubernetes 1.34 reached end of " \
           "life on 2026-10-27" in old.message
    new = run(_ctx(new_project(), version="v1.38.0"), "cluster.version")
    assert new.status == "warn" and "newer than dexkit knows" in new.message
    odd = run(_ctx(new_project(), version="v0.0.0-master"), "cluster.version")
    assert odd.status == "skip"


def _crd(name: str, established: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"conditions": [
        {"type": "NamesAccepted", "status": "True"},
        {"type": "Established", "status": "True" if established else "False"}]}}


def test_dex_crds_are_checked_when_dexkit_applies_them(new_project: Project) -> None:
    from dexkit.render.dex import STORAGE_KINDS_2_45

    project = new_project()
    names = [f"{plural}.dex.coreos.com" for plural, _, _ in STORAGE_KINDS_2_45]
    live: dict[str, dict[str, Any] | None] = {f"CustomResourceDefinition/{n}": _crd(n)
                                              for n in names}
    result = run(_ctx(project, live), "cluster.dex-crds")
    assert result.status == "ok" and result.message.startswith("10 CRDs of dex.coreos.com")
    live[f"CustomResourceDefinition/{names[0]}"] = None
    live[f"CustomResourceDefinition/{names[1]}"] = _crd(names[1], established=False)
    result = run(_ctx(project, live), "cluster.dex-crds")
    assert result.status == "fail"
    assert f"missing: {names[0]}; not established: {names[1]}" in result.message
    assert "storage is not initialized" in result.message and "dexkit deploy" in result.hint
    older = run(_ctx(new_project(dex={"image": "ghcr.io/dexidp/dex:v2.44.0"})),
                "cluster.dex-crds")
    assert older.status == "skip" and "creates its CRDs itself" in older.message


def test_deployment_states(new_project: Project) -> None:
    project = new_project()
    healthy = _ctx(project, {"Deployment/dex": _deployment()})
    assert run(healthy, "cluster.deployment").status == "ok"
    missing = run(_ctx(project, {"Deployment/dex": None}), "cluster.deployment")
    assert missing.status == "fail" and missing.message == "Deployment dex/dex does not exist"
    assert "dexkit deploy" in missing.hint
    down = run(_ctx(project, {"Deployment/dex": _deployment(
        0, False, "Deployment does not have minimum availability.")}), "cluster.deployment")
    assert down.status == "fail"
    assert "not available: 0 of 1 replicas available; Deployment does not have minimum " \
           "availability." in down.message
    assert "kubectl -n dex describe deployment dex" in down.hint


def test_an_available_deployment_with_a_stuck_rollout_fails(new_project: Project) -> None:
    deployment = _deployment()
    deployment["status"].update({"updatedReplicas": 1, "unavailableReplicas": 1})
    result = run(_ctx(new_project(), {"Deployment/dex": deployment}), "cluster.deployment")
    assert result.status == "fail"
    assert "rollout is stuck: 1 of 1 replicas updated, 1 unavailable" in result.message


def test_a_probe_on_an_undeclared_port_is_named() -> None:
    from dexkit.doctor.cluster import _probe_mismatch

    pod = {"spec": {"containers": [{"name": "dex", "ports": [
        {"name": "https", "containerPort": 5556}, {"name": "telemetry", "containerPort": 5558}],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 5559}}}]}}
    assert _probe_mismatch(pod) == ["its readiness probe asks port 5559, which dex does not "
                                    "serve (ports: 5556, 5558, https, telemetry)"]
    pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = "telemetry"
    assert _probe_mismatch(pod) == []


def test_deployment_with_another_image_warns(new_project: Project) -> None:
    deployment = _deployment()
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "dex:old"
    result = run(_ctx(new_project(), {"Deployment/dex": deployment}), "cluster.deployment")
    assert result.status == "warn" and "runs dex:old" in result.message


def _service(project: Path) -> dict[str, Any]:
    return {"spec": yaml.safe_load(render_service(load_config(project).config))["spec"]}


def test_service_as_rendered_exposes_the_issuer_port(new_project: Project) -> None:
    project = new_project()
    result = run(_ctx(project, {"Service/dex": _service(project)}), "cluster.service")
    assert result.status == "ok"
    assert result.message == ("Service dex/dex: NodePort 32000 (the issuer's port) -> 5556 -> "
                              "Dex's https port")


def test_service_with_another_node_port_fails(new_project: Project) -> None:
    project = new_project()
    service = _service(project)
    service["spec"]["ports"][0]["nodePort"] = 31999
    result = run(_ctx(project, {"Service/dex": service}), "cluster.service")
    assert result.status == "fail"
    assert result.message == "Service dex/dex: nodePort is 31999, dexkit renders 32000"


def _tls_secret(cert: bytes, key: bytes) -> dict[str, Any]:
    return {"data": {"tls.crt": _b64(cert), "tls.key": _b64(key)}}


def test_tls_secret_with_our_certificate(new_project: Project) -> None:
    project = new_project()
    secret = _tls_secret((project / "ssl/cert.pem").read_bytes(),
                         (project / "ssl/key.pem").read_bytes())
    result = run(_ctx(project, {TLS_SECRET: secret}), "cluster.tls-secret")
    assert result.status == "ok" and "holds ssl/cert.pem" in result.message


def test_tls_secret_with_another_certificate_fails(new_project: Project) -> None:
    project = new_project()
    _, _, leaf, key = ca_and_leaf(["dex.example.com"], common_name="Old CA")
    secret = _tls_secret(pki.cert_pem(leaf), pki.key_pem(key))
    result = run(_ctx(project, {TLS_SECRET: secret}), "cluster.tls-secret")
    assert result.status == "fail"
    assert result.message.startswith("Secret dex/dex.example.com.tls holds another certificate "
                                     "(CN=dex.example.com, SHA-256 ")
    assert "than ssl/cert.pem" in result.message and "dexkit deploy" in result.hint
    assert "PRIVATE" not in result.message


def test_tls_secret_missing_fails(new_project: Project) -> None:
    result = run(_ctx(new_project(), {TLS_SECRET: None}),
                 "cluster.tls-secret")
    assert result.status == "fail" and "does not exist" in result.message


def _config_secret(text: str) -> dict[str, Any]:
    return {"data": {"config.yaml": _b64(text)}}


def test_dex_config_as_rendered(new_project: Project) -> None:
    project = new_project()
    rendered = render_dex_config(load_config(project).config)
    ctx = _ctx(project, {"Secret/dex-config": _config_secret(rendered)})
    assert run(ctx, "cluster.dex-config").message == \
        "Secret dex/dex-config holds exactly what dexkit renders now"


def test_dex_config_drift_is_a_diff_without_secret_values(new_project: Project) -> None:
    project = new_project()
    rendered = render_dex_config(load_config(project).config)
    data = yaml.safe_load(rendered)
    old_hash = data["staticPasswords"][0]["hash"]
    data["logger"]["level"] = "debug"
    data["staticPasswords"][0]["hash"] = "$2y$10$" + "x" * 53
    data["staticClients"][0]["secret"] = "ZXhhbXBsZS1hcHAtc2VjcmV0"
    edited = yaml.safe_dump(data, sort_keys=False)
    result = run(_ctx(project, {"Secret/dex-config": _config_secret(edited)}),
                 "cluster.dex-config")
    assert result.status == "fail"
    assert "-  level: info" in result.message and "+  level: debug" in result.message
    assert "-  hash: <hidden, as rendered>" in result.message
    assert "+  hash: <hidden, changed in the cluster>" in result.message
    assert "+  secret: <hidden>" in result.message
    for value in (old_hash, "x" * 53, "ZXhhbXBsZS1hcHAtc2VjcmV0"):
        assert value not in result.message
    assert "dexkit deploy" in result.hint


def test_dex_config_with_only_comments_changed_passes(new_project: Project) -> None:
    project = new_project()
    rendered = render_dex_config(load_config(project).config)
    result = run(_ctx(project, {"Secret/dex-config": _config_secret("# edited\n" + rendered)}),
                 "cluster.dex-config")
    assert result.status == "ok" and "comments or layout differ" in result.message


def test_hide_pair_keeps_env_references_and_hides_values() -> None:
    left, right = hide_pair({"clientSecret": "$GITHUB_CLIENT_SECRET", "bindPW": "a"},
                            {"clientSecret": "$GITHUB_CLIENT_SECRET", "bindPW": "a",
                             "password": "b"})
    assert left == {"clientSecret": "$GITHUB_CLIENT_SECRET", "bindPW": HIDDEN}
    assert right == {"clientSecret": "$GITHUB_CLIENT_SECRET", "bindPW": HIDDEN,
                     "password": HIDDEN}
    assert config_drift("a: 1\n", "a: 1\n", "x") == []


@pytest.fixture
def sar(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    denied: list[tuple[str, str, str]] = []

    def fake(cluster: object, user: str, groups: list[str], verb: str, resource: str,
             group: str = "", namespace: str | None = None) -> kube.Permission:
        assert user == "system:serviceaccount:dex:dex"
        allowed = (verb, group, resource) not in denied
        return kube.Permission(verb, f"{resource}.{group}", namespace, allowed)
    monkeypatch.setattr(kube, "subject_can", fake)
    return denied


def test_dex_rbac_allowed(new_project: Project, sar: list[tuple[str, str, str]]) -> None:
    result = run(_ctx(new_project(), {"ServiceAccount/dex": {}}), "cluster.dex-rbac")
    # Dex v2.45.1: 10 kinds x 5 verbs; dexkit applies the CRDs, so no "create CRDs".
    assert result.status == "ok" and "50 SubjectAccessReviews" in result.message
    assert "create Dex's CRDs" not in result.message
    project = new_project(dex={"image": "dexkit.local/dex:v2.46.0-20260806171424-ab64ed77"})
    result = run(_ctx(project, {"ServiceAccount/dex": {}}), "cluster.dex-rbac")
    assert result.status == "ok" and "60 SubjectAccessReviews" in result.message


def test_dex_rbac_denied_names_what(new_project: Project, sar: list[tuple[str, str, str]]) -> None:
    sar.append(("create", "apiextensions.k8s.io", "customresourcedefinitions"))
    project = new_project(dex={"image": "ghcr.io/dexidp/dex:v2.44.0"})
    result = run(_ctx(project, {"ServiceAccount/dex": {}}), "cluster.dex-rbac")
    assert result.status == "fail"
    assert result.message.startswith("ServiceAccount dex/dex may not: create "
                                     "customresourcedefinitions.apiextensions.k8s.io.")
    assert "ClusterRole" in result.hint
    sar[:] = [("list", "dex.coreos.com", "authsessions")]
    project = new_project(dex={"image": "dexkit.local/dex:v2.46.0-20260806171424-ab64ed77"})
    result = run(_ctx(project, {"ServiceAccount/dex": {}}), "cluster.dex-rbac")
    assert result.status == "fail"
    assert result.message.startswith("ServiceAccount dex/dex may not: list "
                                     "authsessions.dex.coreos.com in dex.")


def test_dex_rbac_skipped_for_other_storage(new_project: Project) -> None:
    result = run(_ctx(new_project(dex={"storage": {"type": "memory"}})), "cluster.dex-rbac")
    assert result.status == "skip" and "storage is memory" in result.message


def test_a_deployment_scaled_to_zero_is_named(new_project: Project) -> None:
    # Scaled to 0, a Deployment's status looks healthy: Available is True ("minimum
    # availability" of nothing), and nothing serves the issuer.
    deployment = _deployment(0, True, "Deployment has minimum availability.")
    deployment["spec"]["replicas"] = 0
    result = run(_ctx(new_project(), {"Deployment/dex": deployment}), "cluster.deployment")
    assert (result.status, result.message) == (
        "fail", "Deployment dex/dex is scaled to 0 replicas: no Pod serves the issuer")
    assert result.hint == ("scale it up ('kubectl -n dex scale deployment dex --replicas=1'), "
                           "or run 'dexkit deploy'")
