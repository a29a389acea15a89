"""The guide's last step, done properly, through a real Dex (issues 4 and 6).

Password grant to Dex for the static user -> ID token -> the sandbox API server (configured
only by dexkit's rendered flags or AuthenticationConfiguration) -> SelfSubjectReview reports
the username and prefixed groups the config maps; `list nodes` is 403 without a binding and
200 with one, through dexkit's client and the built kubectl; kubectl logs in through the
kubeconfig `dexkit kubeconfig` wrote and `dexkit token`; 20 parallel `dexkit token` calls on
an expired token do one refresh.

All need the Dex peer (``needs_dex``); see tests/e2e/oidc_sandbox.py for what differs from a
cluster (Dex as a process with memory storage).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dexkit.config import load_config
from dexkit.oidc.cache import TokenCache
from dexkit.oidc.options import identity_key, parse
from dexkit.sandbox import controlplane
from dexkit.verify import scopes_for
from tests.e2e.conftest import DexSandbox
from tests.e2e.oidc_sandbox import kubectl_run

pytestmark = [pytest.mark.e2e, pytest.mark.needs_dex]
USER = "admin@example.com"
NODE_READER = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: node-reader}
rules:
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: team-a-admins-read-nodes}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "oidc:team-a/admins"}
"""


@pytest.fixture
def dex_sandbox(shared_dex_sandbox: DexSandbox) -> tuple[controlplane.ControlPlane, Path]:
    return shared_dex_sandbox.plane, shared_dex_sandbox.project


def _login_token(dexkit: Any, project: Path) -> str:
    result = dexkit("login", "--dir", project, "--grant", "password", "--print-token",
                    "--output", "json")
    assert result.code == 0, result.err
    return str(json.loads(result.out)["id_token"])


def _kubectl_with_token(kubectl: Path, plane: controlplane.ControlPlane, token: str,
                        *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kubectl), "--kubeconfig", os.devnull, "--server",
                           plane.apiserver_url, "--certificate-authority",
                           str(plane.layout.ca), "--token", token, *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_password_grant_is_mapped_and_authorized_as_configured(
        dex_sandbox: tuple[controlplane.ControlPlane, Path], dexkit: Any, kubectl: Path,
        request: pytest.FixtureRequest) -> None:
    plane, project = dex_sandbox
    expect = ["--expect-user", USER, "--expect-group", "oidc:team-a",
              "--expect-group", "oidc:team-a/admins"]
    before = dexkit("verify", "--dir", project, "--kubeconfig", plane.kubeconfig, *expect,
                    "--cannot", "list nodes", "--output", "json")
    assert before.code == 0, before.out + before.err
    report = json.loads(before.out)
    assert [s["status"] for s in report["steps"]] == ["ok"] * len(report["steps"])
    token = _login_token(dexkit, project)
    assert "Forbidden" in _kubectl_with_token(kubectl, plane, token, "get", "nodes").stderr
    applied = kubectl_run(kubectl, plane, "apply", "-f", "-", stdin=NODE_READER)
    assert applied.returncode == 0, applied.stderr
    request.addfinalizer(lambda: kubectl_run(kubectl, plane, "delete", "-f", "-",
                                             stdin=NODE_READER))
    after = dexkit("verify", "--dir", project, "--kubeconfig", plane.kubeconfig, *expect,
                   "--can", "list nodes")
    assert after.code == 0, after.out + after.err
    listed = _kubectl_with_token(kubectl, plane, token, "get", "nodes")
    assert listed.returncode == 0, listed.stderr
    whoami = _kubectl_with_token(kubectl, plane, token, "auth", "whoami", "-o", "json")
    info = json.loads(whoami.stdout)["status"]["userInfo"]
    assert info["username"] == USER
    assert {"oidc:team-a", "oidc:team-a/admins"} <= set(info["groups"])


def _dexkit_script() -> str:
    return str(Path(sys.executable).with_name("dexkit"))


def _kubeconfig(project: Path, plane: controlplane.ControlPlane, target: Path) -> None:
    result = subprocess.run([_dexkit_script(), "kubeconfig", "--dir", str(project),
                             "--kubeconfig", str(target), "--grant", "password",
                             "--context", "dex", "--cluster", "sandbox",
                             "--server", plane.apiserver_url, "--server-ca",
                             str(plane.layout.ca), "--use-context"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_kubectl_logs_in_through_dexkit_token(
        dex_sandbox: tuple[controlplane.ControlPlane, Path], kubectl: Path,
        tmp_path: Path) -> None:
    plane, project = dex_sandbox
    kubeconfig = tmp_path / "kubeconfig"
    _kubeconfig(project, plane, kubeconfig)
    env = {**os.environ, "DEXKIT_TOKEN_CACHE": str(tmp_path / "cache")}
    for _ in range(2):  # the second run answers from the cache
        whoami = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "auth",
                                 "whoami", "-o", "jsonpath={.status.userInfo.username}"],
                                capture_output=True, text=True, env=env, timeout=120,
                                check=False)
        assert whoami.returncode == 0, whoami.stderr
        assert whoami.stdout == USER
    password = (project / ".dexkit/passwords" / USER).read_text().strip()
    assert password not in kubeconfig.read_text()
    cached = list((tmp_path / "cache").iterdir())
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in cached)


def test_parallel_calls_on_an_expired_token_refresh_once(
        dex_sandbox: tuple[controlplane.ControlPlane, Path], tmp_path: Path) -> None:
    _, project = dex_sandbox
    config = load_config(project).config
    cache_dir = tmp_path / "cache"
    ca = project / config.tls.dir / "ca.pem"
    args = [_dexkit_script(), "token", "--issuer", config.issuer, "--client-id",
            config.api_server.client_id, "--ca-file", str(ca), "--grant", "password",
            "--username", USER, "--password-file", str(project / ".dexkit/passwords" / USER),
            "--cache-dir", str(cache_dir)]
    for scope in scopes_for(config):
        args += ["--scope", scope]
    env = {**os.environ, "KUBERNETES_EXEC_INFO": json.dumps(
        {"apiVersion": "client.authentication.k8s.io/v1", "spec": {"interactive": False}})}
    first = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    assert first.returncode == 0, first.stderr
    cache = TokenCache(cache_dir)
    key = identity_key(parse(args[2:]))
    entry = cache.load(key)
    assert entry is not None and entry.get("refresh_token")
    cache.store(key, {**entry, "expiry": int(time.time()) + 30})  # under the minute: renew
    time.sleep(1.1)  # a refreshed token differs in iat from the first one

    def call(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, env=env, check=False)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, range(20)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    tokens = {json.loads(r.stdout)["status"]["token"] for r in results}
    assert len(tokens) == 1, "every caller got the one refreshed token"
    assert tokens != {entry["id_token"]}
    assert not any("logging in again" in r.stderr for r in results), "refresh, not a login"


def test_a_revoked_refresh_token_asks_to_log_in_again(
        dex_sandbox: tuple[controlplane.ControlPlane, Path], tmp_path: Path) -> None:
    _, project = dex_sandbox
    config = load_config(project).config
    cache_dir = tmp_path / "cache"
    scopes = scopes_for(config)
    args = [_dexkit_script(), "token", "--issuer", config.issuer, "--client-id",
            config.api_server.client_id, "--ca-file",
            str(project / config.tls.dir / "ca.pem"), "--cache-dir", str(cache_dir)]
    for scope in scopes:
        args += ["--scope", scope]
    key = identity_key(parse(args[2:]))
    TokenCache(cache_dir).store(key, {"id_token": "x.y.z", "refresh_token": "revoked-token",
                                      "expiry": int(time.time())})
    env = {**os.environ, "KUBERNETES_EXEC_INFO": json.dumps(
        {"apiVersion": "client.authentication.k8s.io/v1", "spec": {"interactive": False}})}
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=False,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "log in again" in result.stderr
    assert "revoked-token" not in result.stderr
