"""One Dex, two clusters: two real API servers, each started with dexkit's rendered side for
its own cluster (its own audience), and one Dex running the rendered config.

Proven here: a token for one cluster is refused by the other and accepted by its own; one
password login gives working kubectl contexts for both (the second cluster's token comes from
the first login, with the password gone); `dexkit verify --cluster` and `dexkit doctor
--cluster` check each; `dexkit render` writes the API-server side once per cluster.
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

from dexkit import kube
from dexkit.config import load_config, validate_values
from dexkit.errors import ClusterError
from dexkit.oidc.tokens import unverified_claims
from dexkit.project import render_config_file
from dexkit.sandbox import controlplane, stack
from tests.e2e.conftest import KUBERNETES_VERSION, new_static_project, say
from tests.e2e.oidc_sandbox import dex_environment, oidc_apiserver_options

pytestmark = [pytest.mark.e2e, pytest.mark.needs_dex]
BIN = Path(sys.executable).parent
DEXKIT = str(BIN / "dexkit")
NOT_INTERACTIVE = json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                              "spec": {"interactive": False}})


@dataclass
class Fleet:
    project: Path
    planes: dict[str, controlplane.ControlPlane]
    user: str


def _edit(project: Path, change: Any) -> None:
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(render_config_file(validate_values(data)))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, dex_binary: Path,
          control_plane_binaries: controlplane.ControlPlaneBinaries) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("fleet")
    project = new_static_project(base / "project")
    _edit(project, lambda d: d.update(clusters=[{"name": "dev", "clientID": "dev"},
                                                {"name": "prod", "clientID": "prod",
                                                 "mode": "authentication-config"}]))
    config = load_config(project).config
    started = time.monotonic()
    # `dexkit sandbox up` for the dev cluster: Dex (memory storage) first, then dev's API
    # server, ready once a password login narrowed to dev is accepted there.
    dev = stack.start(stack.StackRequest(
        project=project, config=config.for_cluster("dev"), binaries=control_plane_binaries,
        kubernetes_version=KUBERNETES_VERSION, dex=dex_binary, storage="memory",
        sandbox=base / "dev", env={**os.environ, **dex_environment(config, {})}))
    try:
        prod = controlplane.start_control_plane(
            base / "prod", control_plane_binaries,
            oidc_apiserver_options(config.for_cluster("prod"), project, base / "prod",
                                   KUBERNETES_VERSION))
        try:
            planes = {"dev": dev.plane, "prod": prod}
            say(f"fleet (one Dex, two API servers) ready in {time.monotonic() - started:.1f}s")

            def where(data: dict[str, Any]) -> None:
                for cluster in data["clusters"]:
                    plane = planes[cluster["name"]]
                    cluster["server"] = plane.apiserver_url
                    cluster["certificateAuthority"] = str(plane.layout.ca)

            _edit(project, where)
            yield Fleet(project, planes, config.static_users[0].email)
        finally:
            prod.stop()
    finally:
        dev.stop()


def _env(tmp: Path) -> dict[str, str]:
    return {"PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp), "NO_COLOR": "1",
            "COLUMNS": "200", "DEXKIT_TOKEN_CACHE": str(tmp / "cache"), "KUBERC": "off"}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)


def _identity(plane: controlplane.ControlPlane, token: str) -> str:
    return kube.who_am_i(kube.connect(kube.Target(plane.kubeconfig),
                                      bearer_token=token)).username


def test_render_writes_each_clusters_side_and_one_dex(fleet: Fleet, dexkit: Any) -> None:
    done = dexkit("render", "--dir", fleet.project)
    assert done.code == 0, done.err
    out = fleet.project / "out"
    dev_flags = (out / "apiserver" / "dev" / "flags.txt").read_text()
    assert "--oidc-client-id=dev" in dev_flags
    authn = yaml.safe_load((out / "apiserver" / "prod" / "authentication-config.yaml")
                           .read_text())
    assert authn["jwt"][0]["issuer"]["audiences"] == ["prod"]
    assert (out / "kind" / "prod" / "cluster.yaml").is_file()
    assert not (out / "apiserver" / "flags.txt").exists()
    dex = yaml.safe_load(yaml.safe_load((out / "dex" / "06-config-secret.yaml").read_text())
                         ["stringData"]["config.yaml"])
    clients = {c["id"]: c for c in dex["staticClients"]}
    assert clients["dev"]["trustedPeers"] == ["kubernetes"]
    assert clients["prod"]["trustedPeers"] == ["kubernetes"]


def test_one_login_gives_both_contexts_and_each_token_is_for_its_cluster_only(
        fleet: Fleet, kubectl: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    env = _env(tmp_path)
    written = _run([DEXKIT, "kubeconfig", "--dir", str(fleet.project), "--kubeconfig",
                    str(kubeconfig), "--grant", "password"], env)
    assert written.returncode == 0, written.stderr
    contexts = {c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"]}
    assert contexts == {"dev", "prod"}

    def whoami(context: str) -> subprocess.CompletedProcess[str]:
        return _run([str(kubectl), "--kubeconfig", str(kubeconfig), "--context", context,
                     "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"], env)

    started = time.monotonic()
    first = whoami("dev")
    assert first.returncode == 0, first.stderr
    assert first.stdout == fleet.user
    say(f"fleet: first context (password login): {time.monotonic() - started:.2f}s")
    # The password goes away: prod's context must live on the login dev's context made.
    stored = fleet.project / ".dexkit" / "passwords" / fleet.user
    hidden = stored.with_name("hidden")
    stored.rename(hidden)
    try:
        started = time.monotonic()
        second = whoami("prod")
        say(f"fleet: second context (no login, narrowed): {time.monotonic() - started:.2f}s")
        assert second.returncode == 0, second.stderr
        assert second.stdout == fleet.user
    finally:
        hidden.rename(stored)

    tokens = {}
    for context in ("dev", "prod"):
        user = next(u for u in yaml.safe_load(kubeconfig.read_text())["users"]
                    if u["name"] == f"dexkit-{context}")
        printed = _run([DEXKIT, *user["user"]["exec"]["args"]],
                       {**env, "KUBERNETES_EXEC_INFO": NOT_INTERACTIVE})
        assert printed.returncode == 0, printed.stderr
        tokens[context] = json.loads(printed.stdout)["status"]["token"]
        claims = unverified_claims(tokens[context])
        assert sorted(claims["aud"]) == sorted([context, "kubernetes"])
        assert claims["azp"] == "kubernetes"
    for own, other in (("dev", "prod"), ("prod", "dev")):
        assert _identity(fleet.planes[own], tokens[own]) == fleet.user
        with pytest.raises(ClusterError) as refused:
            _identity(fleet.planes[other], tokens[own])
        assert "401" in refused.value.message


def test_verify_and_doctor_check_each_cluster(fleet: Fleet, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    env = _env(tmp_path)
    assert _run([DEXKIT, "kubeconfig", "--dir", str(fleet.project), "--kubeconfig",
                 str(kubeconfig), "--grant", "password"], env).returncode == 0
    for name in ("dev", "prod"):
        verified = _run([DEXKIT, "verify", "--dir", str(fleet.project), "--cluster", name,
                         "--kubeconfig", str(kubeconfig), "--context", name,
                         "--expect-user", fleet.user], env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "verified:" in verified.stderr
        doctor = _run([DEXKIT, "doctor", "--dir", str(fleet.project), "--cluster", name,
                       "--offline", "--kubeconfig", str(kubeconfig), "-o", "json"], env)
        results = {r["id"]: r for r in json.loads(doctor.stdout)["results"]}
        # (local.config warns that the sandbox's issuer port is not the NodePort)
        assert results["local.config"]["status"] in ("ok", "warn"), results["local.config"]
        for check in ("local.clusters", "local.kubeconfig-user", "network.discovery"):
            assert results[check]["status"] == "ok", results[check]
    # With a login, doctor proves each API server accepts its own cluster's token (and the
    # other cluster's API server refuses it).
    for name, at, verdict in (("dev", "dev", "ok"), ("prod", "prod", "ok"),
                              ("prod", "dev", "fail")):
        doctor = _run([DEXKIT, "doctor", "--dir", str(fleet.project), "--cluster", name,
                       "--kubeconfig", str(fleet.planes[at].kubeconfig), "--login", "password",
                       "-o", "json"], env)
        results = {r["id"]: r for r in json.loads(doctor.stdout)["results"]}
        assert results["token.audience"]["status"] == "ok", results["token.audience"]
        assert results["token.review"]["status"] == verdict, (name, at, results["token.review"])
    unnamed = _run([DEXKIT, "verify", "--dir", str(fleet.project), "--kubeconfig",
                    str(kubeconfig)], env)
    assert unnamed.returncode == 2
    assert "pass --cluster, one of dev, prod" in unnamed.stderr


def test_dexkit_login_once_fills_every_clusters_context(fleet: Fleet, kubectl: Path,
                                                        tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    env = _env(tmp_path)
    assert _run([DEXKIT, "kubeconfig", "--dir", str(fleet.project), "--kubeconfig",
                 str(kubeconfig), "--grant", "password"], env).returncode == 0
    logged = _run([DEXKIT, "login", "--dir", str(fleet.project), "--grant", "password"], env)
    assert logged.returncode == 0, logged.stderr
    assert "token for cluster audience 'prod' cached" in " ".join(logged.stderr.split())
    stored = fleet.project / ".dexkit" / "passwords" / fleet.user
    hidden = stored.with_name("hidden-too")
    stored.rename(hidden)  # only the cache 'dexkit login' filled can answer now
    try:
        for context in ("dev", "prod"):
            whoami = _run([str(kubectl), "--kubeconfig", str(kubeconfig), "--context", context,
                           "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
                          env)
            assert whoami.returncode == 0, whoami.stderr
            assert whoami.stdout == fleet.user
    finally:
        hidden.rename(stored)
    # logout forgets the whole login: every cluster's token and the session.
    out = _run([DEXKIT, "logout", "--dir", str(fleet.project), "--grant", "password"], env)
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "cache").glob("*.token")) == []
