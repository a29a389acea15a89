"""The node sandbox leaves this machine as it found it: after ``down``, after a crash of every
process it started, after an ``up`` that fails half-way, and when ``up`` refuses to start.

"As it found it" is :func:`tests.e2e.node_sandbox.machine_state`: interfaces, mounts, network
namespaces, every iptables and ip6tables rule, the cgroup tree, the kernel settings the kubelet
and kube-proxy write, the host directories the components create, and the node's processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dexkit.sandbox import cgroups, controlplane, network, node
from tests.e2e.conftest import KUBERNETES_VERSION
from tests.e2e.node_sandbox import (
    cli_env,
    dexkit_cli,
    init_guide_project,
    machine_state,
    node_binaries,
    require_node_machine,
    run,
    set_in_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.machine,
              pytest.mark.usefixtures("machine_exclusive")]


@pytest.fixture(scope="module")
def binaries(peer: Callable[[str], Path]) -> node.NodeBinaries:
    require_node_machine()
    return node_binaries(peer, KUBERNETES_VERSION)


def _dexkit(project: Path, env: dict[str, str], *args: str,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "dexkit", *args, "--dir", str(project)], env,
               timeout=timeout, cwd=project)


def test_down_after_every_process_was_killed_leaves_nothing(
        binaries: node.NodeBinaries, tmp_path: Path) -> None:
    project = tmp_path / "project"
    init_guide_project(project)
    env = cli_env(tmp_path / "home")
    before = machine_state()
    up = _dexkit(project, env, "sandbox", "up", "--node")
    sandbox = controlplane.sandbox_dir(project)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "node sandbox ready" in up.stdout + up.stderr
        deployed = run(dexkit_cli(project, "deploy", "--dir", str(project)), env, cwd=project)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        # A crash of everything: the recorded peers, and the pods and shims in the cgroup tree.
        state = controlplane.SandboxState.load(sandbox)
        assert state is not None
        victims = {p.pid for p in state.processes} | cgroups.pids(node.CGROUP)
        assert len(victims) > len(state.processes)  # pods and shims ran too
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(victims)
        status = _dexkit(project, env, "sandbox", "status", "--output", "json")
        assert not json.loads(status.stdout)["running"]
        assert network.kube_chains()  # what the crash left: down must clean it
    finally:
        down = _dexkit(project, env, "sandbox", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert machine_state(sandbox) == {**before, "processes": []}


def _wait_gone(pids: set[int], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() and not _zombie(pid) for pid in pids):
        assert time.monotonic() < deadline, "killed processes did not exit"
        time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].startswith("Z")


def test_an_up_that_fails_half_way_undoes_what_it_did(
        binaries: node.NodeBinaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    init_guide_project(project)
    broken = tmp_path / "kubelet"
    broken.write_text("#!/bin/sh\necho 'kubelet: refusing to start (a test)' >&2\nexit 3\n")
    broken.chmod(0o755)
    env = cli_env(tmp_path / "home", DEXKIT_KUBELET=str(broken))
    before = machine_state()
    up = _dexkit(project, env, "sandbox", "up", "--node")
    output = up.stdout + up.stderr
    assert up.returncode == 1, output
    assert "error: kubelet exited with code 3 before it was ready" in output
    assert "refusing to start (a test)" in output
    assert "Traceback" not in output
    assert machine_state(controlplane.sandbox_dir(project)) == {**before, "processes": []}
    assert not node.is_node(controlplane.sandbox_dir(project))


def test_up_refuses_a_machine_that_another_node_holds(
        binaries: node.NodeBinaries, tmp_path: Path) -> None:
    project = tmp_path / "project"
    init_guide_project(project)
    env = cli_env(tmp_path / "home")
    # Another holder of the node's interface name (this kernel has no dummy links).
    subprocess.run(["ip", "link", "add", network.BRIDGE, "type", "bridge"], check=True)
    try:
        before = machine_state()
        up = _dexkit(project, env, "sandbox", "up", "--node")
        after = machine_state()
    finally:
        subprocess.run(["ip", "link", "delete", network.BRIDGE], check=True)
    output = up.stdout + up.stderr
    assert up.returncode == 1, output
    assert f"the interface {network.BRIDGE} exists" in output
    assert "hint: stop it with 'dexkit sandbox down' in its project" in output
    assert after == before
    assert not controlplane.sandbox_dir(project).exists() or \
        not node.is_node(controlplane.sandbox_dir(project))


def test_up_refuses_a_dex_image_the_node_cannot_pull(
        binaries: node.NodeBinaries, tmp_path: Path) -> None:
    project = tmp_path / "project"
    init_guide_project(project)
    set_in_config(project, "image: dexkit.local/dex:v2.45.1", "image: ghcr.io/dexidp/dex:v2.45.1")
    env = cli_env(tmp_path / "home")
    before = machine_state()
    up = _dexkit(project, env, "sandbox", "up", "--node")
    output = up.stdout + up.stderr
    assert up.returncode == 1, output
    assert "dex.image is 'ghcr.io/dexidp/dex:v2.45.1', which this node cannot pull" in output
    assert "hint: set 'image: dexkit.local/dex:v2.45.1' under 'dex:'" in output
    assert machine_state() == before
