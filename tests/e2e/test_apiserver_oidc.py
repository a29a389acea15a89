"""dexkit's rendered API-server side, proven against a real kube-apiserver and a real issuer.

Dex cannot be built on every machine (its module version must be fetched by pseudo-version),
so this test uses the other real OpenID provider at hand: a second kube-apiserver's
ServiceAccount issuer, which serves discovery and JWKS like Dex and signs RS256 tokens. The
API server under test is configured only by dexkit's rendered flags or
AuthenticationConfiguration (via ``dexkit.sandbox.wiring``), trusts the issuer through the CA
in the project's ssl/ca.pem, and must map ``sub`` with the configured prefix — or refuse a
token whose audience is not the configured client ID.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dexkit.config import parse_config
from dexkit.errors import ClusterError
from dexkit.kube import Target, connect, who_am_i
from dexkit.sandbox import controlplane, wiring
from dexkit.verify import expected_identity

pytestmark = pytest.mark.e2e
CLIENT_ID = "kubernetes"
NAMESPACE = "issuer-test"


def _kubectl(kubectl: Path, plane: controlplane.ControlPlane, *args: str) -> str:
    result = subprocess.run([str(kubectl), "--kubeconfig", str(plane.kubeconfig), *args],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def issuer(control_plane: controlplane.ControlPlane, kubectl: Path) -> controlplane.ControlPlane:
    """The session API server as an OIDC issuer: discovery open to anonymous callers."""
    _kubectl(kubectl, control_plane, "create", "clusterrolebinding", "oidc-discovery-anonymous",
             "--clusterrole=system:service-account-issuer-discovery",
             "--group=system:unauthenticated")
    _kubectl(kubectl, control_plane, "create", "namespace", NAMESPACE)
    _kubectl(kubectl, control_plane, "create", "serviceaccount", "alice", "-n", NAMESPACE)
    return control_plane


def _token(kubectl: Path, plane: controlplane.ControlPlane, audience: str) -> str:
    return _kubectl(kubectl, plane, "create", "token", "alice", "-n", NAMESPACE,
                    "--audience", audience, "--duration", "10m").strip()


def _project(tmp_path: Path, issuer: controlplane.ControlPlane, mode: str) -> Path:
    project = tmp_path / "project"
    (project / "ssl").mkdir(parents=True)
    shutil.copy(issuer.layout.ca, project / "ssl" / "ca.pem")
    (project / "dexkit.yaml").write_text(
        f"issuer: {issuer.apiserver_url}\n"
        "connectors: [{type: mockCallback}]\n"
        "apiServer:\n"
        f"  mode: {mode}\n"
        f"  clientID: {CLIENT_ID}\n"
        "  usernameClaim: sub\n"
        "  usernamePrefix: 'oidc:'\n"
        "  groupsClaim: ''\n")
    return project


@pytest.fixture(params=["flags", "authentication-config"])
def wired_plane(request: pytest.FixtureRequest, tmp_path: Path,
                issuer: controlplane.ControlPlane,
                control_plane_binaries: controlplane.ControlPlaneBinaries,
                ) -> Iterator[tuple[controlplane.ControlPlane, Path]]:
    project = _project(tmp_path, issuer, request.param)
    config = parse_config((project / "dexkit.yaml").read_text())
    sandbox = tmp_path / "sandbox"
    wired = wiring.apiserver_wiring(config, project, controlplane.SandboxLayout(sandbox).files)
    flags = [a for a in wired.args if a.startswith(("--oidc-", "--authentication-config"))]
    assert flags == list(wired.args), "the sandbox adds only what dexkit rendered"
    plane = controlplane.start_control_plane(sandbox, control_plane_binaries,
                                             controlplane.ControlPlaneOptions(
                                                 extra_args=wired.args,
                                                 extra_files=wired.files))
    try:
        yield plane, project
    finally:
        plane.stop()


def _whoami(plane: controlplane.ControlPlane, token: str, wait: float = 40.0) -> str:
    """SelfSubjectReview with the token; the authenticator retries discovery every 10 s."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return who_am_i(connect(Target(plane.kubeconfig), bearer_token=token)).username
        except ClusterError as exc:
            if "401" not in exc.message or time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_a_real_issuer_token_is_mapped_as_dexkit_promises(
        wired_plane: tuple[controlplane.ControlPlane, Path], kubectl: Path,
        issuer: controlplane.ControlPlane) -> None:
    plane, project = wired_plane
    config = parse_config((project / "dexkit.yaml").read_text())
    token = _token(kubectl, issuer, CLIENT_ID)
    username = _whoami(plane, token)
    expected, _ = expected_identity(config, {"sub": f"system:serviceaccount:{NAMESPACE}:alice"})
    assert username == expected == f"oidc:system:serviceaccount:{NAMESPACE}:alice"
    # kubectl agrees, through the same token
    out = subprocess.run([str(kubectl), "--kubeconfig", "/dev/null", "--server",
                          plane.apiserver_url, "--certificate-authority", str(plane.layout.ca),
                          "--token", token, "auth", "whoami", "-o",
                          "jsonpath={.status.userInfo.username}"],
                         capture_output=True, text=True, check=False)
    assert out.stdout == expected, out.stderr


def test_a_token_for_another_audience_is_refused(
        wired_plane: tuple[controlplane.ControlPlane, Path], kubectl: Path,
        issuer: controlplane.ControlPlane) -> None:
    plane, _ = wired_plane
    # First make sure the authenticator is up, so a 401 below is the audience, not start-up.
    _whoami(plane, _token(kubectl, issuer, CLIENT_ID))
    with pytest.raises(ClusterError, match="401"):
        who_am_i(connect(Target(plane.kubeconfig),
                         bearer_token=_token(kubectl, issuer, "example-app")))
