"""The node sandbox's fixed names, its files (:class:`NodeLayout`) and what ``down`` must undo
(:class:`NodeState`, ``node.json``): what start and teardown share."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dexkit import files
from dexkit.sandbox import controlplane, network, peers
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
                         "see dexkit/sandbox/node/ for what it records; undo by hand")
        if data is None:
            return None
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def is_node(sandbox: Path) -> bool:
    return NodeLayout(sandbox).state.is_file()


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

