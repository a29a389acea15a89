"""The guide, for real, on the node sandbox: Dex as the rendered Deployment in a Pod.

One node sandbox for the module (the tests run in file order and build on each other, as a
user following the guide does): ``dexkit deploy`` rolls Dex out, Dex keeps its state in CRDs
through the rendered RBAC from inside the Pod, the NodePort serves the issuer with dexkit's
certificate, and every login goes through the guide's default issuer
``https://dex.example.com:32000``, which only the sandbox's mount namespace resolves (the
machine's /etc/hosts is never edited). Then real failures, two replicas, and ``destroy``. The
fixture's teardown proves that ``down`` leaves the machine as it found it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dexkit import kube, rollout
from dexkit.config import load_config
from dexkit.sandbox import node, peers
from dexkit.sandbox.state import sandbox_dir
from tests.e2e.conftest import KUBERNETES_VERSION
from tests.e2e.node_sandbox import (
    DEX_IMAGE,
    NAMESPACE,
    USER,
    Guide,
    in_sandbox,
    node_binaries,
    require_node_machine,
    run,
    running_guide,
    set_in_config,
)

# The node and port 32000 are the machine's: this module has it to itself.
pytestmark = [pytest.mark.e2e, pytest.mark.machine, pytest.mark.needs_dex,
              pytest.mark.usefixtures("machine_exclusive")]


@pytest.fixture(scope="module")
def guide(tmp_path_factory: pytest.TempPathFactory, peer: Callable[[str], Path],
          kubectl: Path) -> Iterator[Guide]:
    require_node_machine()
    binaries = node_binaries(peer, KUBERNETES_VERSION)
    with running_guide(tmp_path_factory.mktemp("node"), binaries, kubectl) as running:
        yield running


# --- the node -------------------------------------------------------------------------------


def test_the_node_is_real_and_its_api_server_advertises_a_sandbox_address(guide: Guide) -> None:
    nodes = guide.kubectl_json("get", "nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [node.NODE_NAME]
    info = nodes[0]["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.")
    assert info["kubeletVersion"] == f"v{peers.resolve_kubernetes_version(KUBERNETES_VERSION)}"
    endpoints = guide.kubectl_json("get", "endpoints", "kubernetes")
    addresses = [a["ip"] for s in endpoints["subsets"] for a in s["addresses"]]
    assert addresses == [guide.node.state.node_ip]
    assert not addresses[0].startswith("127.")
    listed = subprocess.run(["ctr", f"--address={guide.node.layout.containerd_socket}",
                             "--namespace=k8s.io", "images", "ls", "-q"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert DEX_IMAGE in listed and guide.node.state.images["pause"] in listed
    assert not any(name.startswith("ghcr.io/") for name in listed)
    assert "dex.example.com" not in Path("/etc/hosts").read_text()


# --- the guide ------------------------------------------------------------------------------


def test_deploy_rolls_dex_out_as_the_rendered_deployment(guide: Guide) -> None:
    result = guide.dexkit("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 of 1 replicas available" in result.stdout + result.stderr
    (pod,) = guide.dex_pods()
    assert pod["status"]["phase"] == "Running"
    (container,) = pod["status"]["containerStatuses"]
    assert container["ready"] is True
    assert container["image"] == DEX_IMAGE
    # dexkit applied Dex's CRDs and waited until they were served before Dex started: Dex
    # (crdHandling: check) never exits on a fresh cluster any more.
    assert container["restartCount"] == 0
    security = pod["spec"]["securityContext"]
    assert (security["runAsUser"], security["seccompProfile"]["type"]) == (1001, "RuntimeDefault")


def test_dex_keeps_its_state_in_crds_through_the_rendered_rbac(guide: Guide) -> None:
    crds = {c["metadata"]["name"]: c for c in guide.kubectl_json(
        "get", "crd", "--show-managed-fields")["items"]}
    assert "signingkeies.dex.coreos.com" in crds
    # The CRDs are dexkit's (applied by deploy); Dex has no right to create them.
    managers = {f["manager"] for f in crds["signingkeies.dex.coreos.com"]["metadata"]
                ["managedFields"]}
    assert "dexkit" in managers and "Go-http-client" not in managers, managers
    can = guide.kubectl_run("auth", "can-i", "create", "customresourcedefinitions",
                            "--as", f"system:serviceaccount:{NAMESPACE}:dex", check=False)
    assert can.stdout.strip() == "no", can.stdout + can.stderr
    # Dex wrote its signing keys from inside the Pod, as its ServiceAccount.
    keys = guide.kubectl_json("-n", NAMESPACE, "get", "signingkeies.dex.coreos.com",
                              "--show-managed-fields")["items"]
    assert len(keys) == 1
    # Written by Dex's own client (Go's default user agent), not by dexkit or kubectl; Dex
    # holds no credential but its Pod's ServiceAccount token.
    assert {f["manager"] for f in keys[0]["metadata"]["managedFields"]} == {"Go-http-client"}
    (pod,) = guide.dex_pods()
    assert pod["spec"]["serviceAccountName"] == "dex"
    assert any(v.get("projected") for v in pod["spec"]["volumes"])


def _served_certificate(port: int, ca: Path, host: str, wait: float = 15.0) -> bytes:
    """The certificate 127.0.0.1:port serves for ``host``; a refused connection is retried for
    ``wait`` seconds (kube-proxy follows a rollout's endpoint changes within a moment)."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + wait
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                    context.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def _pem_der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def test_the_nodeport_serves_the_issuer_with_dexkits_certificate(guide: Guide) -> None:
    config = load_config(guide.project).config
    ssl_dir = guide.project / config.tls.dir
    served = _served_certificate(32000, ssl_dir / "ca.pem", config.issuer_host)
    assert hashlib.sha256(served).hexdigest() == \
        hashlib.sha256(_pem_der(ssl_dir / "cert.pem")).hexdigest()
    discovery = run(in_sandbox(guide.project, "curl", "-sS", "--cacert",
                               str(ssl_dir / "ca.pem"),
                               f"{config.issuer}/.well-known/openid-configuration"), guide.env)
    assert discovery.returncode == 0, discovery.stderr
    assert json.loads(discovery.stdout)["issuer"] == config.issuer == \
        "https://dex.example.com:32000"


def test_a_level_one_sandbox_on_the_nodeport_is_refused_by_name(guide: Guide,
                                                                  tmp_path: Path) -> None:
    # Seen in CI: a node held port 32000, a level-1 sandbox started Dex on 127.0.0.1:32000
    # anyway, and its readiness check died of "No route to host" (kube-proxy sent the
    # connection to the node's Service). The refusal comes first, and names the capture.
    other = tmp_path / "level-one"
    cli = [sys.executable, "-m", "dexkit"]  # on the machine, not in the node's namespace
    made = run([*cli, "init", "--dir", str(other), "--connector", "static",
                "--issuer", "https://127.0.0.1:32000"], guide.env, cwd=tmp_path)
    assert made.returncode == 0, made.stdout + made.stderr
    up = run([*cli, "sandbox", "up", "--dir", str(other)], guide.env, cwd=other)
    assert up.returncode == 1, up.stdout + up.stderr
    lines = up.stderr.strip().splitlines()
    assert lines[-2].startswith("error: port 32000 of the issuer is a NodePort of a Kubernetes "
                                "node on this machine (iptables"), up.stderr
    assert "KUBE-NODEPORTS" in lines[-2]
    assert lines[-1].startswith("hint: stop that node")
    assert not sandbox_dir(other).exists(), "a refusal starts nothing"


def test_verify_logs_in_through_the_deployed_dex(guide: Guide) -> None:
    result = guide.dexkit("verify", "--grant", "password")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"password grant as {USER}" in result.stdout
    assert guide.password() not in result.stdout + result.stderr


def test_kubectl_logs_in_through_dexkit_token(guide: Guide) -> None:
    kubeconfig = guide.home / "user.kubeconfig"
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_bytes(guide.kubeconfig.read_bytes())
    result = guide.dexkit("kubeconfig", "--kubeconfig", str(kubeconfig), "--grant", "password",
                          "--context", "oidc", "--cluster", "dexkit-sandbox", "--use-context")
    assert result.returncode == 0, result.stdout + result.stderr
    whoami = run(in_sandbox(guide.project, str(guide.kubectl), "--kubeconfig", str(kubeconfig),
                            "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"),
                 guide.env, timeout=120)
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout == USER
    assert guide.password() not in kubeconfig.read_text()


def test_doctor_is_healthy_with_every_check_run(guide: Guide) -> None:
    kubeconfig = guide.home / "user.kubeconfig"
    result = guide.dexkit("doctor", "--login", "password", "--username", USER,
                          "--kubeconfig", str(kubeconfig), "--context", "dexkit-sandbox",
                          "--output", "json", env={"DEXKIT_PASSWORD": guide.password()})
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads(result.stdout)
    rows = results["results"] if isinstance(results, dict) else results
    assert rows
    not_ok = {r["id"]: (r["status"], r["message"]) for r in rows
              if r["status"] in ("warn", "fail")}
    assert not not_ok, not_ok
    # Skipped only where the project has nothing of the kind (robots, several clusters, a
    # kuberc policy): every check that applies to the guide's project ran.
    skipped = {r["id"] for r in rows if r["status"] == "skip"}
    assert skipped <= {"local.robots", "local.clusters", "local.kuberc", "network.grants"}, \
        {r["id"]: r["message"] for r in rows if r["status"] == "skip"}
    assert any(r["id"].startswith("cluster.") for r in rows)


def test_rotate_and_deploy_rolls_dex_and_verify_passes_again(guide: Guide) -> None:
    (before,) = guide.dex_pods()
    rotated = guide.dexkit("certs", "rotate")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    deployed = guide.dexkit("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    after = [p for p in guide.dex_pods() if not p["metadata"].get("deletionTimestamp")]
    assert [p["metadata"]["name"] for p in after] != [before["metadata"]["name"]]
    config = load_config(guide.project).config
    ssl_dir = guide.project / config.tls.dir
    served = _served_certificate(32000, ssl_dir / "ca.pem", config.issuer_host)
    assert served == _pem_der(ssl_dir / "cert.pem")
    verified = guide.dexkit("verify", "--grant", "password")
    assert verified.returncode == 0, verified.stdout + verified.stderr


# --- real failures, diagnosed -----------------------------------------------------------------


def rollout_failure(guide: Guide, *, timeout: float) -> list[str]:
    """What ``dexkit deploy`` prints when the rollout does not finish (the same code)."""
    cluster = kube.connect(kube.Target(guide.kubeconfig))
    with pytest.raises(rollout.RolloutError) as failure:
        rollout.wait_for_rollout(cluster, kube.ObjectRef("Deployment", "dex", NAMESPACE),
                                 timeout=timeout, on_status=lambda _status: None)
    return [failure.value.message, *failure.value.details]


def _doctor(guide: Guide) -> dict[str, tuple[str, str]]:
    result = guide.dexkit("doctor", "--output", "json")
    data = json.loads(result.stdout)
    rows = data["results"] if isinstance(data, dict) else data
    return {r["id"]: (r["status"], r["message"]) for r in rows}


def test_a_dex_config_that_crashes_dex_is_reported_with_its_log(guide: Guide) -> None:
    # A storage Dex cannot reach: it exits at start, as with any fatal config error.
    config_path = guide.project / "dexkit.yaml"
    good = config_path.read_text()
    set_in_config(guide.project, "  storage:\n    type: kubernetes\n",
                  "  storage:\n    type: postgres\n    host: 127.0.0.1\n    sslMode: disable\n")
    try:
        result = guide.dexkit("deploy", "--timeout", "30",
                              env={"DEX_POSTGRES_PASSWORD": "not-a-real-password"})
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "CrashLoopBackOff" in output, output
        # The container's own last words, read through the API server's pods/log path.
        assert "failed to initialize storage" in output, output
        assert "not-a-real-password" not in output
        checks = _doctor(guide)
        assert checks["cluster.deployment"][0] == "fail", checks["cluster.deployment"]
        assert "rollout is stuck" in checks["cluster.deployment"][1], checks["cluster.deployment"]
        assert "CrashLoopBackOff" in checks["cluster.deployment"][1], checks["cluster.deployment"]
    finally:
        config_path.write_text(good)
    restored = guide.dexkit("deploy")
    assert restored.returncode == 0, restored.stdout + restored.stderr


def test_a_missing_tls_secret_is_named_by_the_pods_real_event(guide: Guide) -> None:
    config = load_config(guide.project).config
    secret = f"{config.tls.hosts[0]}.tls"
    guide.kubectl_run("-n", NAMESPACE, "delete", "secret", secret)
    guide.kubectl_run("-n", NAMESPACE, "rollout", "restart", "deployment/dex")
    try:
        lines = rollout_failure(guide, timeout=20)
        text = "\n".join(lines)
        assert "FailedMount" in text and f'secret "{secret}" not found' in text, text
        checks = _doctor(guide)
        assert checks["cluster.tls-secret"][0] == "fail", checks["cluster.tls-secret"]
        assert secret in checks["cluster.tls-secret"][1], checks["cluster.tls-secret"]
    finally:
        restored = guide.dexkit("deploy")
    assert restored.returncode == 0, restored.stdout + restored.stderr


def test_a_wrong_probe_port_keeps_dex_not_ready_and_is_named(guide: Guide) -> None:
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/readinessProbe/httpGet"
              "/port", "value": 5559}]
    guide.kubectl_run("-n", NAMESPACE, "patch", "deployment", "dex", "--type=json",
                      f"-p={json.dumps(patch)}")
    lines = rollout_failure(guide, timeout=20)
    text = "\n".join(lines)
    assert "Readiness probe failed" in text and ":5559/" in text, text
    checks = _doctor(guide)
    assert checks["cluster.deployment"][0] == "fail", checks["cluster.deployment"]
    assert "readiness probe asks port 5559" in checks["cluster.deployment"][1], \
        checks["cluster.deployment"]
    # dexkit owns that field: a plain deploy says who changed it; --force-conflicts takes it
    # back.
    conflicted = guide.dexkit("deploy")
    assert conflicted.returncode == 1
    assert "kubectl-patch" in conflicted.stdout + conflicted.stderr
    restored = guide.dexkit("deploy", "--force-conflicts")
    assert restored.returncode == 0, restored.stdout + restored.stderr


# --- two replicas ---------------------------------------------------------------------------


def test_two_replicas_are_ready_the_pdb_holds_and_both_log_in(guide: Guide) -> None:
    set_in_config(guide.project, "  replicas: 1\n", "  replicas: 2\n")
    deployed = guide.dexkit("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    running = [p for p in guide.dex_pods() if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 2
    assert all(c["ready"] for p in running for c in p["status"]["containerStatuses"])
    pdb = guide.kubectl_json("-n", NAMESPACE, "get", "pdb", "dex")
    assert pdb["status"]["currentHealthy"] == 2
    # A login through each pod (its own IP, the issuer's name for TLS), then the refresh
    # token from one redeemed at the other: their state is shared, in the CRDs.
    config = load_config(guide.project).config
    ca = guide.project / config.tls.dir / "ca.pem"
    refresh = ""
    for pod in running:
        tokens = _password_grant(pod["status"]["podIP"], config, ca, guide.password(),
                                 refresh=refresh)
        assert tokens["id_token"]
        refresh = tokens["refresh_token"]
    # The PDB holds: one eviction is allowed, the second (both would be down) is refused.
    first, second = (p["metadata"]["name"] for p in running)
    assert _evict(guide, first).returncode == 0
    refused = _evict(guide, second)
    assert refused.returncode != 0 and "disruption budget" in refused.stderr, refused.stderr
    set_in_config(guide.project, "  replicas: 2\n", "  replicas: 1\n")


def _password_grant(pod_ip: str, config: Any, ca: Path, password: str, *,
                    refresh: str = "") -> dict[str, str]:
    import httpx

    data = {"grant_type": "refresh_token", "refresh_token": refresh} if refresh else {
        "grant_type": "password", "username": USER, "password": password,
        "scope": "openid email groups offline_access"}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca))) as client:
        answer = client.post(f"https://{pod_ip}:5556/token", data=data,
                             auth=(config.api_server.client_id, ""),
                             extensions={"sni_hostname": config.issuer_host})
    assert answer.status_code == 200, answer.text
    tokens: dict[str, str] = answer.json()
    return tokens


def _evict(guide: Guide, pod: str) -> subprocess.CompletedProcess[str]:
    body = json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                       "metadata": {"name": pod, "namespace": NAMESPACE}})
    return subprocess.run([str(guide.kubectl), "--kubeconfig", str(guide.kubeconfig), "create",
                           "--raw", f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/eviction",
                           "-f", "-"], input=body, capture_output=True, text=True, check=False)


# --- destroy ----------------------------------------------------------------------------------


def test_destroy_removes_dex(guide: Guide) -> None:
    result = guide.dexkit("destroy")
    assert result.returncode == 0, result.stdout + result.stderr
    deployments = guide.kubectl_json("-n", NAMESPACE, "get", "deployments")["items"]
    assert deployments == []
    services = guide.kubectl_json("-n", NAMESPACE, "get", "services")["items"]
    assert services == []
    deadline = time.monotonic() + 60
    while guide.dex_pods() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert guide.dex_pods() == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 32000), timeout=3).close()
