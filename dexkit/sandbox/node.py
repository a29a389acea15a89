"""The node sandbox (level 2): a real one-node cluster on this machine, without Docker.

The level-1 control plane (etcd, and kube-apiserver configured by dexkit's rendered OIDC side)
plus kube-controller-manager, kube-scheduler, containerd, the kubelet and kube-proxy, with a
bridge CNI network and locally built images (:mod:`dexkit.sandbox.images`). Dex is not started
here: ``dexkit deploy`` runs it as the rendered Deployment.

Rules, in the order ``up`` acts:

1. Preflight, before anything changes: root; the commands the node runs (Debian's containerd,
   runc, CNI plugins, iptables); the machine-wide things a node takes are free (the bridge and
   its /24, ``KUBE-`` chains, the cgroup tree, :data:`RUN_DIR`, the project's NodePort).
2. ``node.json`` records what ``down`` must put back (kernel settings, host directories that did
   not exist) before it is changed, and is rewritten after each step, so ``down`` from any
   process undoes whatever ``up`` got to, even after a crash half-way.
3. A private mount namespace (:func:`start_namespace`) holds the processes that need the
   sandbox's ``/etc/hosts`` (the issuer's host -> 127.0.0.1, where the NodePort answers) or
   whose mounts must vanish with them: kube-apiserver, containerd (image layers, pod network
   namespaces) and the kubelet (Secret volumes). Its holder is the first process recorded, so
   it is stopped last; once no process is left in it, every mount it had is gone, however the
   processes ended. ``dexkit sandbox exec`` runs a command in it.
4. The API server is level 1's, with the node's differences only: it listens and advertises on
   the node address (the ``kubernetes`` Endpoints refuse loopback), the ServiceAccount
   admission plugin is on (pods get their tokens) and it reaches the kubelet with the admin
   client certificate. Every component authenticates with the sandbox's admin certificate
   (``system:masters``): one identity, because the sandbox proves Dex, not node authorization.
5. Ready means a pod can be scheduled: the Node is ``Ready`` without ``NoSchedule`` taints, the
   ``default`` ServiceAccount exists and ``kube-root-ca.crt`` is published (a pod's token
   volume needs both).

``down`` (:func:`teardown`, after the processes are stopped) kills what is left in the cgroup
tree (shims, containers), runs ``kube-proxy --cleanup`` and deletes every ``KUBE-`` chain,
deletes the bridge, writes back the kernel settings, removes the host directories it created,
and then checks that nothing is left (:func:`leftovers`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from dexkit import files, kube, pki
from dexkit.config import Config, is_ip
from dexkit.errors import DexkitError
from dexkit.sandbox import cgroups, controlplane, images, network, peers, wiring
from dexkit.sandbox.controlplane import ControlPlane, SandboxLayout, SandboxState
from dexkit.sandbox.process import ManagedProcess, start_process
from dexkit.sandbox.state import load_json

NODE_NAME = "dexkit-node"
CGROUP = "dexkit"
# Sockets and the kubelet's root: a unix socket path has at most 107 bytes, which a project
# path can exceed; one node sandbox per machine, so one fixed directory.
RUN_DIR = Path("/run/dexkit-node")
# The kind harness's run directory (dexkit.sandbox.engine.RUN_DIR): the two refuse each other.
KIND_ENGINE_RUN_DIR = Path("/run/dexkit-kind")
STATE_FILE = "node.json"
NAMESPACE_PEER = "mount-namespace"
SERVICE_CIDR = controlplane.SERVICE_CLUSTER_IP_RANGE
# Host paths the node's components create outside their configured directories; ``down``
# removes each one that did not exist before ``up``.
HOST_PATHS = (
    "/run/containerd",  # containerd-shim sockets (containerd 1.6 puts them in /run/containerd/s)
    "/var/lib/cni",  # libcni's result cache
    "/var/log/containers",  # the kubelet's symlinks to container logs
    "/var/log/pods",
    "/run/netns",
)
REQUIRED_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables",
                     "ip6tables", "iptables-save", "ip", "unshare", "nsenter", "mount")
CNI_BIN = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback")
PACKAGES_HINT = ("install the node's packages: apt-get install containerd runc "
                 "containernetworking-plugins iptables conntrack")
Progress = Callable[[str, str], None]


# --- layout and state -----------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLayout:
    """The node's files: under ``<sandbox>/node`` and, for sockets, :data:`RUN_DIR`."""

    sandbox: Path
    run: Path = RUN_DIR

    @property
    def dir(self) -> Path:
        return self.sandbox / "node"

    @property
    def state(self) -> Path:
        return self.sandbox / STATE_FILE

    @property
    def hosts(self) -> Path:
        return self.dir / "hosts"

    @property
    def resolv(self) -> Path:
        return self.dir / "resolv.conf"

    @property
    def containerd(self) -> Path:
        return self.dir / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def cni_conf(self) -> Path:
        return self.dir / "cni" / "net.d"

    @property
    def cni_ipam(self) -> Path:
        return self.dir / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.run / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.dir / "pod-logs"

    def config(self, component: str) -> Path:
        return self.dir / f"{component}.yaml"

    def cert(self, component: str) -> tuple[Path, Path]:
        return self.dir / "pki" / f"{component}.pem", self.dir / "pki" / f"{component}-key.pem"


@dataclass
class NodeState:
    """What ``down`` must undo, written before each change (see the module rules)."""

    cidr: str = network.NODE_CIDR
    bridge: str = ""  # set once the bridge was created
    cgroup: str = ""  # set once the cgroup tree was created
    run_dir: str = ""  # set once RUN_DIR was created
    sysctls: dict[str, str] = field(default_factory=dict)  # values before up
    absent: list[str] = field(default_factory=list)  # HOST_PATHS that did not exist before up
    kube_proxy: str = ""  # the binary, for `kube-proxy --cleanup`
    node_ip: str = ""
    images: dict[str, str] = field(default_factory=dict)  # role -> image name

    def save(self, sandbox: Path) -> None:
        files.atomic_write(NodeLayout(sandbox).state,
                           json.dumps(asdict(self), indent=2, sort_keys=True) + "\n",
                           files.PRIVATE)

    @classmethod
    def load(cls, sandbox: Path) -> NodeState | None:
        data = load_json(NodeLayout(sandbox).state,
                         "see dexkit/sandbox/node.py for what it records; undo by hand")
        if data is None:
            return None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def is_node(sandbox: Path) -> bool:
    return NodeLayout(sandbox).state.is_file()


# --- preflight ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeBinaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kube_proxy: Path

    @classmethod
    def require(cls, kubernetes_version: str) -> NodeBinaries:
        def get(name: str) -> Path:
            return peers.require_peer(name, kubernetes_version)
        return cls(etcd=get("etcd"), kube_apiserver=get("kube-apiserver"),
                   kube_controller_manager=get("kube-controller-manager"),
                   kube_scheduler=get("kube-scheduler"), kubelet=get("kubelet"),
                   kube_proxy=get("kube-proxy"))


def preflight(config: Config, net: network.NodeNetwork, *, euid: int | None = None) -> None:
    """Refuse, before anything changes, what would make the node fail or touch others' state."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise DexkitError("the node sandbox needs root: it creates a bridge, iptables rules "
                          "(kube-proxy), cgroups and a mount namespace",
                          "run it as root (sudo -E dexkit sandbox up --node), or use the "
                          "level-1 sandbox ('dexkit sandbox up') without --node")
    missing = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    missing += [f"{CNI_BIN}/{p}" for p in CNI_PLUGINS if not (CNI_BIN / p).is_file()]
    if missing:
        raise DexkitError(f"the node sandbox needs {', '.join(missing)}", PACKAGES_HINT)
    problems: list[str] = []
    if network.link_exists(net.bridge):
        problems.append(f"the interface {net.bridge} exists")
    overlaps = network.overlapping_routes(net.cidr)
    if overlaps:
        problems.append(f"routes overlap {net.cidr}: {'; '.join(overlaps)}")
    chains = network.kube_chains()
    if chains:
        where = ", ".join(f"{t} ({len(c)})" for t, c in chains.items())
        problems.append(f"iptables has KUBE- chains ({where}): a Kubernetes node runs here")
    if cgroups.existing(CGROUP):
        problems.append(f"the cgroup tree /{CGROUP} exists")
    if RUN_DIR.exists():
        problems.append(f"{RUN_DIR} exists")
    # The kind harness's engine (dexkit/sandbox/engine.py) takes the same machine-wide things
    # (iptables, cgroups, the kernel settings a kubelet writes); each refuses the other by name.
    if KIND_ENGINE_RUN_DIR.exists() or network.chains_named("DOCKER"):
        problems.append(f"a container engine runs (the kind harness's: {KIND_ENGINE_RUN_DIR} "
                        "exists, or DOCKER chains are in iptables)")
    if problems:
        raise DexkitError("another node sandbox (or a Kubernetes node) holds this machine: "
                          + "; ".join(problems),
                          "stop it with 'dexkit sandbox down' in its project; only one node "
                          "sandbox can run per machine")
    port = config.dex.service.node_port
    if config.dex.service.type == "NodePort" and port and network.listening_on(port):
        raise DexkitError(f"something on this machine listens on port {port}, the NodePort "
                          "Dex's Service will take",
                          "stop it (is a level-1 sandbox with Dex running? 'dexkit sandbox "
                          "down'), or pick another dex.service.nodePort")


def check_image(config: Config, dex_image: str) -> None:
    """The project's Dex image must be one the node has: no registry is reachable."""
    if config.dex.image != dex_image:
        names = " or ".join(images.dex_image_name(b.version) for b in peers.DEX_BUILDS.values())
        raise DexkitError(
            f"dex.image is '{config.dex.image}', which this node cannot pull: it reaches no "
            f"registry and has only images built here ({names})",
            f"set 'image: {dex_image}' under 'dex:' in dexkit.yaml (a local build from the "
            "Dex peer's source; your real cluster keeps the official image)")


# --- the mount namespace ---------------------------------------------------------------------


def hosts_text(config: Config, base: str) -> str:
    """The machine's hosts file plus the issuer's host on 127.0.0.1 (where the NodePort is)."""
    host = config.issuer_host
    text = base if base.endswith("\n") or not base else base + "\n"
    if wiring.issuer_is_local(config) or is_ip(host):
        return text
    return text + (f"# dexkit sandbox: the issuer's host, served by the node's NodePort on "
                   f"127.0.0.1\n127.0.0.1\t{host}\n")


def namespace_argv(hosts: Path) -> list[str]:
    """The holder: a private mount namespace with ``hosts`` bound over ``/etc/hosts``."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec sleep infinity', str(hosts)]


def in_namespace(pid: int) -> list[str]:
    """An argv prefix that runs a command in the holder's mount namespace (nsenter execs it,
    so the PID is the command's own)."""
    return ["nsenter", f"--mount=/proc/{pid}/ns/mnt", "--"]


def _namespace_ready(pid: int, hosts: Path) -> Callable[[], bool]:
    def check() -> bool:
        mine = Path("/proc/self/ns/mnt").readlink()
        theirs = Path(f"/proc/{pid}/ns/mnt").readlink()
        return mine != theirs and Path("/proc", str(pid), "root", "etc", "hosts").read_bytes() == \
            hosts.read_bytes()
    return check


def namespace_holder(state: SandboxState) -> int:
    """The PID of the running holder of the sandbox's mount namespace."""
    from dexkit.sandbox.process import is_running

    for record in state.processes:
        if record.name == NAMESPACE_PEER and is_running(record):
            return record.pid
    raise DexkitError(f"the node sandbox in {state.dir} is not running",
                      "start it with 'dexkit sandbox up --node'")


def exec_command(argv: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    """Become ``argv`` (from :func:`exec_argv`): its exit code is the command's."""
    try:
        os.execvpe(argv[0], list(argv), dict(env))  # noqa: S606 - argv is the user's command
    except OSError as exc:
        raise DexkitError(f"cannot run {argv[0]}: {exc.strerror}", PACKAGES_HINT) from exc


def exec_argv(sandbox: Path, argv: Sequence[str], cwd: Path) -> list[str]:
    """``nsenter`` argv that runs ``argv`` in the node sandbox's mount namespace, in ``cwd``."""
    state = SandboxState.load(sandbox)
    if state is None or not is_node(sandbox):
        raise DexkitError(f"no node sandbox runs in {sandbox}",
                          "start it with 'dexkit sandbox up --node'")
    if not argv:
        raise DexkitError("no command to run", "give one after '--', e.g. "
                          "'dexkit sandbox exec -- dexkit verify'")
    pid = namespace_holder(state)
    return ["nsenter", f"--mount=/proc/{pid}/ns/mnt", f"--wd={cwd}", "--", *argv]


# --- certificates and configs ---------------------------------------------------------------


def issue_node_certs(layout: SandboxLayout, node: NodeLayout, node_ip: str,
                     now: dt.datetime) -> None:
    """Serving certificates from the sandbox CA: the API server's again (now with the node
    address), and the kubelet's, controller-manager's and scheduler's on the node address."""
    ca = pki.load_cert(layout.ca)
    ca_key = pki.load_key(layout.ca_key)
    files.ensure_dir(node.dir / "pki")
    wanted = {
        "kube-apiserver": (["localhost", "kubernetes", "kubernetes.default",
                            "kubernetes.default.svc"],
                           ["127.0.0.1", node_ip, _first_service_ip()]),
        "kubelet": ([NODE_NAME], [node_ip]),
        "kube-controller-manager": ([], [node_ip]),
        "kube-scheduler": ([], [node_ip]),
    }
    for component, (hosts, ips) in wanted.items():
        key = pki.generate_key("ecdsa-p256")
        cert = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key, hosts=hosts, ips=ips,
                                      days=controlplane.CERT_DAYS, now=now)
        cert_path, key_path = ((layout.serving_cert, layout.serving_key)
                               if component == "kube-apiserver" else node.cert(component))
        files.atomic_write(key_path, pki.key_pem(key), files.PRIVATE)
        files.atomic_write(cert_path, pki.cert_pem(cert), files.PUBLIC)


def _first_service_ip() -> str:
    import ipaddress

    return str(ipaddress.IPv4Network(SERVICE_CIDR).network_address + 1)


def containerd_config(node: NodeLayout, pause_image: str) -> str:
    root, state = node.containerd / "root", node.containerd / "state"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# Written by dexkit sandbox: the node's containerd, all of its state in this sandbox.
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{node.containerd_socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""

[{cri}]
  sandbox_image = "{pause_image}"
  # Pod network namespaces are bind-mounted here, inside the sandbox's mount namespace.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # The kubelet gives pod sandboxes oom_score_adj -998; lowering it needs CAP_SYS_RESOURCE,
  # which a container or VM running the sandbox may lack (this one does): keep it no lower
  # than containerd's own.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{state / 'runc'}"
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{node.cni_conf}"
  [{cri}.registry]
    config_path = ""
"""


def kubelet_config(layout: SandboxLayout, node: NodeLayout, node_ip: str, port: int,
                   healthz_port: int) -> str:
    cert, key = node.cert("kubelet")
    data = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(layout.ca)}},
        "authorization": {"mode": "Webhook"},
        # No systemd here; and on cgroup v1 the kubelet must be told to start (the default
        # flips to refusing in later releases).
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "imageServiceEndpoint": f"unix://{node.containerd_socket}",
        "podLogsDir": str(node.pod_logs),
        # No cluster DNS runs and nothing in the sandbox resolves names: pods ask their own
        # loopback, so a lookup fails at once and no query leaves the pod (and ClusterFirst
        # pods get no MissingClusterDNS warning to read past in a diagnosis).
        "resolvConf": str(node.resolv),
        "clusterDNS": ["127.0.0.1"],
        "clusterDomain": "cluster.local",
        "registerNode": True,
        "maxPods": 16,
        "serializeImagePulls": False,
        # The images were imported by hand and no registry is reachable: never collect them,
        # and never evict for a busy CI disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "nodeStatusUpdateFrequency": "2s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "0s",
        "staticPodPath": "",
    }
    return "# Written by dexkit sandbox.\n" + yaml.safe_dump(data, sort_keys=False)


def kube_proxy_config(kubeconfig: Path, net: network.NodeNetwork, healthz: int,
                      metrics: int) -> str:
    data = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": net.cidr,
        # NodePorts on loopback (the guide's https://127.0.0.1:32000) and the node address
        # only, never on the machine's other interfaces.
        "nodePortAddresses": ["127.0.0.1/32", f"{net.node_ip}/32"],
        "healthzBindAddress": f"{net.node_ip}:{healthz}",
        "metricsBindAddress": f"{net.node_ip}:{metrics}",
        "iptables": {"localhostNodePorts": True, "masqueradeAll": False,
                     "syncPeriod": "30s", "minSyncPeriod": "0s"},
        # Leave the machine's conntrack settings as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }
    return "# Written by dexkit sandbox.\n" + yaml.safe_dump(data, sort_keys=False)


def node_apiserver_argv(argv: Sequence[str], layout: SandboxLayout, node_ip: str) -> list[str]:
    """Level 1's API-server argv with the node's differences (module rule 4)."""
    replace = {"--bind-address": node_ip, "--advertise-address": node_ip}
    out: list[str] = []
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag == "--disable-admission-plugins":
            continue  # ServiceAccount admission: pods get their token volume
        if flag == "--endpoint-reconciler-type":
            continue  # pods reach the API server through the `kubernetes` Service's endpoints
        out.append(f"{flag}={replace[flag]}" if flag in replace else arg)
    out += [f"--kubelet-client-certificate={layout.admin_cert}",
            f"--kubelet-client-key={layout.admin_key}",
            "--kubelet-preferred-address-types=InternalIP"]
    return out


def component_argv(binary: Path, kubeconfig: Path, cert: tuple[Path, Path], node_ip: str,
                   port: int) -> list[str]:
    """What kube-controller-manager and kube-scheduler share."""
    return [str(binary), f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}", f"--bind-address={node_ip}",
            f"--secure-port={port}", f"--tls-cert-file={cert[0]}",
            f"--tls-private-key-file={cert[1]}", "--leader-elect=false", "--profiling=false"]


# --- up -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRequest:
    project: Path
    config: Config
    binaries: NodeBinaries
    kubernetes_version: str
    mode: wiring.Mode | None = None
    sandbox: Path | None = None
    die_with_parent: bool = True
    network: network.NodeNetwork = field(default_factory=network.NodeNetwork)
    ready_timeout: float = 120.0


@dataclass
class Node:
    """A running node sandbox."""

    plane: ControlPlane
    layout: NodeLayout
    state: NodeState
    wired: wiring.APIServerWiring
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.plane.kubeconfig

    @property
    def namespace_pid(self) -> int:
        return namespace_holder(self.plane.state)

    def exec_argv(self, argv: Sequence[str], cwd: Path) -> list[str]:
        return exec_argv(self.plane.layout.dir, argv, cwd)

    def stop(self) -> list[str]:
        """Stop every process, then undo the rest (see :func:`teardown`)."""
        return down(self.plane.layout.dir)


def start(req: NodeRequest, progress: Progress | None = None, *,
          clock: Callable[[], float] = time.monotonic) -> Node:
    """Start the node sandbox by the module's rules; undo all of it if a step fails."""
    say = progress or (lambda _verb, _detail: None)
    net = req.network
    preflight(req.config, net)
    started = clock()
    built = images.build_node_images(lambda line: say("image", line),
                                     dex=peers.dex_build_for_image(req.config.dex.image))
    check_image(req.config, built.dex.name)
    timings = {"images": clock() - started}
    project = req.project.resolve()
    target = (req.sandbox or controlplane.sandbox_dir(project)).resolve()
    if is_node(target):
        raise DexkitError(f"{NodeLayout(target).state} records a node sandbox that was not "
                          "stopped", f"run 'dexkit sandbox down --dir {project}' first")
    wired = wiring.apiserver_wiring(req.config, project, SandboxLayout(target).files, req.mode)
    plane = controlplane.open_control_plane(target, controlplane.ControlPlaneOptions(
        extra_args=wired.args, extra_files=wired.files, kubernetes_version=req.kubernetes_version,
        die_with_parent=req.die_with_parent))
    layout = plane.layout
    node_layout = NodeLayout(layout.dir)
    shutil.rmtree(node_layout.dir, ignore_errors=True)
    node_state = NodeState(cidr=net.cidr, node_ip=net.node_ip,
                           sysctls=network.read_sysctls(),
                           absent=[p for p in HOST_PATHS if not Path(p).exists()],
                           kube_proxy=str(req.binaries.kube_proxy),
                           images={"pause": built.pause.name, "dex": built.dex.name})
    node_state.save(layout.dir)
    node = Node(plane, node_layout, node_state, wired, timings)
    try:
        _start(req, node, built, say, clock)
    except BaseException as exc:
        try:
            node.stop()
        except DexkitError as cleanup:
            raise DexkitError(f"{getattr(exc, 'message', exc)}; then undoing the start failed "
                              f"too: {cleanup.message}", cleanup.hint) from exc
        raise
    node.timings["total"] = clock() - started
    return node


def _start(req: NodeRequest, node: Node, built: images.NodeImages, say: Progress,
           clock: Callable[[], float]) -> None:
    plane, nl, ns, net = node.plane, node.layout, node.state, req.network
    layout = plane.layout
    sandbox = layout.dir

    def timed(name: str, start_it: Callable[[], object]) -> None:
        began = clock()
        start_it()
        node.timings[name] = clock() - began
        say("ready", f"{name} ({node.timings[name]:.1f}s)")

    def launch(name: str, argv: Sequence[str], ready: Callable[[], bool], *, timeout: float,
               endpoint: str = "",
               on_started: Callable[[ManagedProcess], None] | None = None) -> None:
        timed(name, lambda: start_process(
            name, argv, layout.log(name), ready, timeout=timeout, cwd=layout.dir,
            die_with_parent=req.die_with_parent, clock=clock,
            on_started=on_started or plane.recorder(endpoint)))

    # Machine-wide pieces, each recorded before the next.
    cgroups.create(CGROUP)
    ns.cgroup = CGROUP
    ns.save(sandbox)
    files.ensure_dir(RUN_DIR)
    ns.run_dir = str(RUN_DIR)
    ns.save(sandbox)
    network.create_bridge(net)
    ns.bridge = net.bridge
    ns.save(sandbox)
    say("network", f"{net.bridge} {net.node_ip}/{net.prefix} (pods: the rest of {net.cidr})")

    files.ensure_dir(nl.dir)
    issue_node_certs(layout, nl, net.node_ip, dt.datetime.now(dt.UTC))
    files.atomic_write(nl.hosts, hosts_text(req.config, Path("/etc/hosts").read_text()),
                       files.PUBLIC)
    # Pods get no name server: nothing in the sandbox resolves names, and no DNS query leaves.
    files.atomic_write(nl.resolv, "# dexkit sandbox: pods resolve nothing\n", files.PUBLIC)

    holder: dict[str, int] = {}

    def record_holder(process: ManagedProcess) -> None:
        plane.attach(process)
        holder["pid"] = process.pid

    launch(NAMESPACE_PEER, namespace_argv(nl.hosts),
           lambda: _namespace_ready(holder["pid"], nl.hosts)(), timeout=10,
           on_started=record_holder)
    prefix = in_namespace(holder["pid"])

    timed("etcd", lambda: plane.start_etcd(req.binaries.etcd, clock=clock))
    etcd_url = plane.etcd_url

    ports = controlplane.free_ports(8, host=net.node_ip)
    api_port, kcm_port, sched_port, kubelet_port, healthz, proxy_healthz, proxy_metrics = \
        ports[:7]
    api_url = f"https://{net.node_ip}:{api_port}"
    argv = node_apiserver_argv(
        controlplane.apiserver_argv(req.binaries.kube_apiserver, layout, etcd_url, api_port,
                                    node.wired.args), layout, net.node_ip)
    launch("kube-apiserver", [*prefix, *argv],
           controlplane.url_ready(f"{api_url}/readyz", context=plane.admin_context(),
                                  body_contains="ok"),
           timeout=120, endpoint=api_url)
    controlplane.write_admin_kubeconfig(layout, api_url)
    kubeconfig = layout.kubeconfig
    ca_context = controlplane.tls_context(layout.ca)

    kcm = component_argv(req.binaries.kube_controller_manager, kubeconfig,
                         nl.cert("kube-controller-manager"), net.node_ip, kcm_port)
    kcm += [f"--service-account-private-key-file={layout.sa_key}",
            f"--root-ca-file={layout.ca}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam,-csrsigning,-csrapproving,-csrcleaner"]
    launch("kube-controller-manager", kcm,
           controlplane.url_ready(f"https://{net.node_ip}:{kcm_port}/healthz",
                                  context=ca_context, body_contains="ok"),
           timeout=60, endpoint=f"https://{net.node_ip}:{kcm_port}")
    sched = component_argv(req.binaries.kube_scheduler, kubeconfig, nl.cert("kube-scheduler"),
                           net.node_ip, sched_port)
    launch("kube-scheduler", sched,
           controlplane.url_ready(f"https://{net.node_ip}:{sched_port}/healthz",
                                  context=ca_context, body_contains="ok"),
           timeout=60, endpoint=f"https://{net.node_ip}:{sched_port}")

    files.ensure_dir(nl.cni_conf)
    files.ensure_dir(nl.cni_ipam)
    files.atomic_write(nl.cni_conf / "10-dexkit.conflist",
                       network.cni_conflist(net, SERVICE_CIDR, nl.cni_ipam), files.PUBLIC)
    files.ensure_dir(nl.containerd)
    files.atomic_write(nl.config("containerd"), containerd_config(nl, built.pause.name),
                       files.PRIVATE)

    def record_and_join(process: ManagedProcess) -> None:
        plane.attach(process, f"unix://{nl.containerd_socket}")
        cgroups.join(CGROUP, process.pid)

    launch("containerd", [*prefix, "containerd", "--config", str(nl.config("containerd"))],
           _containerd_ready(nl.containerd_socket), timeout=30, on_started=record_and_join)
    timed("image import", lambda: import_images(nl.containerd_socket, built))

    files.atomic_write(nl.config("kubelet"), kubelet_config(layout, nl, net.node_ip,
                                                            kubelet_port, healthz),
                       files.PRIVATE)
    kubelet = [*prefix, str(req.binaries.kubelet), f"--config={nl.config('kubelet')}",
               f"--kubeconfig={kubeconfig}", f"--root-dir={nl.kubelet_root}",
               f"--hostname-override={NODE_NAME}", f"--node-ip={net.node_ip}", "--v=1"]
    launch("kubelet", kubelet,
           controlplane.url_ready(f"http://127.0.0.1:{healthz}/healthz", body_contains="ok"),
           timeout=60, endpoint=f"https://{net.node_ip}:{kubelet_port}")
    files.atomic_write(nl.config("kube-proxy"),
                       kube_proxy_config(kubeconfig, net, proxy_healthz, proxy_metrics),
                       files.PRIVATE)
    launch("kube-proxy", [str(req.binaries.kube_proxy), f"--config={nl.config('kube-proxy')}"],
           controlplane.url_ready(f"http://{net.node_ip}:{proxy_healthz}/healthz"),
           timeout=60)
    timed("node Ready", lambda: wait_schedulable(kubeconfig, timeout=req.ready_timeout,
                                                 clock=clock))


def _containerd_ready(sock: Path) -> Callable[[], bool]:
    def check() -> bool:
        if not sock.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(1)
            client.connect(str(sock))
        return True
    return check


def import_images(sock: Path, built: images.NodeImages) -> None:
    for archive in (built.pause, built.dex):
        import_image(sock, archive)


def import_image(sock: Path, archive: images.ImageArchive) -> None:
    """``ctr images import`` into the CRI's namespace, unpacked for its snapshotter."""
    result = subprocess.run(
        ["ctr", f"--address={sock}", "--namespace=k8s.io", "images", "import",
         "--snapshotter=overlayfs", str(archive.path)],
        capture_output=True, text=True, check=False, timeout=300)
    if result.returncode != 0:
        raise DexkitError(f"containerd refused the image {archive.name} ({archive.path}): "
                          f"{result.stderr.strip()}",
                          "remove the archive from the cache so it is built again")


def wait_schedulable(kubeconfig: Path, *, timeout: float,
                     clock: Callable[[], float] = time.monotonic) -> None:
    """Until the Node is Ready and untainted, and pods can get their token volume."""
    admin = kube.connect(kube.Target(kubeconfig))
    deadline = clock() + timeout
    last = "the Node has not registered"
    while True:
        node = kube.get_object(admin, kube.ObjectRef("Node", NODE_NAME))
        if node is not None:
            last = _unschedulable(node)
            if not last:
                if kube.get_object(admin, kube.ObjectRef("ServiceAccount", "default",
                                                         "default")) is None:
                    last = "the default ServiceAccount is not created yet"
                elif kube.get_object(admin, kube.ObjectRef("ConfigMap", "kube-root-ca.crt",
                                                           "default")) is None:
                    last = "kube-root-ca.crt is not published yet"
                else:
                    return
        if clock() >= deadline:
            raise DexkitError(f"the node was not ready after {timeout:.0f}s: {last}",
                              "read the kubelet's and containerd's logs in the sandbox's "
                              "logs/ directory")
        time.sleep(0.5)


def _unschedulable(node: Mapping[str, Any]) -> str:
    conditions = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    ready = conditions.get("Ready") or {}
    if ready.get("status") != "True":
        return f"Ready is {ready.get('status', 'unknown')}: {ready.get('message', '')}".strip()
    taints = [t for t in (node.get("spec") or {}).get("taints") or []
              if t.get("effect") in ("NoSchedule", "NoExecute")]
    if taints:
        return "tainted " + ", ".join(f"{t.get('key')}:{t.get('effect')}" for t in taints)
    return ""


# --- down -----------------------------------------------------------------------------------


def down(sandbox: Path, timeout: float = 10.0) -> list[str]:
    """Stop every recorded process (newest first), then :func:`teardown`; names stopped."""
    stopped = controlplane.stop_sandbox(sandbox, timeout=timeout)
    teardown(sandbox)
    return stopped


def teardown(sandbox: Path) -> None:
    """Undo what ``node.json`` records (module docstring); raise if anything is left."""
    state = NodeState.load(sandbox)
    if state is None:
        return
    problems: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except (DexkitError, OSError) as exc:
            problems.append(f"{what}: {getattr(exc, 'message', exc)}")

    if state.cgroup:
        attempt("killing the pods and shims", lambda: cgroups.remove(state.cgroup))
    if state.kube_proxy and Path(state.kube_proxy).is_file():
        attempt("kube-proxy --cleanup", lambda: subprocess.run(
            [state.kube_proxy, "--cleanup"], capture_output=True, check=False, timeout=60))
    attempt("deleting KUBE- chains", network.remove_kube_chains)
    if state.bridge:
        attempt(f"deleting {state.bridge}", lambda: network.delete_link(state.bridge))
    attempt("restoring kernel settings", lambda: network.restore_sysctls(state.sysctls))
    for path in [*state.absent, state.run_dir]:
        if path:
            attempt(f"removing {path}", lambda p=path: shutil.rmtree(p)  # type: ignore[misc]
                    if Path(p).exists() else None)
    attempt("removing the node's entries in shared directories",
            lambda: remove_own_entries(NodeLayout(sandbox)))
    left = leftovers(state, sandbox)
    if problems or left:
        raise DexkitError("the node sandbox did not stop cleanly: " + "; ".join(problems + left),
                          f"{NodeLayout(sandbox).state} is kept so that 'dexkit sandbox down' "
                          "can try again")
    NodeLayout(sandbox).state.unlink(missing_ok=True)


def own_entries(layout: NodeLayout) -> list[Path]:
    """What the node left in host directories that existed before it (and so stay): libcni's
    cached results for its network, and the kubelet's symlinks to its containers' logs."""
    found = sorted(Path("/var/lib/cni/results").glob("dexkit-*"))
    containers = Path("/var/log/containers")
    if containers.is_dir():
        for link in containers.iterdir():
            if link.is_symlink() and str(link.readlink()).startswith(str(layout.pod_logs)):
                found.append(link)
    return found


def remove_own_entries(layout: NodeLayout) -> None:
    for path in own_entries(layout):
        path.unlink(missing_ok=True)


def leftovers(state: NodeState, sandbox: Path) -> list[str]:
    """What a stopped node sandbox must not leave behind, each as a sentence."""
    found: list[str] = []
    if state.cgroup and cgroups.existing(state.cgroup):
        found.append(f"cgroup /{state.cgroup} remains")
    if state.bridge and network.link_exists(state.bridge):
        found.append(f"interface {state.bridge} remains")
    chains = network.kube_chains()
    if chains:
        found.append(f"KUBE- chains remain in {', '.join(chains)}")
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if str(sandbox) in line.split()[4] or str(RUN_DIR) in line.split()[4]]
    if mounts:
        found.append(f"mounts remain: {', '.join(mounts[:5])}")
    for path in [*state.absent, state.run_dir]:
        if path and Path(path).exists():
            found.append(f"{path} remains")
    found += [f"{path} remains" for path in own_entries(NodeLayout(sandbox))]
    return found


def describe(node: Node) -> dict[str, str]:
    """The fields ``sandbox up --node`` prints."""
    plane = node.plane
    return {"API server": plane.state.endpoints.get("kube-apiserver", ""),
            "node": f"{NODE_NAME} at {node.state.node_ip} ({node.state.bridge})",
            "Dex image": node.state.images.get("dex", ""),
            "kubeconfig": str(plane.kubeconfig), "logs": str(plane.layout.logs),
            "hosts": str(node.layout.hosts)}
