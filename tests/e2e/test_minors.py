"""Every Kubernetes minor dexkit proves (1.35, 1.36, 1.37), in both API-server modes.

For each minor, that minor's real kube-apiserver (built from ``k8s.io/kubernetes`` at its
pinned patch) starts with nothing but what dexkit renders for a project of that minor: the
``--oidc-*`` flags, or the ``--authentication-config`` file of the API version that minor
takes. A Dex token must then be accepted (SelfSubjectReview, the mapped user and groups), and
``dexkit verify`` must pass end to end. The claim- and user-validation rules are proven on
each minor by ``test_authn_rules.py``; the node runs on the default minor.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dexkit.config import load_config
from dexkit.render.apiserver import authentication_api_version
from dexkit.sandbox import stack
from tests.e2e.conftest import PROVEN_VERSIONS, Peer, binaries_for, new_static_project
from tests.e2e.oidc_sandbox import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.needs_dex]
MODES = ("flags", "authentication-config")


@pytest.fixture(params=[(v, m) for v in PROVEN_VERSIONS for m in MODES],
                ids=lambda p: f"{p[0]}-{p[1]}")
def minor_sandbox(request: pytest.FixtureRequest, tmp_path: Path, peer: Peer,
                  dex_binary: Path) -> Iterator[tuple[str, str, Path, stack.Stack]]:
    version, mode = request.param
    project = new_static_project(tmp_path / "project", mode=mode, version=version)
    running = start_stack(project, binaries_for(peer, version), dex_binary, version)
    try:
        yield version, mode, project, running
    finally:
        running.stop()


def _password_token(project: Path) -> str:
    config = load_config(project).config
    user = config.static_users[0].email
    password = (project / ".dexkit" / "passwords" / user).read_text().strip()
    ca = ssl.create_default_context(cafile=str(project / "ssl" / "ca.pem"))
    answer = httpx.post(f"{config.issuer}/token", verify=ca, timeout=10, data={
        "grant_type": "password", "username": user, "password": password,
        "client_id": config.api_server.client_id, "scope": "openid email groups"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id_token"])


def test_the_minor_accepts_a_dex_token_with_what_dexkit_renders(
        minor_sandbox: tuple[str, str, Path, stack.Stack], dexkit: Any) -> None:
    version, mode, project, running = minor_sandbox
    plane = running.plane
    ca = ssl.create_default_context(cafile=str(plane.layout.ca))
    # The API server is that minor, started with the rendered side of that mode only.
    served = httpx.get(f"{plane.apiserver_url}/version", verify=plane.admin_context(),
                       timeout=10).json()
    assert served["gitVersion"] == f"v{version}"
    oidc = [a for a in running.wired.args if a.startswith(("--oidc-", "--authentication-config"))]
    assert oidc == list(running.wired.args)
    if mode == "authentication-config":
        (path,) = [a.split("=", 1)[1] for a in oidc]
        document = yaml.safe_load(Path(path).read_text())
        minor = int(version.split(".")[1])
        assert document["apiVersion"] == authentication_api_version(minor)
    else:
        assert any(a.startswith("--oidc-issuer-url=") for a in oidc)
    # A Dex token is accepted and mapped as dexkit.yaml says.
    review = httpx.post(
        f"{plane.apiserver_url}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers={"Authorization": f"Bearer {_password_token(project)}"}, verify=ca, timeout=10)
    assert review.status_code == 201, review.text
    user = review.json()["status"]["userInfo"]
    assert user["username"] == "admin@example.com"
    assert {"oidc:team-a", "oidc:team-a/admins"} <= set(user["groups"])
    # And the whole chain, as a user proves it.
    verify = dexkit("verify", "--dir", project, "--kubeconfig", plane.kubeconfig,
                    "--expect-user", "admin@example.com", "--expect-group", "oidc:team-a")
    assert verify.code == 0, verify.err
