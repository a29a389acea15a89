"""A real etcd + kube-apiserver on loopback: the admin sees itself in system:masters, and every
stop leaves no process behind (after a crash, and from another process, too)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dexkit.errors import DexkitError
from dexkit.sandbox import controlplane, process
from tests.e2e.conftest import say

pytestmark = pytest.mark.e2e


def kubectl_run(kubectl: Path, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def processes_mentioning(text: str) -> list[str]:
    """Live (non-zombie) processes whose command line mentions ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state = stat[stat.rfind(")") + 2:].split()[0]
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def test_admin_reaches_a_ready_api_server_as_system_masters(
        control_plane: controlplane.ControlPlane, kubectl: Path) -> None:
    readyz = kubectl_run(kubectl, control_plane.kubeconfig, "get", "--raw", "/readyz")
    assert readyz.returncode == 0, readyz.stderr
    assert readyz.stdout.strip() == "ok"

    whoami = kubectl_run(kubectl, control_plane.kubeconfig, "auth", "whoami", "-o", "json")
    assert whoami.returncode == 0, whoami.stderr
    review = json.loads(whoami.stdout)
    assert review["kind"] == "SelfSubjectReview"
    user = review["status"]["userInfo"]
    assert user["username"] == controlplane.ADMIN_USER
    assert "system:masters" in user["groups"]

    version = kubectl_run(kubectl, control_plane.kubeconfig, "version", "-o", "json")
    assert version.returncode == 0, version.stderr
    server = json.loads(version.stdout)["serverVersion"]["gitVersion"]
    assert server == f"v{control_plane.state.kubernetes_version}"  # the build's -ldflags

    # RBAC is on: an unauthenticated request is refused, not served.
    status, _ = controlplane.http_get(f"{control_plane.apiserver_url}/api/v1/namespaces",
                                      context=controlplane.tls_context(control_plane.layout.ca))
    assert status in (401, 403)


def test_start_and_stop_leave_nothing_behind(
        tmp_path: Path, control_plane_binaries: controlplane.ControlPlaneBinaries) -> None:
    directory = tmp_path / "sandbox"
    started = time.monotonic()
    plane = controlplane.start_control_plane(directory, control_plane_binaries)
    ready = time.monotonic() - started
    records = list(plane.state.processes)
    assert [r.name for r in records] == ["etcd", "kube-apiserver"]
    assert all(process.is_running(r) for r in records)
    assert (directory / controlplane.STATE_FILE).is_file()
    assert (plane.kubeconfig.stat().st_mode & 0o777) == 0o600

    started = time.monotonic()
    plane.stop()
    stopped = time.monotonic() - started
    assert not any(process.is_running(r) for r in records)
    assert processes_mentioning(str(directory)) == []
    assert not (directory / controlplane.STATE_FILE).exists()
    say(f"timing: control plane ready in {ready:.1f}s, stopped in {stopped:.1f}s")


def test_a_crashed_peer_still_stops_cleanly(
        tmp_path: Path, control_plane_binaries: controlplane.ControlPlaneBinaries) -> None:
    directory = tmp_path / "sandbox"
    plane = controlplane.start_control_plane(directory, control_plane_binaries)
    etcd = next(p for p in plane.processes if p.name == "etcd")
    os.kill(etcd.pid, signal.SIGKILL)
    etcd.popen.wait(timeout=10)
    _, report = controlplane.sandbox_status(directory)
    assert {p.name: p.running for p in report} == {"etcd": False, "kube-apiserver": True}
    plane.stop()
    assert processes_mentioning(str(directory)) == []


def test_api_server_that_cannot_start_is_reported_with_its_log(
        tmp_path: Path, control_plane_binaries: controlplane.ControlPlaneBinaries) -> None:
    directory = tmp_path / "sandbox"
    options = controlplane.ControlPlaneOptions(extra_args=("--no-such-flag=1",))
    with pytest.raises(DexkitError) as info:
        controlplane.start_control_plane(directory, control_plane_binaries, options)
    assert "kube-apiserver exited with code" in info.value.message
    assert "no-such-flag" in info.value.message  # from the log's last lines
    assert processes_mentioning(str(directory)) == []  # etcd was stopped too


@pytest.mark.parametrize("mode", ["flags", "authentication-config"])
def test_cli_up_status_down_across_processes(
        tmp_path: Path, control_plane_binaries: controlplane.ControlPlaneBinaries,
        kubectl: Path, mode: str) -> None:
    env = {**os.environ, "NO_COLOR": "1",
           "DEXKIT_ETCD": str(control_plane_binaries.etcd),
           "DEXKIT_KUBE_APISERVER": str(control_plane_binaries.kube_apiserver)}

    def dexkit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dexkit", *args, "--dir", str(tmp_path)],
                              capture_output=True, text=True, env=env, timeout=180, check=False)

    (port,) = controlplane.free_ports(1)
    init = dexkit("init", "--issuer", f"https://127.0.0.1:{port}", "--connector", "static")
    assert init.returncode == 0, init.stderr
    # Memory storage: Dex first, a 4 s start; Dex on kubernetes storage has tests of its own.
    up = dexkit("sandbox", "up", "--mode", mode, "--storage", "memory")
    directory = controlplane.sandbox_dir(tmp_path)
    try:
        assert up.returncode == 0, up.stderr
        assert "sandbox ready in" in up.stdout
        # The API server runs with what dexkit rendered for this project, and nothing by hand.
        started = (directory / "logs" / "kube-apiserver.log").read_text().splitlines()[0]
        if mode == "flags":
            assert f"--oidc-issuer-url=https://127.0.0.1:{port}" in started
            assert f"--oidc-ca-file={directory}/files/openid-ca.pem" in started
            assert "--authentication-config" not in started
        else:
            assert f"--authentication-config={directory}/files/authentication-config.yaml" \
                in started
            assert "--oidc-" not in started
        assert (directory / "files" / "openid-ca.pem").read_bytes() == \
            (tmp_path / "ssl" / "ca.pem").read_bytes()
        # The `up` process has exited; its peers run on, detached.
        status = dexkit("sandbox", "status", "-o", "json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["running"] and all(p["running"] for p in report["peers"])
        kubeconfig = Path(report["kubeconfig"])
        assert kubectl_run(kubectl, kubeconfig, "get", "--raw", "/readyz").stdout == "ok"
    finally:
        down = dexkit("sandbox", "down")
    assert down.returncode == 0, down.stderr
    assert "stopped    kube-apiserver" in down.stderr and "stopped    etcd" in down.stderr
    deadline = time.monotonic() + 15
    while processes_mentioning(str(directory)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(directory)) == []
    assert json.loads(dexkit("sandbox", "status", "-o", "json").stdout)["running"] is False
