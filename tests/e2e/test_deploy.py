"""``dexkit deploy`` and ``dexkit destroy`` against a real kube-apiserver (the sandbox).

What the sandbox is, and what that means for these tests:

- etcd and kube-apiserver only: no kube-controller-manager, no scheduler, no kubelet. So no
  ReplicaSet or pod is ever created from a Deployment, a deleted namespace stays Terminating
  forever (its finalizer is the namespace controller's), and pod logs cannot be fetched.
- Where a test needs what a controller or the kubelet would write (a Deployment's status, a
  pod with a waiting reason, an event), it writes exactly that through the API, with kubectl,
  and says so. Nothing of the Kubernetes API is mocked.
- Every test deploys into its own namespace, with a ClusterIP Service (NodePorts are
  cluster-wide and would clash between tests).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import http.server
import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from dexkit import pki
from dexkit.sandbox import controlplane
from tests.conftest import Result

pytestmark = pytest.mark.e2e

GITHUB_ID = "gh-client-id-1234"
GITHUB_SECRET = "gh-client-secret-do-not-print-5678"  # must never appear in any output
MANAGED = "app.kubernetes.io/managed-by=dexkit"


@dataclass
class Site:
    """One test's project and namespace on the session's control plane."""

    plane: controlplane.ControlPlane
    kubectl_bin: Path
    project: Path
    namespace: str
    run: Any  # the dexkit fixture

    def kubectl(self, *args: str, stdin: str = "", check: bool = True) -> str:
        result = subprocess.run([str(self.kubectl_bin), "--kubeconfig", str(self.plane.kubeconfig),
                                 *args], input=stdin, capture_output=True, text=True, timeout=60,
                                check=False)
        if check:
            assert result.returncode == 0, result.stderr
        return result.stdout

    def get(self, kind: str, name: str, namespaced: bool = True) -> dict[str, Any] | None:
        args = ["get", kind, name, "-o", "json", "--ignore-not-found", "--show-managed-fields"]
        if namespaced:
            args += ["-n", self.namespace]
        out = self.kubectl(*args)
        return json.loads(out) if out.strip() else None

    def deploy(self, *args: str | Path) -> Result:
        result: Result = self.run("deploy", "--dir", self.project, "--kubeconfig",
                                  self.plane.kubeconfig, *args)
        assert GITHUB_SECRET not in result.out + result.err
        assert "Traceback" not in result.err
        return result

    def destroy(self, *args: str) -> Result:
        result: Result = self.run("destroy", "--dir", self.project, "--kubeconfig",
                                  self.plane.kubeconfig, *args)
        assert "Traceback" not in result.err
        return result

    def versions(self) -> dict[str, str]:
        """resourceVersion of every object labelled by dexkit, namespaced and cluster-scoped."""
        found = {}
        for kinds, scope in (("all,secrets,serviceaccounts,roles,rolebindings",
                              ["-n", self.namespace]),
                             ("clusterroles,clusterrolebindings,namespaces", [])):
            listed = json.loads(self.kubectl("get", kinds, "-l", MANAGED, "-o", "json", *scope))
            for item in listed["items"]:
                meta = item["metadata"]
                found[f"{item['kind']}/{meta.get('namespace', '')}/{meta['name']}"] = \
                    meta["resourceVersion"]
        return found


def write_config(project: Path, namespace: str, **extra: Any) -> None:
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    data["namespace"] = namespace
    data["dex"]["service"]["type"] = "ClusterIP"
    data.update(extra)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def site(request: pytest.FixtureRequest, tmp_path: Path, dexkit: Any, kubectl: Path,
         control_plane: controlplane.ControlPlane,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    namespace = "deploy-" + request.node.name.removeprefix("test_").replace("_", "-")[:40]
    project = tmp_path / "project"
    assert dexkit("init", "--dir", project).code == 0
    write_config(project, namespace.rstrip("-"))
    monkeypatch.setenv("GITHUB_CLIENT_ID", GITHUB_ID)
    monkeypatch.setenv("GITHUB_CLIENT_SECRET", GITHUB_SECRET)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    yield Site(control_plane, kubectl, project, namespace.rstrip("-"), dexkit)


def lines(result: Result) -> list[str]:
    return result.err.splitlines()


def step(result: Result, verb: str, what: str) -> bool:
    """Whether the report has a ``verb`` line about ``what`` (``Deployment ns/dex``)."""
    return any(line.startswith(f"{verb} ") and what in line for line in lines(result))


def assert_one_error(result: Result, *parts: str) -> str:
    """Exit 1, no traceback, and the failure told as one ``error:`` line and one ``hint:``."""
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    errors = [line for line in lines(result) if line.startswith("error: ")]
    hints = [line for line in lines(result) if line.startswith("hint: ")]
    assert len(errors) == 1 and len(hints) == 1, result.err
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


# --- deploy: objects, secrets, labels, owners -------------------------------------------------


def test_deploy_creates_every_object_with_labels_owners_and_secrets(site: Site) -> None:
    write_config(site.project, site.namespace, rbac=[{"group": "admins", "clusterRole": "view"}])
    rendered = site.run("render", "--dir", site.project, "--out", "-")
    assert rendered.code == 0
    kinds = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(rendered.out) if d]

    result = site.deploy("--no-wait")
    assert result.code == 0, result.err
    ns = site.namespace
    assert lines(result)[0] == (f"cluster      {site.plane.apiserver_url} "
                                "(context dexkit-sandbox)")
    shared = ("ClusterRole", "CustomResourceDefinition")  # one for every installation
    for kind, name in kinds:
        namespaced = kind not in ("Namespace", "ClusterRoleBinding", *shared)
        obj = site.get(kind, name, namespaced)
        assert obj is not None, f"{kind} {name} was not created"
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "dexkit"
        if kind not in shared:
            assert labels["app.kubernetes.io/instance"] == ns
        managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
        assert ("dexkit", "Apply") in managers, f"{kind} {name}: {managers}"
        what = f"{kind} {ns}/{name}" if namespaced else f"{kind} {name}"
        # A shared object another test's deploy made first is "unchanged" here.
        assert step(result, "created", what) or kind in shared, result.err

    tls = site.get("secret", "dex.example.com.tls")
    assert tls is not None and tls["type"] == "kubernetes.io/tls"
    ssl = site.project / "ssl"
    assert tls["data"] == {"tls.crt": b64(ssl / "cert.pem"), "tls.key": b64(ssl / "key.pem"),
                           "ca.crt": b64(ssl / "ca.pem")}
    github = site.get("secret", "github-client")
    assert github is not None
    assert {k: base64.b64decode(v).decode() for k, v in github["data"].items()} == {
        "client-id": GITHUB_ID, "client-secret": GITHUB_SECRET}
    for secret in (tls, github):
        assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "credentials"
    assert step(result, "created", f"Secret {ns}/github-client")

    deployment = site.get("deployment", "dex")
    assert deployment is not None
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]
           for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
           if "secretKeyRef" in e.get("valueFrom", {})}
    assert env["GITHUB_CLIENT_ID"] == {"name": "github-client", "key": "client-id"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/tls", "checksum/credentials"} <= set(annotations)
    binding = site.get("clusterrolebinding", "dexkit:view:group:oidc:admins", namespaced=False)
    assert binding is not None
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                    "name": "oidc:admins"}]  # the API server's group prefix
    assert binding["roleRef"]["name"] == "view"
    summary = lines(result)[-1]
    assert summary.startswith("deployed: ") and "updated" not in summary
    assert sum(int(part.split()[0]) for part in summary.removeprefix("deployed: ").split(", ")) \
        == len(kinds) + 2  # the rendered objects and the TLS and github-client Secrets


def test_kubeconfig_and_context_are_taken_like_kubectl(site: Site,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", f"/nonexistent/first:{site.plane.kubeconfig}")
    result = site.run("deploy", "--dir", site.project, "--dry-run", "--context",
                      "dexkit-sandbox")
    assert result.code == 0, result.err
    assert f"cluster      {site.plane.apiserver_url} (context dexkit-sandbox)" in result.err


# --- idempotence, rotation, dry run -----------------------------------------------------------


def test_a_second_deploy_changes_nothing(site: Site) -> None:
    """"Creates no new ReplicaSet": the sandbox has no deployment controller, so there are no
    ReplicaSets at all; what would make one is a new pod template, i.e. a new generation of the
    Deployment. So: every resourceVersion (generation included) stays as it was."""
    assert site.deploy("--no-wait").code == 0
    before = site.versions()
    generation = site.get("deployment", "dex")["metadata"]["generation"]  # type: ignore[index]

    again = site.deploy("--no-wait")
    assert again.code == 0, again.err
    report = lines(again)[1:-1]
    assert report and all(line.startswith("unchanged ") for line in report), again.err
    assert site.versions() == before
    deployment = site.get("deployment", "dex")
    assert deployment is not None and deployment["metadata"]["generation"] == generation
    assert json.loads(site.kubectl("get", "replicasets", "-n", site.namespace, "-o",
                                   "json"))["items"] == []


def test_a_rotated_certificate_updates_the_secret_and_rolls_the_deployment(site: Site) -> None:
    assert site.deploy("--no-wait").code == 0
    before = site.get("deployment", "dex")
    assert before is not None
    rotated = site.run("certs", "rotate", "--dir", site.project)
    assert rotated.code == 0, rotated.err

    result = site.deploy("--no-wait")
    assert result.code == 0, result.err
    ns = site.namespace
    assert step(result, "updated", f"Secret {ns}/dex.example.com.tls: data.tls.crt")
    assert step(result, "updated", f"Deployment {ns}/dex")
    assert "checksum/tls" in next(line for line in lines(result) if "Deployment" in line)
    assert step(result, "unchanged", f"Secret {ns}/dex-config")
    tls = site.get("secret", "dex.example.com.tls")
    assert tls is not None and tls["data"]["tls.crt"] == b64(site.project / "ssl" / "cert.pem")
    after = site.get("deployment", "dex")
    assert after is not None
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    old, new = (d["spec"]["template"]["metadata"]["annotations"] for d in (before, after))
    assert old["checksum/tls"] != new["checksum/tls"]
    assert old["checksum/config"] == new["checksum/config"]


def test_dry_run_says_what_would_change_and_changes_nothing(site: Site) -> None:
    fresh = site.deploy("--dry-run")
    assert fresh.code == 0, fresh.err
    assert "dry run, nothing will be changed" in lines(fresh)[0]
    assert step(fresh, "would create", f"Namespace {site.namespace}")
    assert "could not check this one" in fresh.err  # the namespace does not exist yet
    assert site.get("namespace", site.namespace, namespaced=False) is None

    assert site.deploy("--no-wait").code == 0
    before = site.versions()
    assert site.run("certs", "rotate", "--dir", site.project).code == 0
    dry = site.deploy("--dry-run")
    assert dry.code == 0, dry.err
    assert step(dry, "would update", f"Secret {site.namespace}/dex.example.com.tls")
    assert step(dry, "would update", f"Deployment {site.namespace}/dex")
    assert step(dry, "unchanged", f"Service {site.namespace}/dex")
    assert dry.err.rstrip().endswith("nothing was changed")
    assert site.versions() == before


# --- credentials ------------------------------------------------------------------------------


def test_a_missing_credential_stops_before_anything_is_changed(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_CLIENT_SECRET")
    result = site.deploy("--no-wait")
    assert_one_error(result, "missing credentials: GITHUB_CLIENT_SECRET", "github-client",
                     "nothing was changed")
    assert site.get("namespace", site.namespace, namespaced=False) is None
    assert GITHUB_ID not in result.err

    env_file = site.project / "creds.env"
    env_file.write_text(f"GITHUB_CLIENT_SECRET='{GITHUB_SECRET}'\n")
    with_file = site.deploy("--no-wait", "--env-file", env_file)
    assert with_file.code == 0, with_file.err
    github = site.get("secret", "github-client")
    assert github is not None
    assert base64.b64decode(github["data"]["client-secret"]).decode() == GITHUB_SECRET


def test_credentials_the_cluster_has_are_kept(site: Site,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert site.deploy("--no-wait").code == 0
    before = site.get("secret", "github-client")
    monkeypatch.delenv("GITHUB_CLIENT_ID")
    monkeypatch.delenv("GITHUB_CLIENT_SECRET")
    result = site.deploy("--no-wait")
    assert result.code == 0, result.err
    assert step(result, "kept", f"Secret {site.namespace}/github-client")
    assert site.get("secret", "github-client") == before
    assert step(result, "unchanged", f"Deployment {site.namespace}/dex")


def test_ldap_oidc_and_client_secrets_come_from_the_variables_dex_reads(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(site.project, site.namespace,
                 connectors=[{"type": "ldap"}, {"type": "oidc", "id": "upstream"}],
                 clients=[{"id": "kubernetes"},
                          {"id": "dash", "public": False, "secretName": "dash-client",
                           "redirectURIs": ["https://dash.example.com/callback"]}])
    values = {"LDAP_BIND_PASSWORD": "bind-pw-1", "UPSTREAM_CLIENT_ID": "up-id",
              "UPSTREAM_CLIENT_SECRET": "up-secret-2", "DEX_CLIENT_DASH_SECRET": "dash-3"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    result = site.deploy("--no-wait")
    assert result.code == 0, result.err
    assert not any(v in result.out + result.err for v in values.values())
    expected = {"ldap-bind": {"password": "bind-pw-1"},
                "oidc-client": {"client-id": "up-id", "client-secret": "up-secret-2"},
                "dash-client": {"client-secret": "dash-3"}}
    for name, data in expected.items():
        secret = site.get("secret", name)
        assert secret is not None, name
        assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == data
    assert site.get("secret", "github-client") is None
    deployment = site.get("deployment", "dex")
    assert deployment is not None
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})}
    assert refs == {"LDAP_BIND_PASSWORD": "ldap-bind", "UPSTREAM_CLIENT_ID": "oidc-client",
                    "UPSTREAM_CLIENT_SECRET": "oidc-client",
                    "DEX_CLIENT_DASH_SECRET": "dash-client"}


# --- field conflicts --------------------------------------------------------------------------


def test_field_conflicts_are_named_and_need_force(site: Site) -> None:
    assert site.deploy("--no-wait").code == 0
    site.kubectl("scale", "deployment", "dex", "-n", site.namespace, "--replicas=3")
    before = site.versions()

    refused = site.deploy("--no-wait")
    assert_one_error(refused, f"Deployment {site.namespace}/dex", ".spec.replicas",
                     "owned by kubectl", "nothing was changed")
    assert "--force-conflicts" in refused.err
    assert site.versions() == before

    forced = site.deploy("--no-wait", "--force-conflicts")
    assert forced.code == 0, forced.err
    assert "taking over .spec.replicas" in forced.err
    assert step(forced, "updated", f"Deployment {site.namespace}/dex: spec.replicas")
    assert site.get("deployment", "dex")["spec"]["replicas"] == 1  # type: ignore[index]


# --- rollout ----------------------------------------------------------------------------------


def test_rollout_times_out_with_the_reason_when_no_controller_runs(site: Site) -> None:
    """For real: the sandbox has no kube-controller-manager, so the Deployment is never observed."""
    result = site.deploy("--timeout", "2")
    assert_one_error(result, f"rollout of Deployment {site.namespace}/dex did not finish",
                     "timed out after 2s")
    assert "rollout      Deployment" in result.err  # plain progress lines off a terminal
    assert "is kube-controller-manager running?" in result.err
    assert "no pods" in result.err


def _status(site: Site, kind: str, name: str, status: dict[str, Any]) -> None:
    site.kubectl("patch", kind, name, "-n", site.namespace, "--subresource=status",
                 "--type=merge", "-p", json.dumps({"status": status}))


class _LogHandler(http.server.BaseHTTPRequestHandler):
    """The one kubelet endpoint the API server's pods/log proxies to."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        body = b"time=... level=info msg=\"loading config\"\nfailed to open TLS key: no such file\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def stand_in_kubelet(site: Site, tmp_path: Path, node: str) -> Iterator[list[str]]:
    """A Node whose kubelet endpoint is a local HTTPS server answering /containerLogs, so that
    the API server's real pods/log proxy path runs; the requested paths are yielded. (The
    sandbox API server has no --kubelet-certificate-authority, so it does not verify it.)"""
    now = dt.datetime.now(dt.UTC)
    ca_key = pki.generate_key("ecdsa-p256")
    ca = pki.create_ca(ca_key, common_name="stand-in kubelet CA", days=1, now=now)
    key = pki.generate_key("ecdsa-p256")
    cert = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key, hosts=["localhost"],
                                  ips=["127.0.0.1"], days=1, now=now)
    (tmp_path / "kubelet.pem").write_bytes(pki.cert_pem(cert))
    (tmp_path / "kubelet-key.pem").write_bytes(pki.key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "kubelet.pem", tmp_path / "kubelet-key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LogHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _LogHandler.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site.kubectl("create", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}))
    site.kubectl("patch", "node", node, "--subresource=status", "--type=merge", "-p",
                 json.dumps({"status": {
                     "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                     "daemonEndpoints": {"kubeletEndpoint": {
                         "Port": server.server_address[1]}}}}))
    try:
        yield _LogHandler.requests
    finally:
        site.kubectl("delete", "node", node, "--wait=false")
        server.shutdown()
        thread.join()


def test_rollout_diagnosis_names_pod_states_events_and_logs(site: Site, tmp_path: Path) -> None:
    """Pods, their statuses and events are written here as the ReplicaSet controller and the
    kubelet would write them (neither runs in the sandbox); the crashing container's log comes
    through the API server from a stand-in kubelet endpoint. deploy reads all of it for real."""
    assert site.deploy("--no-wait").code == 0
    deployment = site.get("deployment", "dex")
    assert deployment is not None
    template = deployment["spec"]["template"]
    generation = deployment["metadata"]["generation"]
    _status(site, "deployment", "dex", {"observedGeneration": generation, "replicas": 2,
                                        "updatedReplicas": 2, "unavailableReplicas": 2})
    node = f"node-{site.namespace}"[:63]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for pod, waiting, restarts in (("dex-pull", {"reason": "ImagePullBackOff",
                                                 "message": "Back-off pulling image"}, 0),
                                   ("dex-crash", {"reason": "CrashLoopBackOff",
                                                  "message": "back-off 40s restarting"}, 3)):
        site.kubectl("create", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": site.namespace,
                         "labels": template["metadata"]["labels"]},
            "spec": {**template["spec"], "nodeName": node}}))
        container: dict[str, Any] = {"name": "dex", "image": "x", "imageID": "", "ready": False,
                                     "restartCount": restarts, "state": {"waiting": waiting}}
        if restarts:
            container["lastState"] = {"terminated": {"exitCode": 2, "reason": "Error"}}
        _status(site, "pod", pod, {"phase": "Pending", "containerStatuses": [container]})
    site.kubectl("create", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "dex-crash.1", "namespace": site.namespace},
        "involvedObject": {"kind": "Pod", "name": "dex-crash", "namespace": site.namespace},
        "reason": "BackOff", "message": "Back-off restarting failed container dex",
        "type": "Warning", "count": 5, "firstTimestamp": now, "lastTimestamp": now,
        "source": {"component": "kubelet", "host": node}}))

    with stand_in_kubelet(site, tmp_path, node) as log_requests:
        result = site.deploy("--timeout", "2")
    assert_one_error(result, "0 of 2 updated replicas available")
    err = result.err
    assert f"pod dex-pull: Pending on {node}" in err
    assert "container dex: waiting: ImagePullBackOff: Back-off pulling image" in err
    assert "container dex: waiting: CrashLoopBackOff: back-off 40s restarting " \
           "(restarted 3 times)" in err
    # The crashed run's log, through the API server's pods/log: the previous container's.
    assert "last log lines of dex:\n    | time=... level=info" in err
    assert "    | failed to open TLS key: no such file" in err
    assert log_requests == [f"/containerLogs/{site.namespace}/dex-crash/dex"
                            "?previous=true&tailLines=10"]
    assert "Warning BackOff pod/dex-crash: Back-off restarting failed container dex (x5)" in err


def test_rollout_succeeds_once_the_status_says_so(site: Site) -> None:
    """The Deployment's status is written, as the deployment controller would, while deploy
    waits; deploy must notice and finish."""
    assert site.deploy("--no-wait").code == 0
    generation = site.get("deployment", "dex")["metadata"]["generation"]  # type: ignore[index]

    def controller() -> None:
        time.sleep(1.5)
        _status(site, "deployment", "dex", {
            "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1,
            "readyReplicas": 1, "availableReplicas": 1})

    writer = threading.Thread(target=controller)
    writer.start()
    try:
        result = site.deploy("--timeout", "8")
    finally:
        writer.join()
    assert "waiting for the deployment controller to observe generation" in result.err
    assert f"Deployment {site.namespace}/dex: 1 of 1 replicas available" in result.err
    # Then "a login works" (dexkit.ready): this cluster runs no kubelet, so no Pod is ever
    # behind the Service, and deploy says exactly that instead of claiming success.
    assert_one_error(result, "Dex is rolled out but does not serve logins yet (endpoints): "
                     f"Service {site.namespace}/dex has no ready endpoint")


# --- destroy ----------------------------------------------------------------------------------


def test_destroy_removes_exactly_what_deploy_made(site: Site) -> None:
    write_config(site.project, site.namespace, rbac=[{"user": "jane@example.com",
                                                      "clusterRole": "view"}])
    assert site.deploy("--no-wait").code == 0
    ns = site.namespace
    # Someone else's objects in the same namespace, and a CRD of Dex's (Dex creates them).
    site.kubectl("create", "configmap", "not-ours", "-n", ns)
    site.kubectl("create", "secret", "generic", "also-not-ours", "-n", ns,
                 "--from-literal=k=v")
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "authcodes.dex.coreos.com"},
           "spec": {"group": "dex.coreos.com", "scope": "Namespaced",
                    "names": {"plural": "authcodes", "singular": "authcode",
                              "kind": "AuthCode", "listKind": "AuthCodeList"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                        "openAPIV3Schema": {"type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True}}}]}}
    site.kubectl("apply", "-f", "-", stdin=json.dumps(crd))

    result = site.destroy()
    assert result.code == 0, result.err
    for kind, name in (("deployment", "dex"), ("service", "dex"), ("serviceaccount", "dex"),
                       ("role", "dex"), ("rolebinding", "dex"), ("secret", "dex-config")):
        assert site.get(kind, name) is None, f"{kind} {name} is still there"
    for name in (f"dexkit:dex-crds:{ns}", "dexkit:view:user:jane@example.com"):
        assert site.get("clusterrolebinding", name, namespaced=False) is None
    for name in ("dex.example.com.tls", "github-client", "also-not-ours"):
        assert site.get("secret", name) is not None, f"secret {name} was deleted"
    assert site.get("configmap", "not-ours") is not None
    assert site.get("namespace", ns, namespaced=False) is not None
    assert site.get("crd", "authcodes.dex.coreos.com", namespaced=False) is not None
    assert step(result, "kept", f"Secret {ns}/github-client")
    # The shared ClusterRole goes only when no other installation is bound to it.
    bindings = json.loads(site.kubectl("get", "clusterrolebindings", "-o", "json"))["items"]
    still_bound = any(b["roleRef"]["name"] == "dexkit:dex-crds" for b in bindings)
    role = site.get("clusterrole", "dexkit:dex-crds", namespaced=False)
    assert (role is not None) == still_bound

    purged = site.destroy("--purge", "--purge-crds")
    assert purged.code == 0, purged.err
    for name in ("dex.example.com.tls", "github-client"):
        assert site.get("secret", name) is None
    assert site.get("secret", "also-not-ours") is not None  # until the namespace goes
    assert step(purged, "deleted", f"Namespace {ns}")
    namespace = site.get("namespace", ns, namespaced=False)
    # No namespace controller in the sandbox: deleted, it waits in Terminating.
    assert namespace is None or namespace["status"]["phase"] == "Terminating"
    crd_left = site.get("crd", "authcodes.dex.coreos.com", namespaced=False)
    assert crd_left is None or "deletionTimestamp" in crd_left["metadata"]


# --- errors -----------------------------------------------------------------------------------


def test_a_terminating_namespace_is_refused(site: Site) -> None:
    """Deleted, a namespace stays Terminating here (no namespace controller), as it does in a
    real cluster while its finalizers run."""
    assert site.deploy("--no-wait").code == 0
    site.kubectl("delete", "namespace", site.namespace, "--wait=false")
    before = site.versions()
    result = site.deploy("--no-wait")
    assert_one_error(result, f'namespace "{site.namespace}" is being deleted (Terminating)',
                     "nothing was changed")
    assert site.versions() == before


def test_an_unreachable_cluster_names_the_server_and_context(
        site: Site, tmp_path: Path,
        control_plane_binaries: controlplane.ControlPlaneBinaries) -> None:
    plane = controlplane.start_control_plane(tmp_path / "stopped", control_plane_binaries)
    kubeconfig = tmp_path / "stopped.kubeconfig"
    kubeconfig.write_bytes(plane.kubeconfig.read_bytes())
    server = plane.apiserver_url
    plane.stop()
    result = site.run("deploy", "--dir", site.project, "--kubeconfig", kubeconfig)
    assert_one_error(result, f"cannot reach the API server at {server} "
                             "(context dexkit-sandbox): connection refused")


def _kubeconfig_with(site: Site, path: Path, **user: str) -> Path:
    data = yaml.safe_load(site.plane.kubeconfig.read_text())
    if "ca" in user:
        data["clusters"][0]["cluster"]["certificate-authority-data"] = user.pop("ca")
    if user:
        data["users"][0]["user"] = user
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_wrong_ca_is_a_tls_error(site: Site, tmp_path: Path) -> None:
    # The project's own CA: a real CA, just not the one that signed the API server.
    kubeconfig = _kubeconfig_with(site, tmp_path / "wrong-ca",
                                  ca=b64(site.project / "ssl" / "ca.pem"))
    result = site.run("deploy", "--dir", site.project, "--kubeconfig", kubeconfig)
    assert_one_error(result, f"TLS verification of {site.plane.apiserver_url} "
                             "(context dexkit-sandbox) failed")


def _client_cert(ca_cert: Path, ca_key: Path, user: str) -> dict[str, str]:
    now = dt.datetime.now(dt.UTC)
    key = pki.generate_key("ecdsa-p256")
    cert = controlplane.issue_client_cert(ca_cert=pki.load_cert(ca_cert),
                                          ca_key=pki.load_key(ca_key), key=key, user=user,
                                          groups=[], days=1, now=now)
    return {"client-certificate-data": base64.b64encode(pki.cert_pem(cert)).decode(),
            "client-key-data": base64.b64encode(pki.key_pem(key)).decode()}


def test_a_user_without_rights_is_told_which_verb_and_resource(site: Site,
                                                              tmp_path: Path) -> None:
    layout = site.plane.layout
    user = f"intern-{site.namespace}"
    kubeconfig = _kubeconfig_with(site, tmp_path / "intern",
                                  **_client_cert(layout.ca, layout.ca_key, user))
    result = site.run("deploy", "--dir", site.project, "--kubeconfig", kubeconfig)
    error = assert_one_error(result, f'get namespaces "{site.namespace}"', "forbidden (403)",
                             f'User "{user}" cannot get resource "namespaces"')
    assert "Role or ClusterRole" in result.err
    # With read access only, the first write is refused: named by its verb too.
    site.kubectl("create", "clusterrole", f"{user}-read", "--verb=get,list",
                 "--resource=namespaces,secrets,serviceaccounts,roles,rolebindings,"
                 "clusterroles,clusterrolebindings,deployments,services,"
                 "customresourcedefinitions.apiextensions.k8s.io")
    site.kubectl("create", "clusterrolebinding", f"{user}-read",
                 f"--clusterrole={user}-read", f"--user={user}")
    try:
        result = site.run("deploy", "--dir", site.project, "--kubeconfig", kubeconfig)
        error = assert_one_error(result, "forbidden (403)", "patch", "cannot patch resource")
        # The first step applies Dex's CRDs and the namespace, concurrently.
        assert 'patch customresourcedefinitions.apiextensions.k8s.io "' in error or \
            f'patch namespaces "{site.namespace}"' in error
        assert site.get("namespace", site.namespace, namespaced=False) is None
    finally:
        site.kubectl("delete", "clusterrolebinding", f"{user}-read")
        site.kubectl("delete", "clusterrole", f"{user}-read")


def test_a_certificate_from_another_ca_is_unauthorized(site: Site, tmp_path: Path) -> None:
    ssl = site.project / "ssl"
    kubeconfig = _kubeconfig_with(site, tmp_path / "stranger",
                                  **_client_cert(ssl / "ca.pem", ssl / "ca-key.pem", "stranger"))
    result = site.run("deploy", "--dir", site.project, "--kubeconfig", kubeconfig)
    assert_one_error(result, "did not accept the credentials (401 Unauthorized)",
                     site.plane.apiserver_url)


def test_an_unknown_context_names_the_ones_there_are(site: Site) -> None:
    result = site.deploy("--context", "prod")
    assert_one_error(result, "context 'prod' is not in the kubeconfig")
    assert "hint: use one of: dexkit-sandbox" in result.err


def test_a_broken_kubeconfig_is_one_clear_line(site: Site, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nclusters: [\n  - {name: x\n")
    result = site.run("deploy", "--dir", site.project, "--kubeconfig", broken)
    assert_one_error(result, f"the kubeconfig {broken} is not valid YAML (line 3)")
    missing = site.run("deploy", "--dir", site.project, "--kubeconfig", tmp_path / "absent")
    assert_one_error(missing, "no kubeconfig at")
