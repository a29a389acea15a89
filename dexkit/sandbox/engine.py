"""The kind harness's container engine (sandbox level 3): Debian's dockerd, started by hand.

Real kind needs a container engine. On a developer's laptop or a GitHub runner one is there; on
this project's machines there is none, so the harness starts Debian's ``docker.io`` with every
piece of state under directories it owns, and puts the machine back as it was afterwards.

Rules, in the order ``start`` acts:

1. Preflight, before anything changes: root; Debian's dockerd, containerd, runc and docker CLI;
   no other engine of ours (:data:`RUN_DIR`), no ``docker0``, no ``DOCKER`` chain, no node
   sandbox (its bridge or its run directory: the two take the same machine-wide things, and
   each refuses the other by name), no route overlapping :data:`ENGINE_RANGE`.
2. ``engine.json`` (in the cache) records what ``stop`` must put back before it is changed:
   kernel settings, host paths that did not exist, the cgroup directories and the cgroup2
   ``nsdelegate`` option as they were. ``stop`` from any process undoes what ``start`` got to.
3. The machine is prepared only where kind needs it: kind always bind-mounts ``/lib/modules``
   (created empty when absent); on cgroup v1 every controller the kernel enables but nobody
   mounted (here hugetlb, net_cls/net_prio, perf_event) is mounted, because runc gives a
   container only the hierarchies its engine sees and a kind node's kubelet checks all of them;
   when the machine's root lacks CAP_SYS_RESOURCE, a runc wrapper that drops it from every
   container and exec becomes the default runtime (``--privileged`` asks for every capability).
4. dockerd runs in a private mount namespace, and the extra cgroup hierarchies are mounted there
   only: the machine's mount table never shows them, and every mount the engine makes
   (overlays, network namespaces) vanishes with its last process, however it ends.
5. Traffic stays on the machine: no default bridge (``docker0`` would only add rules that
   outlive the engine), every network inside :data:`ENGINE_RANGE`, no IP forwarding or
   masquerading, no userland proxy, a ``DOCKER-USER`` rule that drops anything forwarded
   outside the range, and the containers' DNS pointed at the kind bridge's own address, where
   nothing answers. kind's network is created here, inside the range, so kind reuses it.
6. ``stop`` removes every container, volume and network, stops dockerd, kills what is left in
   its namespace and below its containers' cgroup parent (``/dexkit-kind``: after a crash of
   dockerd the nodes live on, each in its own namespace), unmounts what it mounted (after
   removing the nodes' leftover cgroups there), deletes the bridges, every ``DOCKER`` chain and
   every rule naming its bridges (IPv4 and IPv6) and the nftables tables iptables created for
   them, clears ``nsdelegate`` if a node's systemd set it (a raw ``mount(2)`` remount: ``mount
   -o remount`` keeps it), removes the cgroup directories and host paths it created, writes
   back the kernel settings a node's kubelet changed (a privileged node writes the machine's
   ``/proc/sys``), then checks that nothing is left (:func:`leftovers`). How each of those is
   seen and undone is in :mod:`dexkit.sandbox.hostchanges`. The image store under the cache is
   kept: it is the node-image cache (what a crash left in it, containers, volumes and networks
   the dead dockerd could not remove, is removed by the next ``start``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dexkit import files
from dexkit.errors import DexkitError
from dexkit.sandbox import cgroups, hostchanges, network, node, peers
from dexkit.sandbox.process import (
    ManagedProcess,
    ProcessRecord,
    is_running,
    start_process,
    start_ticks,
)
from dexkit.sandbox.state import load_json

# Sockets, pid file, exec root: short fixed paths (a unix socket path has at most 107 bytes).
RUN_DIR = node.KIND_ENGINE_RUN_DIR
STATE_FILE = "engine.json"
ENGINE_RANGE = "10.214.0.0/15"
DOCKER0 = hostchanges.DOCKER0
ADDRESS_POOL = "10.214.0.0/16"
CHAIN_PREFIX = "DOCKER"
# kind's network, created before kind runs so that kind reuses it (and never makes its IPv6 ULA
# network): its own bridge name, inside the range, no masquerading.
# Every container's cgroup is below /dexkit-kind (in each hierarchy): what stop kills.
CGROUP_PARENT = "dexkit-kind"
KIND_NETWORK = "kind"
KIND_BRIDGE = hostchanges.KIND_BRIDGE
KIND_SUBNET = "10.215.1.0/24"
KIND_GATEWAY = "10.215.1.1"
DOCKER_CLI = Path("/usr/bin/docker")
REQUIRED = ("dockerd", "containerd", "containerd-shim-runc-v2", "runc", "iptables",
            "ip6tables", "iptables-save", "ip", "unshare", "nsenter", "mount", "umount")
PACKAGES_HINT = "install Debian's engine: apt-get install docker.io iptables"
LIB_MODULES = Path("/lib/modules")
CGROUP_ROOT = hostchanges.CGROUP_ROOT
# Written by dockerd outside its data and exec roots (docker 20.10: the daemon's trust key).
STRAY_FILES = (Path("/etc/docker/key.json"), Path("/run/docker"), Path("/var/run/docker"))
# What a kind node's kubelet writes to the machine's /proc/sys (a privileged container's
# /proc/sys is the machine's for every setting that is not per network namespace), and what
# docker's bridge driver writes.
SYSCTLS = (*network.SYSCTLS, "net/bridge/bridge-nf-call-iptables",
           "net/bridge/bridge-nf-call-ip6tables", "net/ipv4/conf/all/route_localnet",
           "fs/inotify/max_user_watches", "fs/inotify/max_user_instances")
Progress = Callable[[str], None]


# --- layout and state -----------------------------------------------------------------------


@dataclass(frozen=True)
class EngineLayout:
    """The engine's files: state and images under the cache, sockets under :data:`RUN_DIR`."""

    cache: Path
    run: Path = RUN_DIR

    @classmethod
    def default(cls) -> EngineLayout:
        return cls(peers.cache_root() / "kind")

    @property
    def data_root(self) -> Path:
        return self.cache / "docker"

    @property
    def state(self) -> Path:
        return self.cache / STATE_FILE

    @property
    def log(self) -> Path:
        return self.cache / "logs" / "dockerd.log"

    @property
    def exec_root(self) -> Path:
        return self.run / "exec"

    @property
    def socket(self) -> Path:
        return self.run / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.run / "dockerd.pid"

    @property
    def bin(self) -> Path:
        return self.run / "bin"

    @property
    def wrapper(self) -> Path:
        return self.bin / "runc-nosysres"

    @property
    def docker_config(self) -> Path:
        return self.run / "docker-config"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"


@dataclass
class EngineState:
    """What ``stop`` must undo, written before each change (module rule 2)."""

    process: dict[str, object] = field(default_factory=dict)  # the ProcessRecord of dockerd
    mount_ns: str = ""  # mnt:[inode] of dockerd's namespace
    run_dir: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)  # paths that did not exist before start
    cgroup_mounts: list[str] = field(default_factory=list)  # mounted in the engine's namespace
    cgroup_tops: dict[str, list[str]] = field(default_factory=dict)  # hierarchy -> entries
    nsdelegate: list[str] = field(default_factory=list)  # cgroup2 mounts that had it before
    nft_tables: list[str] | None = None  # "ip filter", ... before start (None: no nft)
    wrapper: bool = False

    def save(self, layout: EngineLayout) -> None:
        files.ensure_dir(layout.cache, 0o755)
        files.atomic_write(layout.state, json.dumps(asdict(self), indent=2, sort_keys=True)
                           + "\n", files.PRIVATE)

    @classmethod
    def load(cls, layout: EngineLayout) -> EngineState | None:
        data = load_json(layout.state, "it records what the kind harness changed on this "
                         "machine; see dexkit/sandbox/engine.py and undo it by hand")
        if data is None:
            return None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def record(self) -> ProcessRecord | None:
        return ProcessRecord.from_json(self.process) if self.process else None


# --- what the machine offers ----------------------------------------------------------------


# --- preflight ------------------------------------------------------------------------------


def preflight(layout: EngineLayout, *, euid: int | None = None) -> None:
    """Refuse, before anything changes, what would fail or touch someone else's state."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise DexkitError("the kind harness needs root: it starts a container engine, which "
                          "creates bridges, iptables rules and cgroups",
                          "run it as root (sudo -E)")
    missing = [c for c in REQUIRED if shutil.which(c) is None]
    if not DOCKER_CLI.is_file():
        missing.append(str(DOCKER_CLI))
    if missing:
        raise DexkitError(f"the kind harness needs {', '.join(missing)}", PACKAGES_HINT)
    problems = holders(layout)
    if problems:
        raise DexkitError("another container engine, kind harness or node sandbox holds this "
                          "machine: " + "; ".join(problems),
                          "stop it first: the kind harness with its own stop "
                          "(dexkit.sandbox.engine.stop), a node sandbox with 'dexkit sandbox "
                          "down' in its project; only one of them runs per machine")
    overlaps = network.overlapping_routes(ENGINE_RANGE)
    if overlaps:
        raise DexkitError(f"routes overlap {ENGINE_RANGE}, the engine's addresses: "
                          + "; ".join(overlaps), "remove them, or stop what made them")


def holders(layout: EngineLayout) -> list[str]:
    """What already holds the machine-wide things the engine takes, each as a phrase."""
    found: list[str] = []
    if layout.run.exists():
        found.append(f"{layout.run} exists (a kind harness engine runs, or was not stopped)")
    if layout.state.is_file():
        found.append(f"{layout.state} records an engine that was not stopped")
    for link in (DOCKER0, KIND_BRIDGE):
        if network.link_exists(link):
            found.append(f"the interface {link} exists")
    if cgroups.existing(CGROUP_PARENT):
        found.append(f"the cgroup /{CGROUP_PARENT} exists (the engine's containers' parent)")
    docker_chains = network.chains_named(CHAIN_PREFIX)
    if docker_chains:
        found.append(f"iptables has DOCKER chains ({', '.join(docker_chains)}): a Docker "
                     "engine runs")
    if network.link_exists(network.BRIDGE) or node.RUN_DIR.exists():
        found.append(f"a node sandbox runs ({network.BRIDGE} or {node.RUN_DIR} exists)")
    chains = network.kube_chains()
    if chains:
        found.append(f"iptables has KUBE- chains ({', '.join(chains)}): a Kubernetes node runs")
    return found


# --- start ----------------------------------------------------------------------------------


@dataclass
class Engine:
    """A running engine: what the harness and the tests need to drive it."""

    layout: EngineLayout
    state: EngineState
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The variables that point docker (and kind through it) at this engine."""
        return engine_env(self.layout)

    def docker(self, *args: str, timeout: float = 300, check: bool = True,
               input_bytes: bytes | None = None) -> str:
        return docker(self.layout, *args, timeout=timeout, check=check, input_bytes=input_bytes)

    def stop(self) -> None:
        stop(self.layout)


def engine_env(layout: EngineLayout) -> dict[str, str]:
    # DOCKER_BUILDKIT=0: Debian's docker 20.10 builds with its classic builder, which needs
    # no BuildKit daemon state (the harness's builds only COPY).
    return {"DOCKER_HOST": layout.host, "DOCKER_CONFIG": str(layout.docker_config),
            "DOCKER_BUILDKIT": "0",
            "PATH": f"{layout.bin}{os.pathsep}{os.environ.get('PATH', '')}"}


def docker(layout: EngineLayout, *args: str, timeout: float = 300, check: bool = True,
           input_bytes: bytes | None = None) -> str:
    """Run Debian's docker CLI against the engine; its stdout."""
    env = {**os.environ, **engine_env(layout)}
    result = subprocess.run([str(DOCKER_CLI), *args], env=env, capture_output=True,
                            input=input_bytes, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise DexkitError(f"'docker {' '.join(args)}' failed: "
                          f"{result.stderr.decode(errors='replace').strip()}",
                          f"the engine's log is {layout.log}")
    return result.stdout.decode(errors="replace")


def start(layout: EngineLayout | None = None, progress: Progress | None = None, *,
          clock: Callable[[], float] = time.monotonic) -> Engine:
    """Start the engine by the module's rules; undo all of it if a step fails."""
    layout = layout or EngineLayout.default()
    say = progress or (lambda _line: None)
    preflight(layout)
    started = clock()
    state = EngineState(
        sysctls=network.read_sysctls(SYSCTLS),
        absent=[str(p) for p in (LIB_MODULES, *STRAY_FILES) if not p.exists()],
        cgroup_tops=hostchanges.cgroup_tops(), nsdelegate=hostchanges.nsdelegate_mounts(),
        nft_tables=hostchanges.nft_tables(), wrapper=hostchanges.lacks_cap_sys_resource())
    state.save(layout)
    engine = Engine(layout, state)
    try:
        _start(engine, say)
    except BaseException as exc:
        try:
            stop(layout)
        except DexkitError as cleanup:
            raise DexkitError(f"{getattr(exc, 'message', exc)}; then undoing the start failed "
                              f"too: {cleanup.message}", cleanup.hint) from exc
        raise
    engine.timings["engine"] = clock() - started
    say(f"engine ready in {engine.timings['engine']:.1f}s ({layout.host})")
    return engine


def _start(engine: Engine, say: Progress) -> None:
    layout, state = engine.layout, engine.state
    files.ensure_dir(layout.run, 0o711)
    state.run_dir = str(layout.run)
    state.save(layout)
    files.ensure_dir(layout.bin, 0o755)
    files.ensure_dir(layout.docker_config, 0o700)
    (layout.bin / "docker").symlink_to(DOCKER_CLI)
    if state.wrapper:
        files.atomic_write(layout.wrapper, hostchanges.runc_wrapper(), 0o755)
        say("this machine's root lacks CAP_SYS_RESOURCE: containers run through a runc "
            "wrapper that drops it")
    if not LIB_MODULES.exists():
        LIB_MODULES.mkdir(mode=0o755)
    controllers = hostchanges.unmounted_controllers()
    points = [str(CGROUP_ROOT / c) for c in controllers]
    for point in points:
        if not Path(point).exists():
            state.absent.append(point)
    state.cgroup_mounts = points
    state.save(layout)
    if controllers:
        say(f"cgroup v1: mounting {', '.join(controllers)} for the engine's containers")
    files.ensure_dir(layout.data_root, 0o710)
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            _namespace_script(controllers), "dockerd", *dockerd_argv(layout, state.wrapper)]

    def record(process: ManagedProcess) -> None:
        pid = process.pid
        state.process = ProcessRecord(name="dockerd", pid=pid, start_ticks=start_ticks(pid),
                                      argv=tuple(argv), log=str(layout.log)).to_json()
        state.save(layout)

    dockerd = start_process("dockerd", argv, layout.log, lambda: ping(layout.socket),
                            timeout=60, on_started=record)
    # Read only now: dockerd answers, so unshare(2) has happened. Read at once after fork, it
    # would be this machine's own namespace, and stop would kill every process in it.
    state.mount_ns = hostchanges.private_namespace(dockerd.pid)
    state.save(layout)
    # What a crashed run left in the engine's own store (containers, volumes, networks: a
    # stop without dockerd cannot remove them) is garbage: start from an empty engine.
    _empty(layout)
    docker(layout, "network", "create", "--driver", "bridge", "--subnet", KIND_SUBNET,
           "--gateway", KIND_GATEWAY,
           "-o", f"com.docker.network.bridge.name={KIND_BRIDGE}",
           "-o", "com.docker.network.bridge.enable_ip_masquerade=false", KIND_NETWORK)
    # Anything the engine would forward outside its own range is dropped (forwarding is off
    # too: belt and braces); DOCKER-USER is consulted first for every forwarded packet.
    network.run(["iptables", "-w", "-I", "DOCKER-USER", "!", "-d", ENGINE_RANGE, "-j", "DROP"],
                what="keeping the engine's traffic on this machine")


def _namespace_script(controllers: Sequence[str]) -> str:
    """In the private namespace: mount the missing controllers, then exec dockerd."""
    lines = ["set -e"]
    for controller in controllers:
        point = CGROUP_ROOT / controller
        lines.append(f"mkdir -p '{point}' && mount -t cgroup -o {controller} cgroup '{point}'")
    lines.append('exec "$0" "$@"')
    return "\n".join(lines)


def dockerd_argv(layout: EngineLayout, wrapper: bool) -> list[str]:
    argv = [f"--data-root={layout.data_root}", f"--exec-root={layout.exec_root}",
            f"--host={layout.host}", f"--pidfile={layout.pidfile}",
            "--bridge=none", f"--default-address-pool=base={ADDRESS_POOL},size=24",
            "--ip-forward=false", "--ip-masq=false", "--userland-proxy=false",
            "--iptables=true", "--ip6tables=false",
            f"--dns={KIND_GATEWAY}",
            "--storage-driver=overlay2", "--log-driver=json-file",
            "--exec-opt=native.cgroupdriver=cgroupfs", f"--cgroup-parent=/{CGROUP_PARENT}"]
    if wrapper:
        argv += [f"--add-runtime=nosysres={layout.wrapper}", "--default-runtime=nosysres"]
    return argv


def ping(sock: Path) -> bool:
    """dockerd answers ``GET /_ping`` on its socket."""
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        client.connect(str(sock))
        client.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = client.recv(4096)
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0] + b" "


# --- stop -----------------------------------------------------------------------------------


def stop(layout: EngineLayout | None = None, progress: Progress | None = None) -> None:
    """Undo what ``engine.json`` records (module rule 6); raise if anything is left."""
    layout = layout or EngineLayout.default()
    say = progress or (lambda _line: None)
    state = EngineState.load(layout)
    if state is None:
        return
    problems: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except (DexkitError, OSError, subprocess.SubprocessError) as exc:
            problems.append(f"{what}: {getattr(exc, 'message', exc)}")

    record = state.record
    if record is not None and is_running(record):
        attempt("removing the containers, volumes and networks", lambda: _empty(layout))
        if state.cgroup_mounts:
            attempt("unmounting the engine's cgroup hierarchies",
                    lambda: _unmount_in(record.pid, state.cgroup_mounts))
        attempt("stopping dockerd", lambda: _stop_dockerd(record))
    if state.mount_ns:
        attempt("killing what is left in the engine's namespace",
                lambda: hostchanges.kill_namespace(state.mount_ns))
    attempt("deleting the engine's bridges", hostchanges.delete_links)
    attempt("deleting the DOCKER chains", lambda: network.remove_chains(CHAIN_PREFIX))
    attempt("deleting rules that name the engine's bridges", hostchanges.remove_bridge_rules)
    if state.nft_tables is not None:
        attempt("deleting the nftables tables iptables created",
                lambda: hostchanges.remove_new_nft_tables(state.nft_tables or []))
    if not state.nsdelegate:
        for point in hostchanges.nsdelegate_mounts():
            attempt(f"clearing nsdelegate on {point}",
                    lambda p=point: hostchanges.clear_nsdelegate(p))  # type: ignore[misc]
    # After a crash of dockerd the nodes' processes live on (each container has its own mount
    # namespace, not the engine's); every container is in the engine's cgroup parent.
    attempt("killing what is left of the nodes", lambda: cgroups.kill_all(CGROUP_PARENT))
    attempt("removing the nodes' cgroups",
            lambda: hostchanges.remove_new_cgroups(state.cgroup_tops))
    attempt("restoring kernel settings", lambda: network.restore_sysctls(state.sysctls))
    for path in [*reversed(state.absent), state.run_dir]:
        if path:
            attempt(f"removing {path}", lambda p=path: hostchanges.remove_path(Path(p)))  # type: ignore[misc]
    left = leftovers(layout, state)
    if problems or left:
        raise DexkitError("the kind harness's engine did not stop cleanly: "
                          + "; ".join(problems + left),
                          f"{layout.state} is kept so that stopping can be tried again")
    layout.state.unlink(missing_ok=True)
    say("engine stopped; nothing of it is left on this machine")


def _empty(layout: EngineLayout) -> None:
    containers = docker(layout, "ps", "-aq", timeout=60).split()
    if containers:
        docker(layout, "rm", "-f", "-v", *containers, timeout=120)
    volumes = docker(layout, "volume", "ls", "-q", timeout=60).split()
    if volumes:
        docker(layout, "volume", "rm", "-f", *volumes, timeout=120)
    networks = [n for n in docker(layout, "network", "ls", "--format", "{{.Name}}",
                                  timeout=60).split() if n not in ("bridge", "host", "none")]
    if networks:
        docker(layout, "network", "rm", *networks, timeout=60)


def _unmount_in(pid: int, points: Sequence[str]) -> None:
    """Inside the engine's namespace: remove what nodes left in the extra hierarchies (empty
    once their containers are gone), then unmount them, so no hierarchy outlives the engine."""
    script = "\n".join(
        f"find '{p}' -mindepth 1 -depth -type d -exec rmdir {{}} + 2>/dev/null || true\n"
        f"umount '{p}'" for p in points)
    result = subprocess.run(["nsenter", f"--mount=/proc/{pid}/ns/mnt", "--", "sh", "-c",
                             script], capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise DexkitError(result.stderr.strip() or "umount failed", "see mountinfo")


def _stop_dockerd(record: ProcessRecord, timeout: float = 60.0) -> None:
    # dockerd only (not its process group): it stops its containerd itself.
    os.kill(record.pid, 15)
    deadline = time.monotonic() + timeout
    while is_running(record) and time.monotonic() < deadline:
        time.sleep(0.2)
    if is_running(record):
        os.kill(record.pid, 9)


def leftovers(layout: EngineLayout, state: EngineState) -> list[str]:
    """What a stopped engine must not leave behind, each as a sentence."""
    found: list[str] = []
    if state.mount_ns and state.mount_ns not in hostchanges.own_namespaces() and \
            hostchanges.namespace_pids(state.mount_ns):
        found.append("processes remain in the engine's namespace")
    links = hostchanges.engine_links()
    if links:
        found.append(f"interfaces remain: {', '.join(links)}")
    chains = network.chains_named(CHAIN_PREFIX)
    if chains:
        found.append(f"DOCKER chains remain in {', '.join(chains)}")
    rules = hostchanges.bridge_rules()
    if rules:
        found.append(f"{len(rules)} iptables rules name the engine's bridges")
    if state.nft_tables is not None:
        tables = [t for t in hostchanges.nft_tables() or [] if t not in state.nft_tables]
        if tables:
            found.append(f"nftables tables remain: {', '.join(tables)}")
    mounts = [str(p) for p in cgroups.hierarchies() if str(p) in state.cgroup_mounts]
    mounts += [line.split()[4] for line in cgroups.MOUNTINFO.read_text().splitlines()
               if str(layout.data_root) in line.split()[4] or str(layout.run) in line.split()[4]]
    if mounts:
        found.append(f"mounts remain: {', '.join(mounts[:5])}")
    added = [p for p in hostchanges.nsdelegate_mounts() if p not in state.nsdelegate]
    if added:
        found.append(f"nsdelegate remains on {', '.join(added)}")
    for path in [*state.absent, state.run_dir]:
        if path and (Path(path).exists() or Path(path).is_symlink()):
            found.append(f"{path} remains")
    changed = {k: v for k, v in network.read_sysctls(state.sysctls).items()
               if state.sysctls.get(k) != v}
    if changed:
        found.append(f"kernel settings differ: {', '.join(sorted(changed))}")
    return found
