"""The kind harness for end-to-end tests (sandbox level 3): real kind on an engine this machine
starts (:mod:`dexkit.sandbox.engine`), node images built from the project's peers
(:mod:`dexkit.sandbox.kindnode`), and the machine checked afterwards.

Rules:
- One engine per test module (``kind_harness``): started before its first test, stopped after
  its last, and the machine compared with what it was before (:func:`kind_machine_state`): the
  e2e machine lock (tests/e2e/conftest.py) keeps node sandboxes and other runs away meanwhile.
- Node images are built on first use per Kubernetes release and cached in the engine's image
  store by the digest of their inputs; the peers a release needs are built first if missing.
- Minors: ``DEXKIT_KIND_MINORS`` (comma-separated, ``nox -s kind`` sets 1.35,1.36,1.37), else
  the default minor only (what ``.ci/run`` runs).
- A missing package or peer skips loudly, or fails with ``DEXKIT_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dexkit.sandbox import cgroups, engine, hostchanges, images, kindnode, network, peers
from tests.e2e.conftest import peer_unavailable, say
from tests.e2e.node_sandbox import machine_state

KIND_MINORS = [peers.resolve_kubernetes_version(m) for m in (
    os.environ.get("DEXKIT_KIND_MINORS") or peers.DEFAULT_KUBERNETES).split(",") if m]
DEFAULT_VERSION = peers.resolve_kubernetes_version(None)
CLUSTER = "kind"
CONTEXT = f"kind-{CLUSTER}"
NODE = f"{CLUSTER}-control-plane"


def take_the_machine(request: pytest.FixtureRequest) -> None:
    """The whole machine for the calling module (marked ``machine``): the engine, its port 32000
    and what its nodes write are the machine's. Where conftest has no ``machine_exclusive``
    (an older checkout's), its session lock already holds it."""
    with contextlib.suppress(pytest.FixtureLookupError):
        request.getfixturevalue("machine_exclusive")


def require_kind_machine() -> None:
    """Root, Debian's engine and debootstrap, or skip loudly (fail in CI)."""
    if os.geteuid() != 0:
        peer_unavailable("the kind harness needs root")
    missing = [c for c in engine.REQUIRED if shutil.which(c) is None]
    missing += [] if engine.DOCKER_CLI.is_file() else [str(engine.DOCKER_CLI)]
    missing += [] if shutil.which("debootstrap") else ["debootstrap"]
    if missing:
        peer_unavailable(f"the kind harness needs {', '.join(missing)} (apt-get install "
                         "docker.io debootstrap)")


def kind_machine_state() -> dict[str, object]:
    """The node sandbox's view of the machine plus what an engine and its nodes touch."""
    state = machine_state()
    # machine_state's processes are a node sandbox's by name; another helper's node sandbox
    # is not this harness's to judge (the e2e lock keeps them apart in one run).
    state.pop("processes", None)
    state.update({
        "docker chains": network.chains_named(engine.CHAIN_PREFIX),
        "engine links": hostchanges.engine_links(),
        "nsdelegate": hostchanges.nsdelegate_mounts(),
        "nft tables": hostchanges.nft_tables(),
        "cgroup tops": {str(h): sorted(p.name for p in h.iterdir() if p.is_dir())
                        for h in cgroups.hierarchies()},
        "engine sysctls": network.read_sysctls(engine.SYSCTLS),
        "host paths (engine)": {str(p): p.exists() for p in (
            engine.LIB_MODULES, engine.RUN_DIR, *engine.STRAY_FILES)},
        "etc hosts": Path("/etc/hosts").read_bytes(),
        # The engine's own: dockerd, and whatever runs below its containers' cgroup parent
        # (by cgroup, not by name: a node sandbox's containerd is not the engine's).
        "engine processes": engine_processes(),
        "engine cgroups": [str(p) for p in cgroups.existing(engine.CGROUP_PARENT)],
    })
    return state


def engine_processes() -> list[str]:
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
                groups = (entry / "cgroup").read_text()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # A killed container's init may wait a moment for init to reap it: a zombie runs
            # nothing and holds no cgroup (cgroup.procs no longer lists it).
            if stat[stat.rfind(")") + 2:].startswith("Z"):
                continue
            if comm == "dockerd" or f":/{engine.CGROUP_PARENT}/" in groups:
                found.append(f"{entry.name} {comm}")
    return sorted(found)


def build_release_peers(version: str) -> None:
    """Every peer a node image of ``version`` is made of, built once if missing."""
    wanted = [peers.peer_spec(n, version) for n in (
        "kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager",
        "kube-scheduler", "kube-proxy", "etcd", "coredns", "kind", "dex")]
    missing = [s for s in wanted if not peers.locate(s).available]
    if missing:
        say(f"building {', '.join(s.key for s in missing)} (cold: minutes)")
        try:
            peers.build_peers(missing, progress=say)
        except Exception as exc:  # a build failure is a missing peer, by the e2e rules
            peer_unavailable(f"building the kind harness's peers failed: {exc}")


@dataclass
class KindHarness:
    """A running engine, the kind binary, and node images built on demand."""

    engine: engine.Engine
    kind: Path
    kubectl: Path
    dex_archive: images.ImageArchive
    images: dict[str, kindnode.NodeImage] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def node_image(self, version: str) -> str:
        if version not in self.images:
            build_release_peers(version)
            started = time.monotonic()
            built = kindnode.build_node_image(self.engine, version, progress=say)
            self.images[version] = built
            self.timings[f"node image {version} ({'built' if built.built else 'cached'})"] = \
                time.monotonic() - started
            say(f"node image {built.name}: {'built' if built.built else 'cached'} in "
                f"{time.monotonic() - started:.1f}s")
        return self.images[version].name

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a test's phase into the module's timings line."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = time.monotonic() - started

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        """A user's environment for kind, docker and kubectl on this engine."""
        bin_dir = home.parent / f"{home.name}-bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for tool in (self.kind, self.kubectl):
            link = bin_dir / tool.name
            if not link.exists():
                link.symlink_to(tool)
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DEXKIT_DIR")}
        env.update(self.engine.env)
        env.update({"HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200",
                    "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", **extra})
        return env

    def run(self, argv: list[str], env: dict[str, str], *, timeout: float = 600,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=cwd)

    def create_cluster(self, config: Path | None, image: str, env: dict[str, str]) -> float:
        """``kind create cluster`` as the recipe runs it; its seconds."""
        argv = [str(self.kind), "create", "cluster", "--image", image, "--wait", "180s"]
        if config is not None:
            argv += ["--config", str(config)]
        started = time.monotonic()
        created = self.run(argv, env)
        seconds = time.monotonic() - started
        assert created.returncode == 0, created.stdout + created.stderr
        return seconds

    def delete_cluster(self, env: dict[str, str]) -> None:
        deleted = self.run([str(self.kind), "delete", "cluster", "--name", CLUSTER], env)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr

    def load_dex(self, env: dict[str, str]) -> None:
        loaded = self.run([str(self.kind), "load", "image-archive", str(self.dex_archive.path)],
                          env)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr

    def node_pid(self) -> int:
        """The node container's init, whose /proc/<pid>/root is the node's file system."""
        return int(self.engine.docker("inspect", "--format", "{{.State.Pid}}", NODE).strip())


def start_harness() -> Iterator[KindHarness]:
    """The module fixture's body: engine up, then down and the machine as it was."""
    require_kind_machine()
    build_release_peers(DEFAULT_VERSION)
    kind = peers.require_peer("kind")
    kubectl = peers.require_peer("kubectl")
    dex_archive = images.build_dex_image(images.dex_source())
    before = kind_machine_state()
    started = time.monotonic()
    running = engine.start(progress=say)
    harness = KindHarness(running, kind, kubectl, dex_archive,
                          timings={"engine start": time.monotonic() - started})
    try:
        yield harness
    finally:
        stopped = time.monotonic()
        engine.stop(progress=say)
        harness.timings["engine stop"] = time.monotonic() - stopped
        say("kind harness timings: " + ", ".join(f"{k} {v:.1f}s"
                                                 for k, v in harness.timings.items()))
        after = kind_machine_state()
        assert after == before, _difference(before, after)


def _difference(before: dict[str, object], after: dict[str, object]) -> str:
    return "the kind harness left this machine changed: " + "; ".join(
        f"{key}: {_changed(before.get(key), after.get(key))}"
        for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key))


def _changed(before: object, after: object) -> str:
    """A list's change as what came and what went (a whole mount table does not fit a line)."""
    if isinstance(before, list) and isinstance(after, list):
        came = [x for x in after if after.count(x) > before.count(x)]
        went = [x for x in before if before.count(x) > after.count(x)]
        return f"+{came!r} -{went!r}"
    return f"{before!r} -> {after!r}"


