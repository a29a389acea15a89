"""``dexkit sandbox restart``: a peer stopped and started again with its recorded argv, its
record replaced in place, ready by its own check; refusals by name.

The "etcd" here is a small Python HTTP server answering ``/health`` as etcd does (and, given
``slow``, never ready), so these tests need no built binary; the real node restarts the real
etcd and kube-apiserver in tests/e2e/test_node_faults.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dexkit.errors import DexkitError, UsageError
from dexkit.sandbox import controlplane, process
from dexkit.sandbox.restart import restart_peer
from dexkit.sandbox.state import SandboxLayout, SandboxState

ETCD = """\
import http.server, sys, time
if len(sys.argv) > 2 and __import__("os").path.exists(sys.argv[2]):
    time.sleep(600)  # the marker file says: never become ready
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"health":"true"}')
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def _sandbox(tmp_path: Path, *, slow_marker: Path | None = None) -> SandboxState:
    """A sandbox state with a running fake etcd (after a sleeper recorded before it)."""
    layout = SandboxLayout(tmp_path / "sandbox")
    layout.logs.mkdir(parents=True)
    (port,) = controlplane.free_ports(1)
    url = f"http://127.0.0.1:{port}"
    state = SandboxState(dir=layout.dir)
    sleeper = process.start_process("sleeper", [sys.executable, "-c", "import time; "
                                                "time.sleep(600)"], layout.log("sleeper"),
                                    lambda: True)
    argv = [sys.executable, "-c", ETCD, str(port), str(slow_marker or tmp_path / "none")]
    etcd = process.start_process("etcd", argv, layout.log("etcd"),
                                 controlplane.url_ready(f"{url}/health"), timeout=30)
    state.processes = [sleeper.record, etcd.record]
    state.endpoints = {"etcd": url}
    state.save()
    return state


def _stop_all(directory: Path) -> None:
    controlplane.stop_sandbox(directory, timeout=5)


def test_restart_runs_the_same_argv_again_and_replaces_the_record_in_place(
        tmp_path: Path) -> None:
    state = _sandbox(tmp_path)
    old = state.processes[1]
    try:
        done = restart_peer(state.dir, "etcd", timeout=30, die_with_parent=True)
        after = SandboxState.load(state.dir)
        assert after is not None
        assert [r.name for r in after.processes] == ["sleeper", "etcd"]
        new = after.processes[1]
        assert new.pid == done.process.pid != old.pid
        assert new.argv == old.argv and new.log == old.log
        assert process.is_running(new) and not process.is_running(old)
        assert after.processes[0] == state.processes[0]
        assert controlplane.url_ready(f"{state.endpoints['etcd']}/health")()
        assert SandboxLayout(state.dir).log("etcd").read_text().count(
            "--- dexkit: starting etcd") == 2
    finally:
        _stop_all(state.dir)


def test_a_restart_that_never_gets_ready_is_still_recorded_for_down(tmp_path: Path) -> None:
    marker = tmp_path / "slow"
    state = _sandbox(tmp_path, slow_marker=marker)
    try:
        marker.touch()
        with pytest.raises(DexkitError, match="etcd was not ready after 2 s"):
            restart_peer(state.dir, "etcd", timeout=2, die_with_parent=True)
        # start_process stopped what it started; the record names that process, so 'down'
        # neither misses a process nor signals a stranger.
        after = SandboxState.load(state.dir)
        assert after is not None
        assert [r.name for r in after.processes] == ["sleeper", "etcd"]
        assert after.processes[1].pid != state.processes[1].pid
        assert not process.is_running(after.processes[1])
    finally:
        _stop_all(state.dir)


def test_only_peers_whose_readiness_dexkit_knows(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot restart 'kubelet'") as refused:
        restart_peer(tmp_path, "kubelet")
    assert refused.value.hint == "name one of etcd, kube-apiserver"


def test_no_sandbox_and_a_peer_that_exited_are_named(tmp_path: Path) -> None:
    with pytest.raises(DexkitError, match="no sandbox runs in"):
        restart_peer(tmp_path, "etcd")
    state = _sandbox(tmp_path)
    process.stop_record(state.processes[1], timeout=5)
    try:
        with pytest.raises(DexkitError, match=r"etcd of the sandbox in .* is not running") as gone:
            restart_peer(state.dir, "etcd")
        assert "etcd.log" in gone.value.message
        with pytest.raises(DexkitError, match="runs no kube-apiserver"):
            restart_peer(state.dir, "kube-apiserver")
    finally:
        _stop_all(state.dir)
