"""The kind harness's engine leaves this machine as it found it, even after a crash: dockerd,
its containerd and the shims killed at once while a kind node runs (its systemd, kubelet and
pods live on, orphaned), then `stop`.

"As it found it" is tests/e2e/kind_harness.kind_machine_state: interfaces, mounts, iptables and
ip6tables rules, nftables tables, cgroups, nsdelegate, kernel settings, host paths, /etc/hosts
and processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from dexkit.errors import DexkitError
from dexkit.sandbox import engine, hostchanges, network, node
from tests.e2e.kind_harness import (
    DEFAULT_VERSION,
    KindHarness,
    kind_machine_state,
    require_kind_machine,
    start_harness,
    take_the_machine,
)
from tests.unit.render.helpers import make_config

pytestmark = [pytest.mark.e2e, pytest.mark.machine]


@pytest.fixture(scope="module", autouse=True)
def the_machine(request: pytest.FixtureRequest) -> None:
    take_the_machine(request)


def test_stop_after_a_crash_of_the_engine_and_a_node_leaves_nothing(tmp_path: Path) -> None:
    before = kind_machine_state()
    harness_run = start_harness()
    harness: KindHarness = next(harness_run)
    env = harness.env(tmp_path / "home")
    harness.create_cluster(None, harness.node_image(DEFAULT_VERSION), env)
    # The node sandbox refuses a machine the engine holds, by name (and the other way round
    # below).
    with pytest.raises(DexkitError, match="a container engine runs"):
        node.preflight(make_config(), network.NodeNetwork())
    state = engine.EngineState.load(harness.engine.layout)
    assert state is not None and state.mount_ns
    # dockerd, its containerd and the shims crash; the node's own processes (systemd, kubelet,
    # pods: each container has its own mount namespace) live on, orphaned.
    victims = hostchanges.namespace_pids(state.mount_ns)
    assert len(victims) >= 3
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while hostchanges.namespace_pids(state.mount_ns):
        assert time.monotonic() < deadline, "the killed processes did not exit"
        time.sleep(0.2)
    assert "kubelet" in _names(), "the node's kubelet should outlive the engine's crash"
    assert network.chains_named(engine.CHAIN_PREFIX)  # what the crash left: stop must clean it
    with contextlib.suppress(StopIteration):
        next(harness_run)  # the harness's own teardown: stop, then the machine compared
    assert kind_machine_state() == before


def _names() -> set[str]:
    found: set[str] = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            found.add((entry / "comm").read_text().strip())
    return found


def test_start_refuses_a_machine_that_a_node_sandbox_holds() -> None:
    """The node sandbox's bridge exists: the engine refuses by name and changes nothing."""
    import subprocess

    require_kind_machine()
    subprocess.run(["ip", "link", "add", network.BRIDGE, "type", "bridge"], check=True)
    try:
        before = kind_machine_state()
        with pytest.raises(DexkitError, match="a node sandbox runs"):
            engine.start()
        after = kind_machine_state()
    finally:
        subprocess.run(["ip", "link", "delete", network.BRIDGE], check=True)
    assert after == before
