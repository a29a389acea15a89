"""Fixtures for end-to-end tests: real peers, built or found once per session.

Rules:
- A peer is found with the same rules as ``dexkit sandbox`` (environment override, then the
  cache); a missing one is built from its Go module, with the build's progress on the terminal
  (a cold build takes minutes).
- A peer that cannot be had skips the tests that need it, with the reason in the summary; with
  ``DEXKIT_REQUIRE_PEERS=1`` (set by ``.ci/run``) that is a failure instead, so CI never passes
  on skipped e2e tests.
- ``control_plane`` is one etcd + kube-apiserver for the whole session; tests that need to stop
  or break a control plane start their own with ``start_control_plane``.
- ``shared_dex_sandbox`` is one project with its sandbox and Dex (rendered kubernetes storage)
  per API-server mode for the whole session, started by the code behind ``dexkit sandbox up``;
  tests that break a sandbox get their own from ``dex_sandbox_factory``.
- Tests that log in through Dex carry ``@pytest.mark.needs_dex`` (so ``-m needs_dex`` selects
  them); a missing Dex follows the rule above like any other peer.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from dexkit.config import Config, load_config, validate_values
from dexkit.errors import DexkitError
from dexkit.sandbox import controlplane, peers, stack
from tests import machine
from tests.e2e.oidc_sandbox import start_stack

REQUIRE_PEERS = os.environ.get("DEXKIT_REQUIRE_PEERS", "") not in ("", "0")
KUBERNETES_VERSION = peers.resolve_kubernetes_version(
    os.environ.get("DEXKIT_E2E_KUBERNETES_VERSION") or None)
# Every minor dexkit proves: the API-server side runs on each (only kube-apiserver is built for
# the others); the node and everything else run on KUBERNETES_VERSION.
PROVEN_VERSIONS = [peers.resolve_kubernetes_version(minor) for minor in (
    os.environ.get("DEXKIT_E2E_MINORS") or ",".join(peers.KUBERNETES_RELEASES)).split(",")]
# Dex builds the kubernetes-storage tests run on: the release and Dex's main branch.
DEX_BUILDS = (os.environ.get("DEXKIT_E2E_DEX_BUILDS") or ",".join(peers.DEX_BUILDS)).split(",")


def peer_unavailable(reason: str) -> None:
    """Skip loudly, or fail when CI requires every peer."""
    if REQUIRE_PEERS:
        pytest.fail(f"e2e peer unavailable and DEXKIT_REQUIRE_PEERS=1: {reason}", pytrace=False)
    pytest.skip(f"E2E PEER MISSING (set DEXKIT_REQUIRE_PEERS=1 to fail instead): {reason}")


_CONFIG: list[pytest.Config] = []


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG.append(config)


def say(line: str) -> None:
    """Print past pytest's capture, on purpose: a build takes minutes and must be seen."""
    capture = _CONFIG[0].pluginmanager.getplugin("capturemanager") if _CONFIG else None
    if capture is None:
        sys.stderr.write(f"[e2e] {line}\n")
        return
    with capture.global_and_fixture_disabled():
        sys.stderr.write(f"[e2e] {line}\n")
        sys.stderr.flush()


_progress = say


MACHINE_LOCK_WAIT = machine.MACHINE_LOCK_WAIT


class MachineLock(machine.MachineLock):
    """:class:`tests.machine.MachineLock`, its waits said past pytest's capture."""

    def waiting(self, why: str) -> None:
        say(f"another dexkit e2e run holds {self.path}; waiting for it ({why})")

    def timed_out(self, message: str) -> None:
        pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def machine_exclusive(request: pytest.FixtureRequest) -> Iterator[None]:
    """The whole machine for one test module (node, engine, port 32000), released after it.

    Only such modules take the lock: level-1 sandboxes (loopback, ports the kernel hands out,
    above the NodePort range kube-proxy captures) neither change nor compare the machine, so
    they run beside a node or an engine, in this run or another. A module that takes the
    machine carries the ``machine`` marker: ``nox -s tests`` runs those in one process of their
    own, one module at a time, beside the level-1 modules."""
    if request.node.get_closest_marker("machine") is None:
        pytest.fail(f"{request.node.nodeid} takes the machine but is not marked "
                    "pytest.mark.machine (nox -s tests would run it beside another such module)",
                    pytrace=False)
    lock = MachineLock()
    lock.take(exclusive=True, why="this module needs the machine to itself")
    try:
        yield
    finally:
        lock.release()


Peer = Callable[..., Path]


@pytest.fixture(scope="session")
def peer() -> Peer:
    """``peer("kube-apiserver")`` -> the binary, built first if needed (once per session);
    ``peer("kube-apiserver", "1.35.4")`` another minor's, ``peer("dex", dex="main")`` Dex's
    main branch."""
    found: dict[tuple[str, str, str], Path] = {}
    failed: dict[tuple[str, str, str], str] = {}

    def get(name: str, version: str | None = None, *, dex: str | None = None) -> Path:
        spec = peers.peer_spec(name, version or KUBERNETES_VERSION, dex=dex)
        key = (name, spec.version, spec.module_version)
        if key in found:
            return found[key]
        if key in failed:
            peer_unavailable(failed[key])
        try:
            location = peers.locate(spec)
            if not location.available:
                _progress(f"{name} {spec.version} is not built; building it now")
                peers.build_peers([spec], progress=_progress)
                location = peers.locate(spec)
        except DexkitError as exc:
            failed[key] = f"{name} {spec.version}: {exc.message} ({exc.hint})"
            peer_unavailable(failed[key])
        found[key] = location.path
        return location.path

    return get


@pytest.fixture(scope="session")
def control_plane_binaries(peer: Peer) -> controlplane.ControlPlaneBinaries:
    return controlplane.ControlPlaneBinaries(etcd=peer("etcd"),
                                             kube_apiserver=peer("kube-apiserver"))


@pytest.fixture(scope="session")
def kubectl(peer: Peer) -> Path:
    return peer("kubectl")


@pytest.fixture(scope="session")
def control_plane(
    tmp_path_factory: pytest.TempPathFactory,
    control_plane_binaries: controlplane.ControlPlaneBinaries,
) -> Iterator[controlplane.ControlPlane]:
    """One running etcd + kube-apiserver for the session (admin kubeconfig at .kubeconfig)."""
    started = time.monotonic()
    plane = controlplane.start_control_plane(
        tmp_path_factory.mktemp("sandbox"), control_plane_binaries,
        controlplane.ControlPlaneOptions(kubernetes_version=KUBERNETES_VERSION))
    _progress(f"control plane ready in {time.monotonic() - started:.1f}s at "
              f"{plane.apiserver_url}")
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def dex_binary(peer: Peer) -> Path:
    return peer("dex")


@pytest.fixture(scope="session", params=DEX_BUILDS)
def dex_build(request: pytest.FixtureRequest, peer: Peer) -> tuple[str, Path]:
    """Each Dex the kubernetes-storage tests run on: (build key, binary)."""
    return request.param, peer("dex", dex=request.param)


def binaries_for(peer: Peer, version: str) -> controlplane.ControlPlaneBinaries:
    """etcd and another minor's kube-apiserver."""
    return controlplane.ControlPlaneBinaries(etcd=peer("etcd"),
                                             kube_apiserver=peer("kube-apiserver", version))


@dataclass(frozen=True)
class DexSandbox:
    """A project (``dexkit init --connector static``) and its running sandbox with Dex."""

    project: Path
    plane: controlplane.ControlPlane
    stack: stack.Stack
    user: str
    password: str

    @property
    def config(self) -> Config:
        return load_config(self.project).config


def new_static_project(directory: Path, *, mode: str = "flags", port: int | None = None,
                       version: str | None = None) -> Path:
    """``dexkit init --issuer https://127.0.0.1:PORT --connector static`` for the e2e minor
    (or ``version``'s)."""
    from dexkit.project import InitRequest, init_project, render_config_file

    issuer = f"https://127.0.0.1:{port or controlplane.free_ports(1)[0]}"
    init_project(InitRequest(directory=directory, issuer=issuer, connector="static"))
    path = directory / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    data["kubernetesVersion"] = ".".join((version or KUBERNETES_VERSION).split(".")[:2])
    data["apiServer"]["mode"] = mode
    path.write_text(render_config_file(validate_values(data)))
    return directory


def _dex_sandbox(directory: Path, binaries: controlplane.ControlPlaneBinaries, dex: Path,
                 mode: str, storage: stack.StorageChoice) -> DexSandbox:
    project = new_static_project(directory / "project", mode=mode)
    started = time.monotonic()
    running = start_stack(project, binaries, dex, KUBERNETES_VERSION, storage=storage)
    _progress(f"dex sandbox ({mode}, {storage} storage) ready in "
              f"{time.monotonic() - started:.1f}s")
    user = load_config(project).config.static_users[0].email
    password = (project / ".dexkit" / "passwords" / user).read_text().strip()
    return DexSandbox(project, running.plane, running, user, password)


@pytest.fixture(scope="session", params=["flags", "authentication-config"])
def shared_dex_sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                       control_plane_binaries: controlplane.ControlPlaneBinaries,
                       dex_binary: Path) -> Iterator[DexSandbox]:
    """One sandbox per API-server mode for the whole session, with Dex on the rendered
    kubernetes storage: for tests that log in and look, and undo whatever they change."""
    running = _dex_sandbox(tmp_path_factory.mktemp(f"dex-{request.param}"),
                           control_plane_binaries, dex_binary, request.param, "rendered")
    try:
        yield running
    finally:
        running.stack.stop()


@pytest.fixture
def dex_sandbox_factory(tmp_path: Path, control_plane_binaries: controlplane.ControlPlaneBinaries,
                        dex_binary: Path) -> Iterator[Callable[..., DexSandbox]]:
    """A sandbox of the test's own (to break, or to start differently); stopped afterwards."""
    made: list[DexSandbox] = []

    def make(mode: str = "flags", storage: stack.StorageChoice = "memory") -> DexSandbox:
        running = _dex_sandbox(tmp_path / f"sandbox-{len(made)}", control_plane_binaries,
                               dex_binary, mode, storage)
        made.append(running)
        return running

    yield make
    for running in made:
        running.stack.stop()
