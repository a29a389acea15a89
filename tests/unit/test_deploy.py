"""The parts of deploy, destroy and rollout that need no cluster: order, Secrets, credential
checks, checksums, change classification, rollout status and diagnosis text."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit import credentials, deploy, kube, rollout
from dexkit.config import Config
from dexkit.console import Output
from dexkit.errors import ClusterError, ConfigError, TLSError, UsageError
from dexkit.render.dex import credential_envs, render_manifests
from tests.unit.render.helpers import GOLDEN, case_config, connector_pems, make_config

TLS = credentials.TLSMaterial(cert=b"CERT", key=b"KEY", ca=b"CA")
GITHUB_ENV = {"GITHUB_CLIENT_ID": "id-1", "GITHUB_CLIENT_SECRET": "s3cret-value"}


def project_of(config: Config, tls: credentials.TLSMaterial = TLS,
               pems: dict[str, str] | None = None) -> deploy.Project:
    objects = [yaml.safe_load(m.text) for m in render_manifests(config, pems)]
    return deploy.Project(config, objects, tls)


def objects_for(config: Config, env: dict[str, str] | None = None,
                tls: credentials.TLSMaterial = TLS,
                existing: dict[str, dict[str, bytes]] | None = None,
                pems: dict[str, str] | None = None) -> list[dict[str, Any]]:
    resolved = credentials.resolve_credentials(credentials.credential_secrets(config),
                                               GITHUB_ENV if env is None else env,
                                               existing or {})
    return deploy.build_objects(project_of(config, tls, pems), resolved)


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def deployment_envs(config: Config, pems: dict[str, str] | None = None) -> set[tuple[str, str,
                                                                                        str]]:
    """(variable, secret, key) of every secretKeyRef in the rendered Deployment."""
    rendered = [yaml.safe_load(m.text) for m in render_manifests(config, pems)]
    dep = next(o for o in rendered if o["kind"] == "Deployment")
    env = dep["spec"]["template"]["spec"]["containers"][0].get("env", [])
    return {(e["name"], e["valueFrom"]["secretKeyRef"]["name"],
             e["valueFrom"]["secretKeyRef"]["key"])
            for e in env if "secretKeyRef" in e.get("valueFrom", {})}


# --- order ------------------------------------------------------------------------------------


def test_objects_come_in_dependency_order() -> None:
    config = make_config({"rbac": [{"group": "admins", "clusterRole": "view"}]})
    kinds = [o["kind"] for o in objects_for(config)]
    assert kinds == ["CustomResourceDefinition"] * 10 + [
        "Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRoleBinding", "Secret",
        "Secret", "Secret", "Deployment", "Service"]
    older = make_config({"dex": {"image": "ghcr.io/dexidp/dex:v2.44.0"}})
    assert [o["kind"] for o in objects_for(older)][:6] == [
        "Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding",
        "ClusterRoleBinding"]
    steps = [deploy.step_of(o) for o in objects_for(config)]
    assert steps == sorted(steps)


def test_our_secrets_go_before_the_rendered_config_secret() -> None:
    secrets = [o["metadata"]["name"] for o in objects_for(make_config()) if o["kind"] == "Secret"]
    assert secrets == ["dex.example.com.tls", "github-client", "dex-config"]


def test_order_is_stable_within_a_step() -> None:
    objs = [{"kind": "Service", "n": 1}, {"kind": "Secret", "n": 2},
            {"kind": "Ingress", "n": 3}, {"kind": "Namespace", "n": 4}]
    assert [o["n"] for o in deploy.order(objs)] == [4, 2, 1, 3]


def test_an_unknown_kind_goes_last() -> None:
    assert deploy.step_of({"kind": "Widget"}) > deploy.step_of({"kind": "Ingress"})


# --- what deploy adds to the rendered objects ---------------------------------------------------


def test_every_object_is_labelled_managed_by_dexkit_and_by_instance() -> None:
    config = make_config({"namespace": "idp"})
    for obj in objects_for(config):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "dexkit"
        if obj["kind"] in ("ClusterRole", "CustomResourceDefinition"):
            # Shared by every installation: no instance label to flip between namespaces.
            assert deploy.INSTANCE_LABEL not in labels
        else:
            assert labels[deploy.INSTANCE_LABEL] == "idp"


def test_the_pod_template_carries_checksums_and_keeps_its_labels() -> None:
    config = make_config()
    dep = by_name(objects_for(config), "Deployment", "dex")
    rendered = next(o for o in project_of(config).objects if o["kind"] == "Deployment")
    template = dep["spec"]["template"]["metadata"]
    assert template["annotations"][deploy.TLS_CHECKSUM] == credentials.tls_checksum(TLS)
    assert deploy.CREDENTIALS_CHECKSUM in template["annotations"]
    assert template["annotations"]["checksum/config"] == \
        rendered["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    # The selector's labels, untouched: adding one would orphan the running ReplicaSet.
    assert template["labels"] == rendered["spec"]["template"]["metadata"]["labels"]


def test_a_rotated_certificate_changes_the_pod_template() -> None:
    config = make_config()
    before = by_name(objects_for(config), "Deployment", "dex")["spec"]["template"]
    rotated = credentials.TLSMaterial(cert=b"CERT2", key=b"KEY2", ca=b"CA")
    after = by_name(objects_for(config, tls=rotated), "Deployment", "dex")["spec"]["template"]
    assert before != after
    assert by_name(objects_for(config), "Deployment", "dex")["spec"]["template"] == before


def test_a_changed_credential_changes_the_pod_template() -> None:
    config = make_config()
    one = by_name(objects_for(config), "Deployment", "dex")["spec"]["template"]
    other = by_name(objects_for(config, {**GITHUB_ENV, "GITHUB_CLIENT_SECRET": "rotated"}),
                    "Deployment", "dex")["spec"]["template"]
    assert one["metadata"]["annotations"] != other["metadata"]["annotations"]


def test_the_credentials_checksum_does_not_reveal_the_value() -> None:
    config = make_config()
    digest = by_name(objects_for(config), "Deployment", "dex")["spec"]["template"]["metadata"][
        "annotations"][deploy.CREDENTIALS_CHECKSUM]
    import hashlib

    plain = json.dumps({"github-client": {"client-id": base64.b64encode(b"id-1").decode(),
                                          "client-secret": base64.b64encode(
                                              b"s3cret-value").decode()}}, sort_keys=True)
    assert digest != hashlib.sha256(plain.encode()).hexdigest()


def test_the_tls_secret_holds_the_three_files() -> None:
    secret = by_name(objects_for(make_config()), "Secret", "dex.example.com.tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == {
        "tls.crt": b"CERT", "tls.key": b"KEY", "ca.crt": b"CA"}
    assert secret["metadata"]["labels"][credentials.COMPONENT_LABEL] == "credentials"


def test_string_data_is_folded_into_data() -> None:
    config = make_config()
    rendered = next(o for o in project_of(config).objects if o["kind"] == "Secret")
    secret = by_name(objects_for(config), "Secret", rendered["metadata"]["name"])
    assert "stringData" not in secret
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == \
        rendered["stringData"]
    assert credentials.COMPONENT_LABEL not in secret["metadata"]["labels"]


def test_building_objects_does_not_change_the_project() -> None:
    project = project_of(make_config())
    snapshot = json.dumps(project.objects, sort_keys=True)
    objects_for(make_config())
    deploy.build_objects(project, credentials.resolve_credentials(
        credentials.credential_secrets(project.config), GITHUB_ENV, {}))
    assert json.dumps(project.objects, sort_keys=True) == snapshot


# --- which credential Secrets (derived from render, never a copy of its naming rules) --------


@pytest.mark.parametrize("case", ["default", "static-authn", "ldap-postgres"])
def test_credential_secrets_are_exactly_what_the_deployment_reads(case: str) -> None:
    config = case_config(case)
    pems = connector_pems(config, GOLDEN / case)
    derived = {(env, s.name, key) for s in credentials.credential_secrets(config)
               for key, envs in s.keys.items() for env in envs}
    assert derived == deployment_envs(config, pems)


def test_ldap_oidc_and_confidential_clients_each_get_their_secret() -> None:
    config = make_config({
        "connectors": [{"type": "ldap", "id": "corp-ldap"}, {"type": "oidc", "id": "upstream"}],
        "clients": [{"id": "kubernetes"},
                    {"id": "dash", "public": False, "secretName": "dash-client"}],
    })
    secrets = {s.name: s.keys for s in credentials.credential_secrets(config)}
    assert secrets == {
        "ldap-bind": {"password": ("CORP_LDAP_BIND_PASSWORD",)},
        "oidc-client": {"client-id": ("UPSTREAM_CLIENT_ID",),
                        "client-secret": ("UPSTREAM_CLIENT_SECRET",)},
        "dash-client": {"client-secret": ("DEX_CLIENT_DASH_SECRET",)},
    }
    assert {e.env for e in credential_envs(config).all()} == {
        v for keys in secrets.values() for vs in keys.values() for v in vs}


def test_a_mock_connector_needs_no_credentials() -> None:
    config = make_config({"connectors": [{"type": "mockCallback"}]})
    assert credentials.credential_secrets(config) == []
    dep = by_name(objects_for(config, env={}), "Deployment", "dex")
    assert deploy.CREDENTIALS_CHECKSUM not in dep["spec"]["template"]["metadata"]["annotations"]


def test_a_credentials_secret_may_not_take_the_tls_secret_name() -> None:
    config = make_config({"connectors": [{"type": "github",
                                          "credentialsSecret": "dex.example.com.tls"}]})
    with pytest.raises(ConfigError, match="name of the TLS Secret"):
        credentials.credential_secrets(config)


# --- credential checks, with no cluster ------------------------------------------------------


def test_missing_credentials_name_every_variable_and_no_value() -> None:
    config = make_config({"connectors": [{"type": "github"}, {"type": "ldap"}]})
    env = {"GITHUB_CLIENT_ID": "visible-id"}
    with pytest.raises(ConfigError) as raised:
        credentials.resolve_credentials(credentials.credential_secrets(config), env, {})
    message = raised.value.message
    assert "GITHUB_CLIENT_SECRET" in message and "LDAP_BIND_PASSWORD" in message
    assert "GITHUB_CLIENT_ID," not in message  # it is set
    assert "visible-id" not in message + raised.value.hint
    assert "nothing was changed" in message
    assert "--env-file" in raised.value.hint


def test_an_empty_variable_counts_as_missing() -> None:
    secrets = credentials.credential_secrets(make_config())
    with pytest.raises(ConfigError, match="GITHUB_CLIENT_ID"):
        credentials.resolve_credentials(secrets, {**GITHUB_ENV, "GITHUB_CLIENT_ID": ""}, {})


def test_values_the_cluster_has_are_kept() -> None:
    secrets = credentials.credential_secrets(make_config())
    existing = {"github-client": {"client-id": b"old-id", "client-secret": b"old-secret"}}
    [kept] = credentials.resolve_credentials(secrets, {}, existing)
    assert kept.untouched and kept.kept == ("client-id", "client-secret")
    assert kept.data == existing["github-client"]
    # ... and one variable that is set replaces just its key; the other is carried along.
    [mixed] = credentials.resolve_credentials(secrets, {"GITHUB_CLIENT_SECRET": "new"}, existing)
    assert not mixed.untouched
    assert mixed.data == {"client-id": b"old-id", "client-secret": b"new"}


def test_an_untouched_secret_is_not_applied() -> None:
    existing = {"github-client": {"client-id": b"a", "client-secret": b"b"}}
    names = [o["metadata"]["name"] for o in objects_for(make_config(), env={},
                                                         existing=existing)
             if o["kind"] == "Secret"]
    assert "github-client" not in names


def test_two_variables_for_one_key_must_agree() -> None:
    config = make_config({"connectors": [
        {"type": "github", "id": "gh1", "credentialsSecret": "shared"},
        {"type": "github", "id": "gh2", "credentialsSecret": "shared"}]})
    secrets = credentials.credential_secrets(config)
    assert secrets[0].keys["client-id"] == ("GH1_CLIENT_ID", "GH2_CLIENT_ID")
    env = {"GH1_CLIENT_ID": "a", "GH2_CLIENT_ID": "b", "GH1_CLIENT_SECRET": "s"}
    with pytest.raises(ConfigError, match="differ"):
        credentials.resolve_credentials(secrets, env, {})
    [ok] = credentials.resolve_credentials(secrets, {"GH2_CLIENT_ID": "b",
                                                     "GH1_CLIENT_SECRET": "s"}, {})
    assert ok.data == {"client-id": b"b", "client-secret": b"s"}


def test_env_files_and_the_environment() -> None:
    text = ("# GitHub OAuth app\nexport GITHUB_CLIENT_ID=abc\n"
            "GITHUB_CLIENT_SECRET='with # hash'\nLDAP_BIND_PASSWORD=pw # comment\nEMPTY=\n")
    parsed = credentials.parse_env_file(text, ".env")
    assert parsed == {"GITHUB_CLIENT_ID": "abc", "GITHUB_CLIENT_SECRET": "with # hash",
                      "LDAP_BIND_PASSWORD": "pw", "EMPTY": ""}
    merged = credentials.merged_environment({"GITHUB_CLIENT_ID": "from-env", "EMPTY": ""},
                                            parsed)
    assert merged["GITHUB_CLIENT_ID"] == "from-env"  # the environment wins
    assert merged["LDAP_BIND_PASSWORD"] == "pw"
    assert "EMPTY" not in merged


def test_a_bad_env_file_line_is_named_but_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "creds.env"
    path.write_text("GOOD=1\nthis-is-a-secret-value\n")
    with pytest.raises(UsageError) as raised:
        credentials.read_env_file(path)
    assert f"{path}:2" in raised.value.message
    assert "secret-value" not in raised.value.message
    with pytest.raises(UsageError, match="does not exist"):
        credentials.read_env_file(tmp_path / "nope.env")


# --- the project on disk ----------------------------------------------------------------------


def test_a_project_with_a_mismatched_key_is_refused(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one, two = tmp_path / "one", tmp_path / "two"
    assert dexkit("init", "--dir", one).code == 0
    assert dexkit("init", "--dir", two).code == 0
    project = deploy.load_project(one)
    assert project.tls.cert == (one / "ssl" / "cert.pem").read_bytes()
    (one / "ssl" / "key.pem").write_bytes((two / "ssl" / "key.pem").read_bytes())
    with pytest.raises(TLSError, match="does not match"):
        deploy.load_project(one)
    (one / "ssl" / "cert.pem").unlink()
    with pytest.raises(TLSError, match=r"cert\.pem does not exist"):
        deploy.load_project(one)


def test_an_expiring_certificate_is_a_warning(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", tmp_path).code == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=350)
    project = deploy.load_project(tmp_path, now=later)
    assert any("expires in" in w for w in project.warnings)


# --- results ----------------------------------------------------------------------------------


REF = kube.ObjectRef("Deployment", "dex", "dex")


def test_changed_fields_name_paths_not_values() -> None:
    before = {"metadata": {"resourceVersion": "1", "managedFields": [1], "labels": {"a": "1"}},
              "data": {"tls.crt": "OLD", "ca.crt": "X"}, "status": {"x": 1},
              "spec": {"ports": [{"port": 1}, {"port": 2}]}}
    after = {"metadata": {"resourceVersion": "2", "managedFields": [2], "labels": {"a": "1"}},
             "data": {"tls.crt": "NEW", "ca.crt": "X"}, "status": {"x": 2},
             "spec": {"ports": [{"port": 1}, {"port": 3}]}}
    assert deploy.changed_fields(before, after) == ["data.tls.crt", "spec.ports[1].port"]


def test_classify_by_resource_version_and_by_content_in_a_dry_run() -> None:
    live = {"metadata": {"resourceVersion": "5"}, "spec": {"replicas": 1}}
    same = {"metadata": {"resourceVersion": "5"}, "spec": {"replicas": 1}}
    moved = {"metadata": {"resourceVersion": "6"}, "spec": {"replicas": 2}}
    assert deploy.classify(REF, None, same, dry_run=False).action == "created"
    assert deploy.classify(REF, live, same, dry_run=False).action == "unchanged"
    updated = deploy.classify(REF, live, moved, dry_run=False)
    assert (updated.action, updated.fields) == ("updated", ("spec.replicas",))
    # A dry run never moves the resourceVersion: the content decides.
    dry = {"metadata": {"resourceVersion": "5"}, "spec": {"replicas": 2}}
    assert deploy.classify(REF, live, dry, dry_run=True).action == "updated"
    assert deploy.classify(REF, live, same, dry_run=True).action == "unchanged"
    owner = {"metadata": {"resourceVersion": "6"}, "spec": {"replicas": 1}}
    assert deploy.classify(REF, live, owner, dry_run=False).note == "field ownership only"


def test_kept_secrets_are_listed_after_the_last_secret() -> None:
    secret = deploy.Change(kube.ObjectRef("Secret", "tls", "dex"), "created")
    dep = deploy.Change(REF, "created")
    kept = deploy.Change(kube.ObjectRef("Secret", "github-client", "dex"), "kept")
    assert deploy.with_kept([secret, dep], [kept]) == [secret, kept, dep]
    assert deploy.with_kept([dep], [kept]) == [dep, kept]


def test_counts_in_a_fixed_order() -> None:
    result = deploy.DeployResult([deploy.Change(REF, "unchanged"), deploy.Change(REF, "kept"),
                                  deploy.Change(REF, "created")], REF, dry_run=False)
    assert list(result.counts().items()) == [("created", 1), ("unchanged", 1), ("kept", 1)]


# --- the kube boundary's pure parts ---------------------------------------------------------


class _FakeApiError:
    """Only what the parsers read of the client's ApiException: status and body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body, self.reason = status, json.dumps(body), "x"


def test_object_refs_paths_and_refusal_wording() -> None:
    ref = kube.ObjectRef.of({"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": "dex", "namespace": "idp"}})
    assert ref.path == "/apis/apps/v1/namespaces/idp/deployments/dex"
    assert ref.action("patch") == 'patch deployments.apps "dex" in namespace "idp"'
    role = kube.ObjectRef.of({"apiVersion": "rbac.authorization.k8s.io/v1",
                              "kind": "ClusterRole", "metadata": {"name": "dexkit:dex-crds"}})
    assert role.path == "/apis/rbac.authorization.k8s.io/v1/clusterroles/dexkit:dex-crds"
    assert role.describe() == "ClusterRole dexkit:dex-crds"
    assert kube.ObjectRef("Secret", "a.tls", "dex").path == "/api/v1/namespaces/dex/secrets/a.tls"


def test_every_rendered_kind_has_a_known_place() -> None:
    config = make_config({"dex": {"replicas": 2, "ingress": {"enabled": True}},
                          "rbac": [{"user": "jane@example.com", "clusterRole": "view"}]})
    for obj in objects_for(config):
        assert kube.ObjectRef.of(obj).resource.kind == obj["kind"]


def test_conflicts_are_read_by_field_and_manager() -> None:
    error = _FakeApiError(409, {"reason": "Conflict", "details": {"causes": [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl" using apps/v1',
         "field": ".spec.replicas"},
        {"reason": "FieldManagerConflict", "message": 'conflict with "helm"',
         "field": ".metadata.labels.app"}]}})
    assert kube._conflicts(error) == [kube.FieldConflict(".spec.replicas", "kubectl"),
                                      kube.FieldConflict(".metadata.labels.app", "helm")]


def test_quoted_values_never_reach_a_message() -> None:
    error = _FakeApiError(422, {"message": 'Secret "x" is invalid: data[k]: Invalid value: '
                                           '"hunter2": a valid config key must consist of ...'})
    reason = kube._reason(error)
    assert "hunter2" not in reason and "(value not shown)" in reason


# --- rollout status and diagnosis ----------------------------------------------------------------


def deployment(generation: int = 2, observed: int = 2, replicas: int = 2, updated: int = 2,
               available: int = 2, total: int = 2, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": "dex", "generation": generation},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "dex"}}},
            "status": {"observedGeneration": observed, "updatedReplicas": updated,
                       "availableReplicas": available, "replicas": total, **extra}}


@pytest.mark.parametrize(("kwargs", "done", "message"), [
    ({}, True, "2 of 2 replicas available"),
    ({"observed": 1}, False, "waiting for the deployment controller to observe generation 2"),
    ({"updated": 1, "total": 3}, False, "1 of 2 replicas updated"),
    ({"total": 3}, False, "1 old replicas pending termination"),
    ({"available": 1}, False, "1 of 2 updated replicas available"),
])
def test_rollout_status_follows_kubectl(kwargs: dict[str, int], done: bool, message: str) -> None:
    status = rollout.rollout_status(deployment(**kwargs))
    assert (status.done, status.message) == (done, message)


@pytest.mark.parametrize(("kwargs", "why"), [
    ({}, ""),
    ({"available": 1}, ""),
    ({"replicas": 0, "updated": 0, "available": 0, "total": 0}, "is scaled to 0 replicas"),
    ({"available": 0}, "has 0 of 2 replicas available"),
])
def test_why_no_pod_serves(kwargs: dict[str, int], why: str) -> None:
    assert rollout.not_serving(deployment(**kwargs)) == why


def test_a_progress_deadline_fails_the_rollout() -> None:
    condition = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": 'ReplicaSet "dex-1" has timed out progressing.'}
    status = rollout.rollout_status(deployment(available=0, conditions=[condition]))
    assert not status.done and "timed out progressing" in status.failed
    lines = rollout.describe_deployment(deployment(available=0, conditions=[condition]))
    assert any("ProgressDeadlineExceeded" in line for line in lines)


def test_pods_are_described_with_their_waiting_reasons() -> None:
    pod = {"metadata": {"name": "dex-1"}, "spec": {"nodeName": "node-a"}, "status": {
        "phase": "Pending",
        "containerStatuses": [{"name": "dex", "ready": False, "restartCount": 4,
                               "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                     "message": "back-off 40s"}},
                               "lastState": {"terminated": {"exitCode": 2}}}]}}
    assert rollout.describe_pod(pod) == [
        "pod dex-1: Pending on node-a",
        "  container dex: waiting: CrashLoopBackOff: back-off 40s (restarted 4 times)"]
    assert rollout.crashing_containers(pod) == [("dex", True)]
    pulling = {"metadata": {"name": "dex-2"}, "status": {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                        "message": "0/1 nodes are available"}],
        "containerStatuses": [{"name": "dex", "state": {"waiting": {
            "reason": "ImagePullBackOff"}}}]}}
    assert rollout.describe_pod(pulling) == [
        "pod dex-2: Pending, not scheduled to a node",
        "  not scheduled: Unschedulable 0/1 nodes are available",
        "  container dex: waiting: ImagePullBackOff"]
    assert rollout.crashing_containers(pulling) == []
    # Seen on the node sandbox: between two restarts the container is terminated, and its log
    # is its own; asking for the previous run then got "unable to retrieve container logs".
    dead = {"metadata": {"name": "dex-3"}, "status": {"containerStatuses": [
        {"name": "dex", "restartCount": 2,
         "state": {"terminated": {"reason": "Error", "exitCode": 2}},
         "lastState": {"terminated": {"reason": "Error", "exitCode": 2}}}]}}
    assert rollout.crashing_containers(dead) == [("dex", False)]


def test_recent_events_are_those_of_the_deployment_its_sets_and_pods() -> None:
    def event(name: str, at: str, reason: str, count: int = 1) -> dict[str, Any]:
        return {"involvedObject": {"kind": "Pod", "name": name}, "type": "Warning",
                "reason": reason, "message": f"{reason} happened", "lastTimestamp": at,
                "count": count}
    events = [event("dex-1", "2026-01-01T00:00:02Z", "BackOff", 7),
              event("other", "2026-01-01T00:00:03Z", "Unrelated"),
              event("dex-1", "2026-01-01T00:00:01Z", "Failed")]
    assert rollout.recent_events(events, {"dex", "dex-1"}) == [
        "recent events:",
        "  Warning Failed pod/dex-1: Failed happened",
        "  Warning BackOff pod/dex-1: BackOff happened (x7)"]
    assert rollout.recent_events(events, {"nothing"}) == [
        "no events about the Deployment, its ReplicaSets or pods"]



# --- the rollout's progress display ------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_is_one_line_per_change(
        capsys: pytest.CaptureFixture[str]) -> None:
    out = Output()
    with out.progress("rollout", "Deployment dex/dex", width=12) as update:
        update(0, 1, "waiting")
        update(0, 1, "waiting")
        update(1, 1, "1 of 1 replicas available")
    assert capsys.readouterr().err.splitlines() == [
        "rollout      Deployment dex/dex: waiting",
        "rollout      Deployment dex/dex: 1 of 1 replicas available"]


def test_progress_on_a_terminal_is_a_rich_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setenv("COLUMNS", "100")
    out = Output()
    with out.progress("rollout", "Deployment dex/dex") as update:
        update(1, 1, "1 of 1 replicas available")
    frame = terminal.getvalue()
    assert "rollout Deployment dex/dex" in frame and "1/1" in frame
    assert "1 of 1 replicas available" in frame
    assert "\x1b[" in frame  # drawn in place, not printed as lines


# --- the cluster's network before Dex's Pods (kube-proxy, CoreDNS) ----------------------------

def _daemonset(generation: int = 1, observed: int = 1, desired: int = 1, ready: int = 1,
               updated: int = 1) -> dict[str, object]:
    return {"metadata": {"generation": generation},
            "status": {"observedGeneration": observed, "desiredNumberScheduled": desired,
                       "numberReady": ready, "updatedNumberScheduled": updated}}


def _deployment(ready: int = 1, generation: int = 1, observed: int = 1) -> dict[str, object]:
    return {"metadata": {"generation": generation},
            "status": {"observedGeneration": observed, "readyReplicas": ready}}


@pytest.mark.parametrize(("daemonset", "ready"), [
    (None, True),  # no kube-proxy (a CNI that replaces it): nothing to wait for
    (_daemonset(), True),
    (_daemonset(desired=0, ready=0, updated=0), False),  # no Pod made yet
    (_daemonset(ready=0), False),
    (_daemonset(desired=3, ready=3, updated=2), False),  # an old Pod still runs
    (_daemonset(generation=2, observed=1), False),  # the controller has not seen it
    ({"metadata": {}, "status": {}}, False),
])
def test_kube_proxy_is_ready_when_its_current_pods_run_on_every_node(
        daemonset: dict[str, object] | None, ready: bool) -> None:
    assert deploy.daemonset_ready(daemonset) is ready


@pytest.mark.parametrize(("deployment", "serves"), [
    (None, True),  # another DNS: nothing to wait for
    (_deployment(ready=1), True),  # one ready Pod of two answers the Service
    (_deployment(ready=0), False),
    (_deployment(generation=2, observed=1), False),
    ({"metadata": {}, "status": {}}, False),
])
def test_cluster_dns_serves_once_one_pod_is_ready(deployment: dict[str, object] | None,
                                                  serves: bool) -> None:
    assert deploy.deployment_serves(deployment) is serves


class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def change(self, change: deploy.Change) -> None:
        self.lines.append(change.ref.describe())

    def step(self, verb: str, what: str) -> None:
        self.lines.append(f"{verb} {what}")

    def warn(self, message: str, hint: str = "") -> None:
        self.lines.append(f"warning {message} / {hint}")


def _clock() -> tuple[list[float], Callable[[], float], Callable[[float], None]]:
    now = [0.0]
    return now, lambda: now[0], lambda seconds: now.__setitem__(0, now[0] + seconds)


def _answers(monkeypatch: pytest.MonkeyPatch,
             by_kind: dict[str, list[object]]) -> list[kube.ObjectRef]:
    asked: list[kube.ObjectRef] = []

    def get_object(cluster: object, ref: kube.ObjectRef) -> object:
        asked.append(ref)
        answers = by_kind[ref.kind]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, ClusterError):
            raise answer
        return answer

    monkeypatch.setattr(deploy.kube, "get_object", get_object)
    return asked


def test_deploy_waits_for_kube_proxy_then_dns_and_says_each_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _answers(monkeypatch, {
        "DaemonSet": [_daemonset(desired=0, ready=0, updated=0), _daemonset(ready=0),
                      _daemonset()],
        "Deployment": [_deployment(ready=0), _deployment(ready=0), _deployment()]})
    reporter = _Lines()
    _, clock, sleep = _clock()
    deploy.wait_for_cluster_network(object(), reporter, clock=clock,  # type: ignore[arg-type]
                                    sleep=sleep)
    assert deploy.CLUSTER_NETWORK == (deploy.SERVICE_NETWORK, deploy.DNS)
    assert asked == [deploy.KUBE_PROXY] * 3 + [deploy.CLUSTER_DNS] * 3
    assert kube.ObjectRef("DaemonSet", "kube-proxy", "kube-system") == deploy.KUBE_PROXY
    assert kube.ObjectRef("Deployment", "coredns", "kube-system") == deploy.CLUSTER_DNS
    assert reporter.lines == [
        "network waiting: kube-proxy is not running on every node yet (DaemonSet "
        "kube-system/kube-proxy); Dex reaches the API server through the Service network it "
        "programs",
        "network kube-proxy runs on every node after 1s",
        "network waiting: the cluster's DNS has no ready Pod yet (Deployment "
        "kube-system/coredns); Dex resolves its upstreams through it",
        "network the cluster's DNS answers after 2s"]


@pytest.mark.parametrize("answer", [None, "ready", ClusterError("forbidden", status=403)])
def test_nothing_is_said_when_there_is_nothing_to_wait_for(
        monkeypatch: pytest.MonkeyPatch, answer: object) -> None:
    _answers(monkeypatch, {"DaemonSet": [_daemonset() if answer == "ready" else answer],
                           "Deployment": [_deployment() if answer == "ready" else answer]})
    reporter = _Lines()
    _, clock, sleep = _clock()
    deploy.wait_for_cluster_network(object(), reporter, clock=clock,  # type: ignore[arg-type]
                                    sleep=sleep)
    assert reporter.lines == []


def test_a_network_that_never_comes_is_a_warning_not_a_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _answers(monkeypatch, {"DaemonSet": [_daemonset(ready=0)], "Deployment": [_deployment()]})
    reporter = _Lines()
    now, clock, sleep = _clock()
    deploy.wait_for_cluster_network(object(), reporter, timeout=60,  # type: ignore[arg-type]
                                    clock=clock, sleep=sleep)
    assert now[0] == 60
    assert reporter.lines[-1] == (
        "warning still waiting for DaemonSet kube-system/kube-proxy after 60s; deploying "
        "anyway / see 'kubectl -n kube-system get pods'")


@pytest.mark.parametrize(("case", "needs"), [
    ("default", True),  # GitHub: Dex resolves github.com
    ("static-authn", False),  # static users on kubernetes storage: nothing to resolve
    ("ldap-postgres", True),
])
def test_the_dns_is_waited_for_only_when_a_login_makes_dex_resolve_a_name(
        case: str, needs: bool) -> None:
    assert deploy.needs_cluster_dns(case_config(case)) is needs
