"""Security warnings: each setting that hands out more trust than meant, and the safe default."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import yaml

from dexkit.kube import ServerClock
from tests.unit.doctor.helpers import ISSUER, NOW, context, run
from tests.unit.doctor.test_cluster import FakeCluster

Project = Callable[..., Path]
EXAMPLE = "ZXhhbXBsZS1hcHAtc2VjcmV0"


def test_defaults_raise_no_warning(new_project: Project) -> None:
    ctx = context(new_project())
    for check_id in ("security.username-prefix", "security.groups-prefix",
                     "security.client-secret", "security.insecure"):
        assert run(ctx, check_id).status == "ok", check_id


def test_sub_without_prefix_warns(new_project: Project) -> None:
    result = run(context(new_project(apiServer={"usernameClaim": "sub",
                                                "usernamePrefix": "-"})),
                 "security.username-prefix")
    assert result.status == "warn" and "'sub' claim without a prefix" in result.message
    fine = run(context(new_project(apiServer={"usernameClaim": "sub"})),
               "security.username-prefix")
    assert fine.status == "ok" and f"'{ISSUER}#<sub>'" in fine.message


def test_empty_groups_prefix_warns(new_project: Project) -> None:
    result = run(context(new_project(apiServer={"groupsPrefix": ""})), "security.groups-prefix")
    assert result.status == "warn" and "system:masters" in result.message


def test_example_client_secret_in_the_environment_warns(new_project: Project) -> None:
    project = new_project(clients=[{"id": "kubernetes", "public": False,
                                    "secretName": "kubernetes-client"}])
    ctx = context(project, offline=True, environ={"DEX_CLIENT_KUBERNETES_SECRET": EXAMPLE})
    result = run(ctx, "security.client-secret")
    assert result.status == "warn"
    assert "the environment variable DEX_CLIENT_KUBERNETES_SECRET" in result.message
    ok = run(context(project, offline=True,
                     environ={"DEX_CLIENT_KUBERNETES_SECRET": "s3cr3t-random"}),
             "security.client-secret")
    assert ok.status == "ok" and "s3cr3t" not in ok.message


def _kubeconfig(path: Path, *args: str, insecure_cluster: bool = False) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "contexts": [],
        "clusters": [{"name": "c", "cluster": {"server": "https://x",
                                               "insecure-skip-tls-verify": insecure_cluster}}],
        "users": [{"name": "kl", "user": {"exec": {
            "command": "kubectl", "args": ["oidc-login", "get-token",
                                           f"--oidc-issuer-url={ISSUER}",
                                           "--oidc-client-id=kubernetes", *args]}}}]}))
    return path


def test_example_secret_on_a_kubelogin_command_line_warns(new_project: Project,
                                                          tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kc", f"--oidc-client-secret={EXAMPLE}")
    result = run(context(new_project(), kubeconfig=kubeconfig), "security.client-secret")
    assert result.status == "warn"
    assert "kubeconfig user 'kl' (--oidc-client-secret)" in result.message


def test_insecure_anywhere_warns(new_project: Project, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kc", "--insecure-skip-tls-verify",
                             insecure_cluster=True)
    project = new_project(connectors=[{"type": "ldap", "insecureNoSSL": True}], staticUsers=[])
    result = run(context(project, kubeconfig=kubeconfig), "security.insecure")
    assert result.status == "warn"
    for part in ("kubeconfig user 'kl' (--insecure-skip-tls-verify)",
                 "kubeconfig cluster 'c'", "connector 'ldap' (insecureNoSSL"):
        assert part in result.message


def test_clock_skew_beyond_a_minute_warns(new_project: Project) -> None:
    project = new_project()
    server = ServerClock("v1.34.4", NOW)
    ahead = context(project, facts={"cluster": FakeCluster(),
                                    "cluster.clock": (server, NOW + dt.timedelta(minutes=5))})
    result = run(ahead, "security.clock-skew")
    assert result.status == "warn"
    assert result.message.startswith("this machine's clock is 300 s ahead of the API server's")
    close = context(project, facts={"cluster": FakeCluster(),
                                    "cluster.clock": (server, NOW - dt.timedelta(seconds=20))})
    assert run(close, "security.clock-skew").status == "ok"
