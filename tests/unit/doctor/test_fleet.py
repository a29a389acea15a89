"""The doctor's checks of robots, clusters and kubectl's kuberc, on projects made by dexkit
init (the real Dex, API servers and kubectl in tests/e2e/test_robots.py, test_fleet.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from dexkit.doctor.core import Context, DoctorRequest, Edges
from dexkit.kube import Target
from dexkit.kubeconfig import exec_user
from tests.unit.doctor.helpers import NOW, context, run

Project = Callable[..., Path]
MAIN = "ghcr.io/dexidp/dex:v2.46.0-20260806171424-ab64ed77"
CLUSTERS = [{"name": "dev", "clientID": "dev"}, {"name": "prod", "clientID": "prod"}]


def _kubeconfig(tmp_path: Path, users: dict[str, list[str]]) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "users": [{"name": n, "user": exec_user(a)} for n, a in users.items()]}))
    return path


def _args(audience: str) -> list[str]:
    return ["--issuer", "https://dex.example.com:32000", "--client-id", "kubernetes",
            "--scope", "openid", "--scope", "groups", "--audience", audience]


def test_each_cluster_needs_a_kubeconfig_user_for_its_audience(new_project: Project,
                                                               tmp_path: Path) -> None:
    project = new_project(clusters=CLUSTERS)
    partial = _kubeconfig(tmp_path, {"dexkit-dev": _args("dev")})
    result = run(context(project, kubeconfig=partial), "local.clusters")
    assert result.status == "warn" and "no kubeconfig user logs in for prod" in result.message
    both = _kubeconfig(tmp_path, {"dexkit-dev": _args("dev"), "dexkit-prod": _args("prod")})
    assert run(context(project, kubeconfig=both), "local.clusters").status == "ok"
    # ...and those users are the API servers' audiences, not the login client's alone.
    assert run(context(project, kubeconfig=both), "local.kubeconfig-user").status == "ok"
    wrong = _kubeconfig(tmp_path, {"dexkit": _args("dev")[:-2]})
    result = run(context(project, kubeconfig=wrong), "local.kubeconfig-user")
    assert result.status == "fail" and "'dev or prod'" in result.message


def test_with_a_cluster_the_checks_see_its_api_server(new_project: Project) -> None:
    project = new_project(clusters=CLUSTERS)
    ctx = Context(DoctorRequest(directory=project, target=Target(), offline=True,
                                cluster="prod"), Edges(clock=lambda: NOW, environ={}))
    assert ctx.config.api_server.client_id == "prod"
    assert "client 'prod'" in run(ctx, "local.config").message
    unknown = Context(DoctorRequest(directory=project, target=Target(), cluster="qa"),
                      Edges(clock=lambda: NOW, environ={}))
    result = run(unknown, "local.config")
    assert result.status == "fail" and "no cluster 'qa'" in result.message


def test_robots_are_described_and_dex_v2_45_is_warned_about(new_project: Project) -> None:
    exchange = {"type": "oidc", "id": "ci", "issuer": "https://ci.example.com",
                "tokenExchange": {"audience": "dexkit"}}
    old = run(context(new_project(connectors=[exchange])), "local.robots")
    assert old.status == "warn" and "login page" in old.message
    robot = {"id": "bot", "public": False, "secretName": "bot", "clientCredentials": {}}
    fine = run(context(new_project(connectors=[exchange], clients=[{"id": "kubernetes"}, robot],
                                   dex={"image": MAIN},
                                   apiServer={"mode": "authentication-config"})),
               "local.robots")
    assert fine.status == "ok"
    assert "connector 'ci' exchanges CI tokens of https://ci.example.com" in fine.message
    assert "client 'bot' logs in as itself" in fine.message
    assert run(context(new_project()), "local.robots").status == "skip"


def _dex(grants: list[str]) -> Callable[[Path], Any]:
    import httpx

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={
            "issuer": "https://dex.example.com:32000", "grant_types_supported": grants,
            "authorization_endpoint": "a", "token_endpoint": "t", "jwks_uri": "j"})

    return lambda _ca: httpx.Client(transport=httpx.MockTransport(handler))


def test_dex_must_offer_the_grants_the_robots_need(new_project: Project) -> None:
    robot = {"id": "bot", "public": False, "secretName": "bot", "clientCredentials": {}}
    project = new_project(clients=[{"id": "kubernetes"}, robot], dex={"image": MAIN},
                          apiServer={"mode": "authentication-config"})
    missing = run(context(project, http=_dex(["authorization_code"])), "network.grants")
    assert missing.status == "fail"
    assert "does not offer client_credentials" in missing.message and MAIN in missing.message
    assert "v2.45.1" in missing.hint
    offered = run(context(project, http=_dex(["client_credentials"])), "network.grants")
    assert offered.status == "ok"


def test_kuberc_that_blocks_dexkit_fails_when_a_user_runs_it(new_project: Project,
                                                             tmp_path: Path) -> None:
    kuberc = tmp_path / "kuberc"
    kuberc.write_text("credentialPluginPolicy: Allowlist\n"
                      "credentialPluginAllowlist:\n- name: /bin/true\n")
    kubeconfig = _kubeconfig(tmp_path, {"dexkit": _args("x")[:-2]})
    environ = {"KUBERC": str(kuberc), "PATH": "/bin:/usr/bin", "HOME": str(tmp_path)}
    ctx = context(new_project(), kubeconfig=kubeconfig, environ=environ)
    run(ctx, "local.config")  # runs first: the kubeconfig's dexkit users need it
    blocked = run(ctx, "local.kuberc")
    assert blocked.status == "fail" and "is not one of them" in blocked.message
    assert "{name: dexkit}" in blocked.hint
    kuberc.write_text("credentialPluginPolicy: AllowAll\n")
    assert run(context(new_project(), kubeconfig=kubeconfig, environ=environ),
               "local.kuberc").status == "ok"
    assert run(context(new_project(), environ={"HOME": str(tmp_path / "none")}),
               "local.kuberc").status == "skip"
