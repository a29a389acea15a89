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
- Tests that log in through Dex carry ``@pytest.mark.needs_dex`` (so ``-m needs_dex`` selects
  them); a missing Dex follows the rule above like any other peer.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dexkit.errors import DexkitError
from dexkit.sandbox import controlplane, peers

REQUIRE_PEERS = os.environ.get("DEXKIT_REQUIRE_PEERS", "") not in ("", "0")
KUBERNETES_VERSION = peers.resolve_kubernetes_version(
    os.environ.get("DEXKIT_E2E_KUBERNETES_VERSION") or None)


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


@pytest.fixture(scope="session")
def peer() -> Callable[[str], Path]:
    """``peer("kube-apiserver")`` -> the binary, built first if needed (once per session)."""
    found: dict[str, Path] = {}
    failed: dict[str, str] = {}

    def get(name: str) -> Path:
        if name in found:
            return found[name]
        if name in failed:
            peer_unavailable(failed[name])
        spec = peers.peer_spec(name, KUBERNETES_VERSION)
        try:
            location = peers.locate(spec)
            if not location.available:
                _progress(f"{name} {spec.version} is not built; building it now")
                peers.build_peers([spec], progress=_progress)
                location = peers.locate(spec)
        except DexkitError as exc:
            failed[name] = f"{name} {spec.version}: {exc.message} ({exc.hint})"
            peer_unavailable(failed[name])
        found[name] = location.path
        return location.path

    return get


@pytest.fixture(scope="session")
def control_plane_binaries(peer: Callable[[str], Path]) -> controlplane.ControlPlaneBinaries:
    return controlplane.ControlPlaneBinaries(etcd=peer("etcd"),
                                             kube_apiserver=peer("kube-apiserver"))


@pytest.fixture(scope="session")
def kubectl(peer: Callable[[str], Path]) -> Path:
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
