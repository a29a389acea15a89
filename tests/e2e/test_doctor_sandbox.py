"""doctor on `dexkit sandbox up`, found without naming a cluster: Dex runs as a process there,
so the checks of a deployed Dex (Deployment, Service, TLS Secret, config Secret) step aside
with that reason; Dex's RBAC is checked, since that Dex reads the sandbox through it; the
network, API-server and token checks judge the real Dex and kube-apiserver."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dexkit.sandbox import controlplane

pytestmark = pytest.mark.e2e


def test_doctor_knows_the_sandbox(
        tmp_path: Path, control_plane_binaries: controlplane.ControlPlaneBinaries) -> None:
    env = {**os.environ, "NO_COLOR": "1", "DEXKIT_ETCD": str(control_plane_binaries.etcd),
           "DEXKIT_KUBE_APISERVER": str(control_plane_binaries.kube_apiserver)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dexkit", *args, "--dir", str(tmp_path)],
                              capture_output=True, text=True, env=env, timeout=180,
                              check=False)

    port = controlplane.free_node_port()  # the NodePort is the issuer's port: no warning
    assert run("init", "--issuer", f"https://127.0.0.1:{port}",
               "--connector", "static").returncode == 0
    up = run("sandbox", "up")
    try:
        assert up.returncode == 0, up.stderr
        doctor = run("doctor", "--login", "password", "--output", "json")
        assert "using the project's running sandbox" in doctor.stderr
        report = json.loads(doctor.stdout)
        results = {r["id"]: r for r in report["results"]}
        for check in ("cluster.deployment", "cluster.service", "cluster.tls-secret",
                      "cluster.dex-config"):
            assert results[check]["status"] == "skip", results[check]
            assert "sandbox runs Dex as a local process" in results[check]["message"]
        assert results["cluster.dex-rbac"]["status"] == "ok", results["cluster.dex-rbac"]
        for check in ("cluster.reachable", "apiserver.visible", "apiserver.mode",
                      "apiserver.oidc", "network.tcp", "network.tls", "network.discovery",
                      "network.jwks", "token.login", "token.audience", "token.review"):
            assert results[check]["status"] == "ok", results[check]
        assert report["passed"] and not report["warnings"], report
        assert doctor.returncode == 0
    finally:
        run("sandbox", "down")
