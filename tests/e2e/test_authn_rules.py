"""The whole AuthenticationConfiguration on a real kube-apiserver, with real Dex tokens, on
every Kubernetes minor dexkit proves (1.35, 1.36 and 1.37: the same file, the same answers).

One sandbox per minor (``dexkit.sandbox.stack``, the code behind ``dexkit sandbox up``): its
API server runs only the AuthenticationConfiguration dexkit renders for a dexkit.yaml that
uses every part of the v1 type: two audiences (MatchAny), CEL username and groups expressions,
uid and extra mappings, two claim rules with messages, dexkit's default userValidationRules (no
``system:`` usernames or groups), a second jwt issuer, and anonymous access for /livez only.

Dex's static users each break one rule. The API server answers a refused token with a bare
401; the rule's message is in its log, where kube-apiserver's authentication filter writes
every failure ("Unable to authenticate the request" err=...), at any verbosity. Each refusal is
asserted there, by its own message.

A second API server then runs the file `dexkit apiserver config --merge` made from a file with
another issuer and its own anonymous section, and accepts and refuses the same tokens.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dexkit import files
from dexkit.config import load_config, validate_values
from dexkit.project import complete_static_users, password_file, render_config_file
from dexkit.render.authnmerge import merge_authentication_config
from dexkit.sandbox import controlplane, stack
from tests.e2e.conftest import PROVEN_VERSIONS, Peer, binaries_for, new_static_project
from tests.e2e.oidc_sandbox import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.needs_dex]

DOMAIN_RULE = "only example.com accounts may use this cluster"
BANNED_RULE = "members of the banned group may not sign in"
USERS = [  # (email, username, groups): admin first, so the sandbox logs in as admin
    ("bob@example.org", "bob", ["team-a"]),
    ("mallory@example.com", "system:kube-scheduler", ["team-a"]),
    ("trudy@example.com", "trudy", ["system:masters"]),
    ("eve@example.com", "eve", ["banned"]),
]
API_SERVER: dict[str, Any] = {
    "mode": "authentication-config",
    "audiences": ["argocd"],
    "usernameExpression": "claims.name",
    # Groups passed through as they are: exactly what dexkit's default group rule guards.
    "groupsExpression": "claims.groups",
    "uidClaim": "sub",
    "extra": [{"key": "example.com/email", "valueExpression": "claims.email"}],
    "claimValidationRules": [
        {"expression": "claims.email.endsWith('@example.com')", "message": DOMAIN_RULE},
        {"expression": "!('banned' in claims.groups)", "message": BANNED_RULE}],
    "anonymous": {"enabled": True, "conditions": [{"path": "/livez"}]},
}


class Sandbox:
    def __init__(self, project: Path, running: stack.Stack, version: str,
                 binaries: controlplane.ControlPlaneBinaries) -> None:
        self.project, self.stack, self.plane = project, running, running.plane
        self.version, self.binaries = version, binaries
        self.config = load_config(project).config
        self.ca = ssl.create_default_context(cafile=str(project / "ssl" / "ca.pem"))

    def token(self, email: str, client: str = "kubernetes") -> str:
        """A real Dex ID token: the password grant for ``email`` as public client ``client``."""
        password = password_file(self.project, email).read_text().strip()
        response = httpx.post(f"{self.config.issuer}/token", verify=self.ca, timeout=10, data={
            "grant_type": "password", "username": email, "password": password,
            "client_id": client, "scope": "openid email profile groups"})
        assert response.status_code == 200, response.text
        return str(response.json()["id_token"])


def whoami(plane: controlplane.ControlPlane, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{plane.apiserver_url}/apis/authentication.k8s.io/v1/selfsubjectreviews",
                      json={"apiVersion": "authentication.k8s.io/v1",
                            "kind": "SelfSubjectReview"},
                      headers=headers, timeout=10,
                      verify=ssl.create_default_context(cafile=str(plane.layout.ca)))


def logged(plane: controlplane.ControlPlane, text: str, since: int = 0,
           timeout: float = 10.0) -> bool:
    """Whether the API server's log has ``text`` (after byte ``since``), polled briefly:
    klog may write the line just after the 401 is answered."""
    log = plane.layout.log("kube-apiserver")
    deadline = time.monotonic() + timeout
    while True:
        if text in log.read_bytes()[since:].decode(errors="replace"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def make_project(directory: Path, extra_issuer_port: int, version: str) -> Path:
    project = new_static_project(directory, mode="authentication-config", version=version)
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    users, passwords = complete_static_users(
        [{"email": e, "username": u, "groups": g} for e, u, g in USERS], project)
    data["staticUsers"] += users
    data["clients"] += [{"id": "argocd", "name": "Argo CD"}, {"id": "portal", "name": "Portal"}]
    data["apiServer"].update(API_SERVER)
    data["apiServer"]["extraJWT"] = [{
        "issuer": {"url": f"https://127.0.0.1:{extra_issuer_port}/ci",
                   "audiences": ["ci.example.com"]},
        "claimMappings": {"username": {"claim": "sub", "prefix": "ci:"}}}]
    for email, password in passwords.items():
        files.atomic_write(password_file(project, email), password + "\n", files.PRIVATE)
    path.write_text(render_config_file(validate_values(data)))
    return project


@pytest.fixture(scope="module", params=PROVEN_VERSIONS)
def sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            peer: Peer, dex_binary: Path) -> Iterator[Sandbox]:
    version: str = request.param
    (unused,) = controlplane.free_ports(1)
    project = make_project(tmp_path_factory.mktemp(f"authn-{version}") / "project", unused,
                           version)
    binaries = binaries_for(peer, version)
    running = start_stack(project, binaries, dex_binary, version)
    try:
        yield Sandbox(project, running, version, binaries)
    finally:
        running.stop()


def test_the_rendered_file_uses_every_part_of_the_type(sandbox: Sandbox) -> None:
    authn = yaml.safe_load((sandbox.plane.layout.files / "authentication-config.yaml")
                           .read_text())
    # v1 (GA since 1.34) on every proven minor, and the API server is that minor.
    assert authn["apiVersion"] == "apiserver.config.k8s.io/v1"
    # As the admin: anonymous requests reach /livez only here.
    served = httpx.get(f"{sandbox.plane.apiserver_url}/version",
                       verify=sandbox.plane.admin_context(), timeout=10)
    assert served.json()["gitVersion"] == f"v{sandbox.version}"
    dex, ci = authn["jwt"]
    assert dex["issuer"]["audienceMatchPolicy"] == "MatchAny"
    assert set(dex["claimMappings"]) == {"username", "groups", "uid", "extra"}
    assert len(dex["userValidationRules"]) == 2  # dexkit's defaults
    assert ci["issuer"]["url"].endswith("/ci")
    assert authn["anonymous"]["conditions"] == [{"path": "/livez"}]


def test_an_accepted_token_is_mapped_by_the_expressions(sandbox: Sandbox) -> None:
    response = whoami(sandbox.plane, sandbox.token("admin@example.com"))
    assert response.status_code == 201, response.text
    user = response.json()["status"]["userInfo"]
    assert user["username"] == "admin"  # claims.name: the static user's username
    assert {"team-a", "team-a/admins"} <= set(user["groups"])
    assert user["uid"]  # claims.sub
    assert user["extra"]["example.com/email"] == ["admin@example.com"]


def test_a_second_audience_is_accepted_and_a_third_is_not(sandbox: Sandbox) -> None:
    assert whoami(sandbox.plane, sandbox.token("admin@example.com", "argocd")).status_code == 201
    since = sandbox.plane.layout.log("kube-apiserver").stat().st_size
    refused = whoami(sandbox.plane, sandbox.token("admin@example.com", "portal"))
    assert refused.status_code == 401
    assert logged(sandbox.plane, "portal", since)  # the audience the API server did not want


@pytest.mark.parametrize(("email", "message"), [
    ("bob@example.org", DOMAIN_RULE),
    ("eve@example.com", BANNED_RULE),
    ("mallory@example.com", "username must not start with the reserved prefix system:"),
    ("trudy@example.com", "groups must not start with the reserved prefix system:"),
])
def test_each_rule_refuses_its_token_with_its_message(sandbox: Sandbox, email: str,
                                                      message: str) -> None:
    token = sandbox.token(email)
    since = sandbox.plane.layout.log("kube-apiserver").stat().st_size
    response = whoami(sandbox.plane, token)
    assert response.status_code == 401, response.text
    assert message not in response.text  # the client learns nothing...
    assert logged(sandbox.plane, message, since)  # ...the API server's log says why
    assert not logged(sandbox.plane, message + " (not this)", since, timeout=0)


def test_anonymous_is_allowed_for_livez_only(sandbox: Sandbox) -> None:
    ca = ssl.create_default_context(cafile=str(sandbox.plane.layout.ca))
    assert httpx.get(f"{sandbox.plane.apiserver_url}/livez", verify=ca).status_code == 200
    assert httpx.get(f"{sandbox.plane.apiserver_url}/api", verify=ca).status_code == 401
    assert whoami(sandbox.plane, None).status_code == 401


OTHER_FILE = """\
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
# Written by hand for the CI's own issuer; dexkit adds itself below.
jwt:
- issuer:
    url: https://127.0.0.1:{port}/other
    audiences: [other.example.com]
  claimMappings:
    username: {{claim: sub, prefix: "other:"}}
anonymous:
  enabled: false
"""


def test_a_merged_file_runs_on_a_real_api_server(sandbox: Sandbox, tmp_path: Path) -> None:
    (port,) = controlplane.free_ports(1)
    existing = OTHER_FILE.format(port=port)
    ca_pem = (sandbox.project / "ssl" / "ca.pem").read_text()
    merged = merge_authentication_config(existing, sandbox.config, ca_pem)
    assert merged.action == "added"
    assert merged.text.startswith(existing.split("anonymous:")[0])
    layout = controlplane.SandboxLayout(tmp_path)
    plane = controlplane.start_control_plane(tmp_path, sandbox.binaries,
                                             controlplane.ControlPlaneOptions(
        extra_args=(f"--authentication-config={layout.files / 'merged.yaml'}",),
        extra_files={"merged.yaml": merged.text}, kubernetes_version=sandbox.version))
    try:
        deadline = time.monotonic() + 30
        while (accepted := whoami(plane, sandbox.token("admin@example.com"))).status_code != 201:
            # The API server fetches Dex's discovery when it starts, and retries every 10 s.
            assert time.monotonic() < deadline, accepted.text
            time.sleep(0.5)
        assert accepted.json()["status"]["userInfo"]["username"] == "admin"
        since = plane.layout.log("kube-apiserver").stat().st_size
        assert whoami(plane, sandbox.token("bob@example.org")).status_code == 401
        assert logged(plane, DOMAIN_RULE, since)
        # anonymous: enabled false came from the other file, untouched.
        ca = ssl.create_default_context(cafile=str(plane.layout.ca))
        assert httpx.get(f"{plane.apiserver_url}/livez", verify=ca).status_code == 401
    finally:
        plane.stop()


def test_kubectl_sees_the_mapped_user(sandbox: Sandbox, kubectl: Path) -> None:
    token = sandbox.token("admin@example.com")
    result = subprocess.run([str(kubectl), "--kubeconfig", "/dev/null", "--server",
                             sandbox.plane.apiserver_url, "--certificate-authority",
                             str(sandbox.plane.layout.ca), "--token", token, "auth", "whoami",
                             "-o", "json"], capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)["status"]["userInfo"]
    assert info["username"] == "admin"
