"""Dex's main branch (commit ab64ed778070, the code of its next release; not a release) as the
rendered Deployment on the node sandbox, on its kubernetes storage.

Its storage has two kinds more than v2.45.1 (``authsessions``, ``useridentities``), listed when
it starts and by its garbage collector on every run: the Role dexkit renders for the image the
project names must cover them, or Dex fails with "forbidden". dexkit applies the CRDs itself
(``crdHandling: check``), so Dex holds no cluster-wide right and its first start finds them
established (no restart). The issuer is an IP (``https://127.0.0.1:32000``): the NodePort
answers on the machine's loopback, so no name needs resolving.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dexkit.config import load_config
from dexkit.render.dex import CRD_GROUP, crd_resources
from dexkit.sandbox import images, node, peers
from tests.e2e.conftest import KUBERNETES_VERSION, say
from tests.e2e.node_sandbox import (
    cli_env,
    machine_state,
    node_binaries,
    pods,
    require_node_machine,
    run,
    set_in_config,
)

# The node and port 32000 are the machine's: this module has it to itself.
pytestmark = [pytest.mark.e2e, pytest.mark.machine, pytest.mark.needs_dex,
              pytest.mark.usefixtures("machine_exclusive")]
ISSUER = "https://127.0.0.1:32000"
NAMESPACE = "dex"
MAIN_IMAGE = images.dex_image_name(peers.DEX_MAIN.version)


class MainNode:
    def __init__(self, project: Path, running: node.Node, home: Path, kubectl: Path) -> None:
        self.project, self.node, self.kubectl = project, running, kubectl
        self.env = cli_env(home, DEXKIT_TOKEN_CACHE=str(home / "token-cache"))
        self.config = load_config(project).config
        self.ca = ssl.create_default_context(cafile=str(project / "ssl" / "ca.pem"))

    def dexkit(self, *args: str) -> subprocess.CompletedProcess[str]:
        import sys

        return run([sys.executable, "-m", "dexkit", *args, "--dir", str(self.project)],
                   self.env, cwd=self.project)

    def kubectl_json(self, *args: str) -> Any:
        out = subprocess.run([str(self.kubectl), "--kubeconfig", str(self.node.kubeconfig),
                              *args, "-o", "json"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def token(self, **extra: str) -> dict[str, Any]:
        user = self.config.static_users[0].email
        password = (self.project / ".dexkit/passwords" / user).read_text().strip()
        answer = httpx.post(f"{ISSUER}/token", verify=self.ca, timeout=10, data={
            "grant_type": "password", "username": user, "password": password,
            "client_id": self.config.api_server.client_id,
            "scope": "openid email groups offline_access", **extra})
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data


@pytest.fixture(scope="module")
def main_node(tmp_path_factory: pytest.TempPathFactory, peer: Callable[..., Path],
              kubectl: Path) -> Iterator[MainNode]:
    require_node_machine()
    binaries = node_binaries(peer, KUBERNETES_VERSION)
    peer("dex", dex="main")
    root = tmp_path_factory.mktemp("node-dex-main")
    project = root / "project"
    made = subprocess.run(["python3", "-m", "dexkit", "init", "--dir", str(project),
                           "--connector", "static", "--issuer", ISSUER],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    set_in_config(project, "image: ghcr.io/dexidp/dex:v2.45.1", f"image: {MAIN_IMAGE}")
    before = machine_state()
    started = time.monotonic()
    running = node.start(node.NodeRequest(
        project=project, config=load_config(project).config, binaries=binaries,
        kubernetes_version=KUBERNETES_VERSION))
    say(f"node sandbox (Dex main) ready in {time.monotonic() - started:.1f}s")
    sandbox = running.plane.layout.dir
    try:
        yield MainNode(project, running, root / "home", kubectl)
    finally:
        running.stop()
    assert machine_state(sandbox) == {**before, "processes": []}


def test_the_main_branch_dex_rolls_out_without_a_restart(main_node: MainNode) -> None:
    deployed = main_node.dexkit("deploy")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    (pod,) = pods(main_node.kubectl, main_node.node.kubeconfig, NAMESPACE)
    (container,) = pod["status"]["containerStatuses"]
    assert container["image"] == MAIN_IMAGE and container["ready"] is True
    # Its CRDs were there and established before it started: it never exited.
    assert container["restartCount"] == 0
    crds = main_node.kubectl_json("get", "crd")["items"]
    ours = {c["metadata"]["name"] for c in crds if c["spec"]["group"] == CRD_GROUP}
    assert ours == {f"{r}.{CRD_GROUP}" for r in crd_resources(main_node.config)}
    assert {"authsessions.dex.coreos.com", "useridentities.dex.coreos.com"} <= ours


def test_a_login_refresh_and_auth_request_through_the_twelve_kinds(main_node: MainNode) -> None:
    first = main_node.token()
    refreshed = httpx.post(f"{ISSUER}/token", verify=main_node.ca, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"],
        "client_id": main_node.config.api_server.client_id})
    assert refreshed.status_code == 200, refreshed.text
    names = {r: main_node.kubectl_json("-n", NAMESPACE, "get", f"{r}.{CRD_GROUP}")["items"]
             for r in ("refreshtokens", "offlinesessionses", "signingkeies")}
    assert all(names.values()), {k: len(v) for k, v in names.items()}
    page = httpx.get(f"{ISSUER}/auth", verify=main_node.ca, follow_redirects=True, timeout=10,
                     params={"client_id": main_node.config.api_server.client_id,
                             "response_type": "code", "scope": "openid",
                             "redirect_uri": "http://127.0.0.1:8000/callback", "state": "s"})
    assert page.status_code == 200
    assert main_node.kubectl_json("-n", NAMESPACE, "get", f"authrequests.{CRD_GROUP}")["items"]
    logs = subprocess.run([str(main_node.kubectl), "--kubeconfig", str(main_node.node.kubeconfig),
                           "-n", NAMESPACE, "logs", "deployment/dex"],
                          capture_output=True, text=True, check=True).stdout
    assert "forbidden" not in logs and "storage is not initialized" not in logs, logs[-2000:]


def test_verify_and_doctor_pass_on_the_main_branch_dex(main_node: MainNode) -> None:
    verified = main_node.dexkit("verify", "--grant", "password")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    doctor = main_node.dexkit("doctor", "--output", "json")
    report = {r["id"]: r for r in json.loads(doctor.stdout)["results"]}
    assert report["cluster.dex-crds"]["status"] == "ok", report["cluster.dex-crds"]
    assert report["cluster.dex-rbac"]["status"] == "ok", report["cluster.dex-rbac"]
    assert "60 SubjectAccessReviews" in report["cluster.dex-rbac"]["message"]
    assert doctor.returncode == 0, {k: v for k, v in report.items() if v["status"] != "ok"}
