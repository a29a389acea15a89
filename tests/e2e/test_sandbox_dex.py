"""Dex on its rendered `kubernetes` storage in the sandbox, through the rendered ServiceAccount
and RBAC: its CRDs, its objects, a refresh, and what a missing permission does; on Dex v2.45.1
and on Dex's main branch (commit ab64ed778070, not a release), whose storage has two more kinds.

The sandbox is started by :func:`dexkit.sandbox.stack.start`, the code behind `dexkit sandbox
up`: dexkit applies the CRDs it renders for the project's Dex (``dex.image`` names it), and Dex
(``crdHandling: check``) reads the sandbox's API server with a TokenRequest token of the
rendered ServiceAccount, so every call its storage makes is authorised by exactly the Role
dexkit renders, and Dex holds no cluster-wide right.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dexkit import kube
from dexkit.config import load_config, validate_values
from dexkit.errors import OIDCError
from dexkit.oidc import flows
from dexkit.oidc.discovery import discover
from dexkit.project import render_config_file
from dexkit.render.dex import CRD_GROUP, NAME, crd_resources
from dexkit.sandbox import images, peers
from dexkit.sandbox.stack import DEX_KUBECONFIG
from tests.e2e.conftest import DexSandbox, binaries_for, new_static_project
from tests.e2e.oidc_sandbox import kubectl_run, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.needs_dex]
CLI = [sys.executable, "-m", "dexkit"]


def _kubectl_json(kubectl: Path, sandbox: DexSandbox, *args: str) -> Any:
    done = kubectl_run(kubectl, sandbox.plane, *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _names(kubectl: Path, sandbox: DexSandbox, resource: str) -> list[str]:
    listed = _kubectl_json(kubectl, sandbox, "-n", sandbox.config.namespace, "get",
                           f"{resource}.{CRD_GROUP}")
    return [item["metadata"]["name"] for item in listed["items"]]


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120,
                          check=False, env={"NO_COLOR": "1", "COLUMNS": "200",
                                            "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})


@pytest.fixture(scope="module")
def storage_sandbox(dex_build: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory,
                    peer: Any) -> Any:
    """A sandbox on kubernetes storage whose project names the Dex that runs (its local image
    name: ``dexkit.local/dex:v<version>``), so the rendered RBAC and CRDs are that Dex's."""
    which, binary = dex_build
    project = new_static_project(tmp_path_factory.mktemp(f"storage-{which}") / "project")
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    data["dex"]["image"] = images.dex_image_name(peers.peer_spec("dex", dex=which).version)
    path.write_text(render_config_file(validate_values(data)))
    version = peers.resolve_kubernetes_version(load_config(project).config.kubernetes_version)
    running = start_stack(project, binaries_for(peer, version), binary, version,
                          storage="rendered")
    config = load_config(project).config
    user = config.static_users[0].email
    password = (project / ".dexkit" / "passwords" / user).read_text().strip()
    yield DexSandbox(project, running.plane, running, user, password)
    running.stop()


def test_dex_reads_the_sandbox_as_the_rendered_service_account(
        storage_sandbox: DexSandbox) -> None:
    sandbox = storage_sandbox
    kubeconfig = sandbox.plane.layout.files / DEX_KUBECONFIG
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    dex_cfg = yaml.safe_load((sandbox.plane.layout.files / "dex.yaml").read_text())
    assert dex_cfg["storage"] == {"type": "kubernetes",
                                  "config": {"kubeConfigFile": str(kubeconfig),
                                             "crdHandling": "check"}}
    context = yaml.safe_load(kubeconfig.read_text())["contexts"][0]["context"]
    assert context["namespace"] == sandbox.config.namespace
    # Whoever holds that kubeconfig is the rendered ServiceAccount, and nothing more.
    cluster = kube.connect(kube.Target(kubeconfig))
    me = kube.who_am_i(cluster)
    assert me.username == f"system:serviceaccount:{sandbox.config.namespace}:{NAME}"
    assert not kube.can_i(cluster, "list", "secrets", sandbox.config.namespace).allowed
    assert not kube.can_i(cluster, "create", "customresourcedefinitions.apiextensions.k8s.io"
                          ).allowed
    for resource in crd_resources(sandbox.config):
        assert kube.can_i(cluster, "list", f"{resource}.{CRD_GROUP}",
                          sandbox.config.namespace).allowed


def test_dex_stores_its_objects_in_the_crds_dexkit_applied(
        storage_sandbox: DexSandbox, kubectl: Path, dexkit: Any) -> None:
    sandbox = storage_sandbox
    config = sandbox.config
    crds = _kubectl_json(kubectl, sandbox, "get", "customresourcedefinitions",
                         "--show-managed-fields")
    ours = {c["metadata"]["name"]: c for c in crds["items"] if c["spec"]["group"] == CRD_GROUP}
    assert set(ours) == {f"{r}.{CRD_GROUP}" for r in crd_resources(config)}
    # Applied by dexkit (field manager dexkit), not created by Dex.
    assert all(any(f.get("manager") == "dexkit" for f in c["metadata"]["managedFields"])
               for c in ours.values())
    assert "openid-connect-keys" in _names(kubectl, sandbox, "signingkeies")
    # A password login with offline_access leaves a refresh token and an offline session.
    before = set(_names(kubectl, sandbox, "refreshtokens"))
    login = dexkit("login", "--dir", sandbox.project, "--grant", "password")
    assert login.code == 0, login.err
    assert set(_names(kubectl, sandbox, "refreshtokens")) - before
    assert _names(kubectl, sandbox, "offlinesessionses")
    # The first leg of a browser login is an AuthRequest object until the user finishes.
    before = set(_names(kubectl, sandbox, "authrequests"))
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()) \
        .rstrip(b"=").decode()
    ca = sandbox.project / config.tls.dir / "ca.pem"
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), follow_redirects=True,
                      timeout=30) as browser:
        page = browser.get(f"{config.issuer}/auth", params={
            "client_id": config.api_server.client_id, "response_type": "code",
            "redirect_uri": "http://127.0.0.1:8000/callback", "scope": "openid email",
            "state": secrets.token_urlsafe(16), "code_challenge": challenge,
            "code_challenge_method": "S256"})
    assert page.status_code == 200 and 'name="password"' in page.text, page.text[:300]
    assert set(_names(kubectl, sandbox, "authrequests")) - before
    # Every kind of its storage is readable to Dex (its garbage collector lists them all).
    log = sandbox.plane.layout.log("dex").read_text()
    assert "forbidden" not in log and "storage is not initialized" not in log, log[-2000:]


def test_a_refresh_token_from_the_crds_gives_a_new_id_token(storage_sandbox: DexSandbox) -> None:
    sandbox = storage_sandbox
    config = sandbox.config
    ca = ssl.create_default_context(cafile=str(sandbox.project / config.tls.dir / "ca.pem"))
    common = {"client_id": config.api_server.client_id}
    first = httpx.post(f"{config.issuer}/token", verify=ca, timeout=10, data={
        **common, "grant_type": "password", "username": sandbox.user,
        "password": sandbox.password, "scope": "openid email groups offline_access"})
    assert first.status_code == 200, first.text
    refreshed = httpx.post(f"{config.issuer}/token", verify=ca, timeout=10, data={
        **common, "grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    token = refreshed.json()["id_token"]
    assert token != first.json()["id_token"]
    # The API server takes the refreshed token as the same user.
    plane = sandbox.plane
    review = httpx.post(
        f"{plane.apiserver_url}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers={"Authorization": f"Bearer {token}"}, timeout=10,
        verify=ssl.create_default_context(cafile=str(plane.layout.ca)))
    assert review.status_code == 201, review.text
    assert review.json()["status"]["userInfo"]["username"] == sandbox.user


REUSE_INTERVAL = 3.0  # what dexkit renders: expiry.refreshTokens.reuseInterval


def test_a_refresh_whose_answer_was_lost_is_answered_again(storage_sandbox: DexSandbox) -> None:
    """Dex stores the rotated refresh token, then answers; here the answer is lost on the way
    (dropped after Dex sent it, as when a Dex Pod dies mid-answer). dexkit's refresh sends the
    same token once more and Dex, within its reuse interval, answers with the token it stored:
    the session survives, and that token refreshes again."""
    sandbox = storage_sandbox
    config = sandbox.config
    ca = ssl.create_default_context(cafile=str(sandbox.project / config.tls.dir / "ca.pem"))
    client = flows.Client(config.api_server.client_id,
                          scopes=("openid", "email", "groups", "offline_access"))
    with httpx.Client(verify=ca, timeout=10) as plain:
        provider = discover(plain, config.issuer)
        login = flows.password_grant(plain, provider, client, sandbox.user, sandbox.password)
    assert login.refresh_token
    # Within the reuse interval of its last use Dex answers with the same token; past it, a
    # refresh rotates the token: the case where a lost answer loses the session.
    time.sleep(REUSE_INTERVAL + 0.5)
    dropped: list[str] = []

    class LosesTheFirstAnswer(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if not dropped:
                response.read()  # Dex answered: it has stored the successor
                response.close()
                dropped.append(response.json()["refresh_token"])
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.", request=request)
            return response

    with httpx.Client(transport=LosesTheFirstAnswer(verify=ca), timeout=10) as lossy:
        refreshed = flows.refresh(lossy, provider, client, login.refresh_token)
    assert dropped and refreshed.refresh_token == dropped[0] != login.refresh_token
    time.sleep(REUSE_INTERVAL + 0.5)
    with httpx.Client(verify=ca, timeout=10) as plain:
        again = flows.refresh(plain, provider, client, refreshed.refresh_token)
        assert again.refresh_token != refreshed.refresh_token
        # and the token the lost answer replaced is refused now, as Dex refuses any old one
        with pytest.raises(OIDCError, match="already been claimed"):
            flows.refresh(plain, provider, client, login.refresh_token)


def test_the_dex_that_runs_is_the_one_named(dex_build: tuple[str, Path]) -> None:
    which, binary = dex_build
    done = subprocess.run([str(binary), "version"], capture_output=True, text=True, check=False,
                          timeout=30)
    assert f"v{peers.peer_spec('dex', dex=which).version}" in done.stdout + done.stderr


def test_a_verb_removed_from_the_rendered_role_breaks_dex_and_doctor_names_it(
        dex_sandbox_factory: Any, kubectl: Path, dexkit: Any) -> None:
    sandbox: DexSandbox = dex_sandbox_factory(storage="rendered")
    namespace = sandbox.config.namespace
    role = _kubectl_json(kubectl, sandbox, "-n", namespace, "get", "role", NAME)
    rule = role["rules"][0]
    assert "create" in rule["verbs"]
    rule["verbs"] = [v for v in rule["verbs"] if v != "create"]
    patched = kubectl_run(kubectl, sandbox.plane, "-n", namespace, "patch", "role", NAME,
                          "--type=merge", "-p", json.dumps({"rules": role["rules"]}))
    assert patched.returncode == 0, patched.stderr
    # Dex can no longer store a login: a user's password login (offline_access, so that
    # kubectl can refresh: a refresh token and an offline session to create) fails at Dex.
    # verify asks for no refresh token (it would replace the user's: Dex keeps one per user
    # and client), so it stores nothing and passes; doctor below names the missing verb.
    login = dexkit("login", "--dir", sandbox.project, "--grant", "password")
    assert login.code == 1, login.out + login.err
    assert "login" in login.err, login.err
    dex_log = sandbox.plane.layout.log("dex").read_text()
    assert "forbidden" in dex_log and "cannot create resource" in dex_log
    # doctor names the missing permission, on the sandbox, without a deployed Dex.
    doctor = _cli("doctor", "--dir", sandbox.project, "--kubeconfig", sandbox.plane.kubeconfig,
                  "--output", "json")
    report = {r["id"]: r for r in json.loads(doctor.stdout)["results"]}
    assert doctor.returncode == 1
    rbac = report["cluster.dex-rbac"]
    assert rbac["status"] == "fail", rbac
    assert f"create authrequests.{CRD_GROUP} in {namespace}" in rbac["message"]
    assert "get " not in rbac["message"].split("may not:")[1]
    assert report["cluster.deployment"]["status"] == "skip"
