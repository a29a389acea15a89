"""doctor on `dexkit sandbox up`: Dex runs as a process there, so the in-cluster checks step
aside with that reason, while the API-server checks judge the sandbox's real kube-apiserver."""

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

    (port,) = controlplane.free_ports(1)
    assert run("init", "--issuer", f"https://127.0.0.1:{port}",
               "--connector", "static").returncode == 0
    up = run("sandbox", "up")
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = controlplane.sandbox_dir(tmp_path) / "admin.kubeconfig"
        doctor = run("doctor", "--kubeconfig", str(kubeconfig), "--output", "json")
        results = {r["id"]: r for r in json.loads(doctor.stdout)["results"]}
        for check in ("cluster.deployment", "cluster.service", "cluster.tls-secret",
                      "cluster.dex-config", "cluster.dex-rbac"):
            assert results[check]["status"] == "skip", results[check]
            assert "sandbox runs Dex as a local process" in results[check]["message"]
        assert results["cluster.reachable"]["status"] == "ok"
        for check in ("apiserver.visible", "apiserver.mode", "apiserver.oidc"):
            assert results[check]["status"] == "ok", results[check]
        # Dex itself is not running here (or not built): the network checks say so.
        assert results["network.tcp"]["status"] == "fail"
    finally:
        run("sandbox", "down")
