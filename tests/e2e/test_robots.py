"""Robots through the real Dex and a real API server: a CI job's own ID token exchanged at Dex
(RFC 8693), a client logging in as itself (client_credentials, Dex's main branch), and
kubectl's credential plugin allowlist (kuberc).

The CI system is a second real Dex (tests/e2e/ci_issuer.py); GitHub's token service, which is
not reachable here, is a local stand-in that hands out that Dex's tokens. kubectl is the built
peer and runs `dexkit token` from the kubeconfig `dexkit kubeconfig` wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit.config import load_config, validate_values
from dexkit.errors import OIDCError
from dexkit.oidc import flows
from dexkit.oidc.discovery import discover
from dexkit.oidc.session import client_of, http_client
from dexkit.oidc.settings import build_settings
from dexkit.oidc.tokens import unverified_claims
from dexkit.project import render_config_file
from dexkit.sandbox import controlplane
from tests.e2e.ci_issuer import (
    LIFETIME_SECONDS,
    CIIssuer,
    actions_token_service,
    start_ci_issuer,
)
from tests.e2e.conftest import KUBERNETES_VERSION, new_static_project, say
from tests.e2e.oidc_sandbox import aggregate_cluster_roles, kubectl_run, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.needs_dex]
BIN = Path(sys.executable).parent
DEXKIT = str(BIN / "dexkit")
AUDIENCE = "dexkit-ci"
NOT_INTERACTIVE = json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                              "spec": {"interactive": False}})
BINDINGS = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ci-deployers-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "oidc:deployers"}
"""


def _edit(project: Path, change: Any) -> None:
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(render_config_file(validate_values(data)))


def _env(tmp: Path, **more: str) -> dict[str, str]:
    return {"PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp), "NO_COLOR": "1",
            "DEXKIT_TOKEN_CACHE": str(tmp / "cache"), "KUBERC": "off", **more}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)


def _whoami(kubectl: Path, kubeconfig: Path, env: dict[str, str],
            context: str) -> dict[str, Any]:
    done = _run([str(kubectl), "--kubeconfig", str(kubeconfig), "--context", context, "auth",
                 "whoami", "-o", "json"], env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["status"]["userInfo"])


def _one_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The refusal: exit 1 (2 for a usage error), exactly one error line and one hint line,
    nothing on stdout."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), \
        result.stderr
    return lines[0]


@dataclass
class ExchangeBox:
    project: Path
    plane: controlplane.ControlPlane
    ci: CIIssuer


@pytest.fixture(scope="module")
def exchange_box(tmp_path_factory: pytest.TempPathFactory, dex_binary: Path, kubectl: Path,
                 control_plane_binaries: controlplane.ControlPlaneBinaries
                 ) -> Iterator[ExchangeBox]:
    """The project's Dex (v2.45.1) with a tokenExchange connector for the CI issuer, and an API
    server with dexkit's rendered flags."""
    base = tmp_path_factory.mktemp("exchange")
    started = time.monotonic()
    ci = start_ci_issuer(base / "ci", dex_binary)
    try:
        project = new_static_project(base / "project")
        (project / "ci-ca.pem").write_text(ci.ca_pem)

        def add_connector(data: dict[str, Any]) -> None:
            data["connectors"] = [{
                "type": "oidc", "id": "ci", "name": "CI jobs", "issuer": ci.issuer,
                "rootCA": "ci-ca.pem",
                "tokenExchange": {"audience": AUDIENCE, "usernameClaim": "sub",
                                  "groupClaims": ["name"]}}]

        _edit(project, add_connector)
        running = start_stack(project, control_plane_binaries, dex_binary, KUBERNETES_VERSION,
                              storage="memory", sandbox=base / "sandbox")
        try:
            aggregate_cluster_roles(kubectl, running.plane)
            bound = kubectl_run(kubectl, running.plane, "apply", "-f", "-", stdin=BINDINGS)
            assert bound.returncode == 0, bound.stderr
            say(f"token-exchange sandbox (CI issuer + Dex + API server) ready in "
                f"{time.monotonic() - started:.1f}s")
            yield ExchangeBox(project, running.plane, ci)
        finally:
            running.stop()
    finally:
        ci.stop()


def _kubeconfig(box: ExchangeBox, target: Path, *extra: str, grant: str = "token-exchange",
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = _run([DEXKIT, "kubeconfig", "--dir", str(box.project), "--kubeconfig", str(target),
                 "--grant", grant, "--context", "ci", "--cluster", "sandbox", "--server",
                 box.plane.apiserver_url, "--server-ca", str(box.plane.layout.ca), *extra],
                env or _env(target.parent))
    assert done.returncode == 0, done.stderr
    return done


def _token_args(kubeconfig: Path) -> list[str]:
    """The kubeconfig user's exec args: ['token', ...], as kubectl passes them."""
    users = yaml.safe_load(kubeconfig.read_text())["users"]
    return [str(a) for a in users[0]["user"]["exec"]["args"]]


def test_a_ci_job_token_is_exchanged_and_accepted_as_the_mapped_identity(
        exchange_box: ExchangeBox, kubectl: Path, tmp_path: Path) -> None:
    subject = tmp_path / "job-token"
    subject.write_text(exchange_box.ci.mint(AUDIENCE))
    kubeconfig = tmp_path / "kubeconfig"
    _kubeconfig(exchange_box, kubeconfig, "--subject-token-file", str(subject))
    args = _token_args(kubeconfig)
    assert args[args.index("--connector-id") + 1] == "ci"
    assert args[args.index("--subject-audience") + 1] == AUDIENCE
    started = time.monotonic()
    info = _whoami(kubectl, kubeconfig, _env(tmp_path), "ci")
    say(f"token exchange + kubectl whoami: {time.monotonic() - started:.2f}s")
    job = unverified_claims(subject.read_text())
    # The job's sub is the username (GitHub's names repository and ref); its name claim and
    # its groups are groups, with the API server's prefix.
    assert info["username"] == job["sub"]
    assert {"oidc:deployers", "oidc:name:build-and-deploy"} <= set(info["groups"])
    allowed = _run([str(kubectl), "--kubeconfig", str(kubeconfig), "--context", "ci", "auth",
                    "can-i", "list", "pods", "-n", "kube-system"], _env(tmp_path))
    assert allowed.stdout.strip() == "yes", allowed.stderr


def test_a_github_actions_job_exchanges_its_own_token(
        exchange_box: ExchangeBox, kubectl: Path, tmp_path: Path) -> None:
    """No subject flag: the job's token comes from GitHub's token service (a stand-in), asked
    for the connector's audience with the job's request token."""
    kubeconfig = tmp_path / "kubeconfig"
    _kubeconfig(exchange_box, kubeconfig)
    with actions_token_service(exchange_box.ci) as service:
        env = _env(tmp_path, ACTIONS_ID_TOKEN_REQUEST_URL=service.url,
                   ACTIONS_ID_TOKEN_REQUEST_TOKEN=service.request_token, GITHUB_ACTIONS="true")
        info = _whoami(kubectl, kubeconfig, env, "ci")
        assert service.asked == [AUDIENCE]
        assert "oidc:deployers" in info["groups"]
        # What a workflow's login step runs (the kind-ci recipe's, with token exchange).
        verified = _run([DEXKIT, "verify", "--dir", str(exchange_box.project), "--kubeconfig",
                         str(exchange_box.plane.kubeconfig), "--grant", "token-exchange",
                         "--expect-user", info["username"], "--expect-group", "oidc:deployers",
                         "--can", "list pods kube-system", "--cannot", "delete namespaces"],
                        {**env, "DEXKIT_TOKEN_CACHE": str(tmp_path / "verify-cache")})
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert service.asked == [AUDIENCE, AUDIENCE]
        # A job without 'permissions: id-token: write' has no request URL: named as such.
        no_permission = _run([DEXKIT, *_token_args(kubeconfig)],
                             {**_env(tmp_path / "other"), "GITHUB_ACTIONS": "true",
                              "KUBERNETES_EXEC_INFO": NOT_INTERACTIVE})
        assert "no subject token" in _one_error(no_permission, code=2)
        assert "give it 'permissions: id-token: write'" in no_permission.stderr
        # A wrong request token: GitHub's answer, named.
        wrong = _run([DEXKIT, *_token_args(kubeconfig)],
                     {**_env(tmp_path / "wrong"), "ACTIONS_ID_TOKEN_REQUEST_URL": service.url,
                      "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "not-the-job's",
                      "KUBERNETES_EXEC_INFO": NOT_INTERACTIVE})
        assert "answered HTTP 401" in _one_error(wrong)


def _exchange(args: list[str], subject: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`dexkit token` as kubectl runs it, with this subject token in a variable."""
    tmp.mkdir(parents=True, exist_ok=True)
    plain = [a for a in args if not a.startswith("--subject-token")]
    return _run([DEXKIT, *plain, "--subject-token-env", "JOB_TOKEN"],
                {**_env(tmp), "JOB_TOKEN": subject, "KUBERNETES_EXEC_INFO": NOT_INTERACTIVE})


def _without(args: list[str], *flags: str) -> list[str]:
    """``args`` without these options and their values."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in flags:
            skip = True
            continue
        out.append(arg)
    return out


def _project_token(box: ExchangeBox, tmp: Path) -> str:
    """An ID token of the project's own Dex: a real token, of an issuer the connector does
    not trust."""
    config = load_config(box.project).config
    user = config.static_users[0].email
    done = _run([DEXKIT, "token", "--issuer", config.issuer, "--client-id", "kubernetes",
                 "--ca-file", str(box.project / "ssl" / "ca.pem"), "--grant", "password",
                 "--username", user, "--password-file",
                 str(box.project / ".dexkit" / "passwords" / user)],
                {**_env(tmp), "KUBERNETES_EXEC_INFO": NOT_INTERACTIVE})
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["status"]["token"])


def test_a_token_of_another_audience_an_expired_one_and_a_foreign_one_are_refused(
        exchange_box: ExchangeBox, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    _kubeconfig(exchange_box, kubeconfig)
    args = _token_args(kubeconfig)
    ci = exchange_box.ci
    expiring = ci.mint(AUDIENCE)
    foreign = _project_token(exchange_box, tmp_path / "p")

    other = _one_error(_exchange(args, ci.mint("other-service"), tmp_path / "a"))
    assert "the subject token is for audience ['other-service'], not 'dexkit-ci'" in other
    untrusted = _one_error(_exchange(args, foreign, tmp_path / "b"))
    assert (f"is from issuer '{load_config(exchange_box.project).config.issuer}', which "
            f"connector 'ci' does not trust (it trusts '{ci.issuer}')") in untrusted
    wait = unverified_claims(expiring)["exp"] + 1 - time.time()
    assert 0 < wait <= LIFETIME_SECONDS + 1
    time.sleep(wait)
    expired = _one_error(_exchange(args, expiring, tmp_path / "c"))
    assert "the subject token expired" in expired

    # Dex's own verdict, without dexkit's checks (a job that goes straight to Dex's token
    # endpoint): it refuses the expired and the foreign token itself...
    settings = build_settings(args[1:], environ={})
    http = http_client(settings)
    provider = discover(http, settings.issuer)
    client = client_of(settings)
    for subject in (expiring, foreign):
        with pytest.raises(OIDCError) as refused:
            flows.token_exchange(http, provider, client, subject_token=subject,
                                 connector_id="ci")
        assert "Dex's connector 'ci' refused the CI job's token" in refused.value.message
    # ...but not a token of another audience: Dex v2.45.1 verifies exchanged tokens without an
    # audience check (connector/oidc: SkipClientIDCheck). This documents why dexkit checks it;
    # when it fails, Dex has started checking, and the README's note must change.
    tokens = flows.token_exchange(http, provider, client,
                                  subject_token=ci.mint("other-service"), connector_id="ci")
    assert unverified_claims(tokens.id_token)["aud"] == "kubernetes"
    http.close()


# --- client credentials ------------------------------------------------------------------------

ROBOT = "deploy-bot"
ROBOT_SECRET = "deploy-bot-test-secret"


def _robot_project(directory: Path, image: str) -> Path:
    project = new_static_project(directory, mode="authentication-config")

    def add_robot(data: dict[str, Any]) -> None:
        data["dex"]["image"] = image
        data["clients"].append({"id": ROBOT, "public": False, "secretName": "deploy-bot",
                                "redirectURIs": [],
                                "clientCredentials": {"groups": ["deployers"]}})

    _edit(project, add_robot)
    return project


def test_a_client_logs_in_as_itself_on_dex_main(
        tmp_path: Path, peer: Any, kubectl: Path,
        control_plane_binaries: controlplane.ControlPlaneBinaries) -> None:
    dex_main = peer("dex", dex="main")
    version = dex_main.parent.name.removeprefix("dex-")  # 2.46.0-20260806171424-ab64ed77
    project = _robot_project(tmp_path / "project", f"ghcr.io/dexidp/dex:v{version}")
    started = time.monotonic()
    running = start_stack(project, control_plane_binaries, dex_main, KUBERNETES_VERSION,
                          storage="memory", sandbox=tmp_path / "sandbox",
                          env={"DEX_CLIENT_DEPLOY_BOT_SECRET": ROBOT_SECRET})
    try:
        say(f"client-credentials sandbox (Dex main) ready in {time.monotonic() - started:.1f}s")
        aggregate_cluster_roles(kubectl, running.plane)
        bound = kubectl_run(kubectl, running.plane, "apply", "-f", "-", stdin=BINDINGS)
        assert bound.returncode == 0, bound.stderr
        secret = tmp_path / "robot-secret"
        secret.write_text(ROBOT_SECRET + "\n")
        secret.chmod(0o600)
        kubeconfig = tmp_path / "kubeconfig"
        box = ExchangeBox(project, running.plane, None)  # type: ignore[arg-type]
        _kubeconfig(box, kubeconfig, "--client-secret-file", str(secret),
                    grant="client-credentials")
        assert ROBOT_SECRET not in kubeconfig.read_text()
        args = _token_args(kubeconfig)
        assert args[args.index("--client-id") + 1] == ROBOT
        info = _whoami(kubectl, kubeconfig, _env(tmp_path), "ci")
        assert info["username"] == f"client:{ROBOT}"
        assert "oidc:deployers" in info["groups"]
        verified = _run([DEXKIT, "verify", "--dir", str(project), "--kubeconfig",
                         str(running.plane.kubeconfig), "--grant", "client-credentials",
                         "--expect-user", f"client:{ROBOT}", "--expect-group", "oidc:deployers",
                         "--can", "list pods kube-system", "--cannot", "delete namespaces"],
                        {**_env(tmp_path / "v"), "DEXKIT_CLIENT_SECRET": ROBOT_SECRET})
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # The secret on the command line is refused before anything is sent.
        on_argv = _run([DEXKIT, *_without(args, "--client-secret-file"),
                        "--oidc-client-secret", ROBOT_SECRET],
                       {**_env(tmp_path / "x"), "KUBERNETES_EXEC_INFO": NOT_INTERACTIVE})
        assert on_argv.returncode == 2 and "--oidc-client-secret puts the client secret" in \
            on_argv.stderr
        assert ROBOT_SECRET not in on_argv.stderr
    finally:
        running.stop()


def test_client_credentials_on_dex_v2_45_is_refused_naming_the_version(
        exchange_box: ExchangeBox, tmp_path: Path, dexkit: Any) -> None:
    # At render time, from dex.image...
    project = _robot_project_file(tmp_path / "p")
    refused = dexkit("render", "--dir", project)
    assert refused.code == 1
    assert "Dex 2.45.1 (dex.image ghcr.io/dexidp/dex:v2.45.1) has no client_credentials " \
        "grant" in refused.err
    # ...and at login time, from the Dex that answers (v2.45.1 here).
    config = load_config(exchange_box.project).config
    secret = tmp_path / "secret"
    secret.write_text("x")
    done = _run([DEXKIT, "token", "--issuer", config.issuer, "--client-id", "kubernetes",
                 "--ca-file", str(exchange_box.project / "ssl" / "ca.pem"),
                 "--grant", "client-credentials", "--client-secret-file", str(secret)],
                {**_env(tmp_path), "KUBERNETES_EXEC_INFO": NOT_INTERACTIVE})
    error = _one_error(done)
    assert f"Dex at {config.issuer} does not offer the client_credentials grant" in error
    assert "v2.45.1" in done.stderr.splitlines()[1]


def _robot_project_file(directory: Path) -> Path:
    """A project whose file asks for a robot on Dex v2.45.1 (written past validation)."""
    project = new_static_project(directory, mode="authentication-config")
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    data["clients"].append({"id": ROBOT, "public": False, "secretName": "deploy-bot",
                            "clientCredentials": {"groups": ["deployers"]}})
    path.write_text(yaml.safe_dump(data))
    return project


# --- kubectl's plugin allowlist (kuberc) -------------------------------------------------------


def test_kubectl_refuses_dexkit_until_kuberc_allows_it_and_dexkit_says_what_to_add(
        exchange_box: ExchangeBox, kubectl: Path, tmp_path: Path, dexkit: Any) -> None:
    kuberc = tmp_path / "kuberc"
    kuberc.write_text("apiVersion: kubectl.config.k8s.io/v1beta1\nkind: Preference\n"
                      "credentialPluginPolicy: Allowlist\n"
                      "credentialPluginAllowlist:\n- name: /bin/true\n")
    env = {**_env(tmp_path), "KUBERC": str(kuberc)}
    kubeconfig = tmp_path / "kubeconfig"
    written = _run([DEXKIT, "kubeconfig", "--dir", str(exchange_box.project), "--kubeconfig",
                    str(kubeconfig), "--grant", "password", "--context", "ci", "--cluster",
                    "sandbox", "--server", exchange_box.plane.apiserver_url, "--server-ca",
                    str(exchange_box.plane.layout.ca)], env)
    assert written.returncode == 0, written.stderr
    assert f"kubectl's kuberc {kuberc} runs only the credential plugins it lists" in \
        " ".join(written.stderr.split())
    assert "{name: dexkit}" in written.stderr
    refused = _run([str(kubectl), "--kubeconfig", str(kubeconfig), "--context", "ci", "auth",
                    "whoami"], env)
    assert refused.returncode != 0
    assert "not permitted by the credential plugin allowlist" in refused.stderr
    doctor = _run([DEXKIT, "doctor", "--dir", str(exchange_box.project), "--offline",
                   "--kubeconfig", str(kubeconfig), "-o", "json"], env)
    results = {r["id"]: r for r in json.loads(doctor.stdout)["results"]}
    assert results["local.kuberc"]["status"] == "fail", results["local.kuberc"]

    # What dexkit said to add, added: kubectl runs it, and neither complains any more.
    kuberc.write_text(kuberc.read_text() + "- name: dexkit\n")
    allowed = _run([str(kubectl), "--kubeconfig", str(kubeconfig), "--context", "ci", "auth",
                    "whoami"], env)
    assert allowed.returncode == 0, allowed.stderr
    again = _run([DEXKIT, "kubeconfig", "--dir", str(exchange_box.project), "--kubeconfig",
                  str(kubeconfig), "--grant", "password", "--context", "ci", "--cluster",
                  "sandbox"], env)
    assert "kuberc" not in again.stderr
    doctor = _run([DEXKIT, "doctor", "--dir", str(exchange_box.project), "--offline",
                   "--kubeconfig", str(kubeconfig), "-o", "json"], env)
    results = {r["id"]: r for r in json.loads(doctor.stdout)["results"]}
    assert results["local.kuberc"]["status"] == "ok", results["local.kuberc"]
