"""The node sandbox's network on this machine, and every host setting its components change.

Rules:
- Addresses: the sandbox owns one private /24 (:data:`NODE_CIDR`). Its first address is the
  node's, on a bridge the sandbox creates (:data:`BRIDGE`); the kubelet, the API server and the
  other components listen there, and pods get the rest. ``up`` refuses the range when any route
  or address of the machine overlaps it, so nothing of the machine's is shadowed.
- Pods get no default route: the bridge plugin runs with ``isGateway`` and ``ipMasq`` off (so
  it neither turns IP forwarding on nor adds NAT rules), and IPAM gives a pod only its subnet
  and a route for the Service range through the node address. A pod can reach the node and
  the Services, and no other address; forwarding stays as the machine had it.
- The kubelet and kube-proxy write some kernel settings (:data:`SYSCTLS`). ``up`` records
  their values first; ``down`` writes back each one that changed.
- iptables: kube-proxy's and the kubelet's chains are all named ``KUBE-...``. ``up`` refuses to
  start when any exists (another Kubernetes node runs here, or a sandbox was not stopped), so
  every ``KUBE-`` chain afterwards is the sandbox's; ``down`` deletes the rules that jump to
  them and then the chains, in the IPv4 and IPv6 tables.
- One node sandbox per machine: the bridge, the NodePorts and the chains are machine-wide.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dexkit.errors import DexkitError

BRIDGE = "dexkit0"
NODE_CIDR = "10.213.0.0/24"
CHAIN_PREFIX = "KUBE-"
TABLES = ("filter", "nat", "mangle", "raw")
IPTABLES = ("iptables", "ip6tables")
# What the kubelet (container_manager_linux.go setupKernelTunables) and kube-proxy (iptables
# mode, localhost NodePorts) write; kube-proxy's conntrack settings are left alone by config.
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/ip_forward",
)
PROC_SYS = Path("/proc/sys")


@dataclass(frozen=True)
class NodeNetwork:
    """The addresses the sandbox assigns."""

    cidr: str = NODE_CIDR
    bridge: str = BRIDGE

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def node_ip(self) -> str:
        return str(self.network.network_address + 1)

    @property
    def prefix(self) -> int:
        return self.network.prefixlen


def run(argv: Sequence[str], *, what: str, check: bool = True) -> str:
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                                timeout=60)
    except FileNotFoundError as exc:
        raise DexkitError(f"'{argv[0]}' is not installed (needed for {what})",
                          "install the node's packages: apt-get install iproute2 iptables "
                          "conntrack containerd runc containernetworking-plugins") from exc
    if check and result.returncode != 0:
        raise DexkitError(f"'{shlex.join(argv)}' failed while {what}: "
                          f"{result.stderr.strip() or result.stdout.strip()}",
                          "the node sandbox needs root (CAP_NET_ADMIN)")
    return result.stdout


# --- routes and the bridge ------------------------------------------------------------------


def overlapping_routes(cidr: str, routes: Iterable[Mapping[str, object]] | None = None
                       ) -> list[str]:
    """Routes of the machine (any table) whose destination overlaps ``cidr`` (default excluded)."""
    if routes is None:
        routes = json.loads(run(["ip", "-4", "-j", "route", "show", "table", "all"],
                                what="reading the routes") or "[]")
    wanted = ipaddress.IPv4Network(cidr)
    found: list[str] = []
    for route in routes:
        dst = str(route.get("dst", ""))
        if dst in ("", "default") or route.get("type") in ("broadcast",):
            continue
        try:
            network = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if network.is_loopback or network.prefixlen == 0:
            continue
        if network.overlaps(wanted):
            found.append(f"{dst} dev {route.get('dev', '?')}")
    return found


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def create_bridge(net: NodeNetwork) -> None:
    """The bridge with the node's address, up."""
    run(["ip", "link", "add", net.bridge, "type", "bridge"], what=f"creating {net.bridge}")
    try:
        run(["ip", "addr", "add", f"{net.node_ip}/{net.prefix}", "dev", net.bridge],
            what=f"addressing {net.bridge}")
        run(["ip", "link", "set", net.bridge, "up"], what=f"bringing {net.bridge} up")
    except DexkitError:
        delete_link(net.bridge)
        raise


def delete_link(name: str) -> bool:
    if not link_exists(name):
        return False
    run(["ip", "link", "delete", name], what=f"deleting {name}")
    return True


def links_on(bridge: str) -> list[str]:
    """Interfaces attached to ``bridge`` (the pods' veths)."""
    ports = Path("/sys/class/net", bridge, "brif")
    return sorted(p.name for p in ports.iterdir()) if ports.is_dir() else []


# --- kernel settings ------------------------------------------------------------------------


def read_sysctls(names: Iterable[str] = SYSCTLS) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(OSError):
            values[name] = (PROC_SYS / name).read_text().strip()
    return values


def restore_sysctls(saved: Mapping[str, str]) -> list[str]:
    """Write back each recorded value that changed; the names written."""
    changed: list[str] = []
    now = read_sysctls(saved)
    for name, value in saved.items():
        if now.get(name) != value:
            (PROC_SYS / name).write_text(value)
            changed.append(name)
    return changed


# --- iptables -------------------------------------------------------------------------------


def _save(binary: str, table: str) -> str:
    return run([f"{binary}-save", "-t", table], what=f"reading the {binary} {table} table",
               check=False)


def kube_chains() -> dict[str, list[str]]:
    """``{"iptables nat": ["KUBE-SERVICES", ...], ...}``: every KUBE- chain, by table."""
    return chains_named(CHAIN_PREFIX)


def chains_named(prefix: str) -> dict[str, list[str]]:
    """Every chain whose name starts with ``prefix``, by ``"<binary> <table>"``."""
    found: dict[str, list[str]] = {}
    for binary in IPTABLES:
        for table in TABLES:
            chains = [line[1:].split()[0] for line in _save(binary, table).splitlines()
                      if line.startswith(f":{prefix}")]
            if chains:
                found[f"{binary} {table}"] = chains
    return found


def nodeport_captures(port: int) -> list[str]:
    """kube-proxy's NodePort rules for ``port`` (``["iptables", ...]``): a Kubernetes node on
    this machine sends connections to any local address and that port to its Service, so a
    process listening there (the level-1 sandbox's Dex) is never reached. Empty when iptables
    is absent or unreadable (not root): then nothing can be known, and nothing is refused."""
    found: list[str] = []
    for binary in IPTABLES:
        try:
            text = _save(binary, "nat")
        except DexkitError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:2] == ["-A", "KUBE-NODEPORTS"] and \
                    ("--dport", str(port)) in itertools.pairwise(words):
                found.append(binary)
                break
    return found


def remove_kube_chains() -> int:
    """Delete every rule that jumps to a KUBE- chain, then the chains; how many chains."""
    return remove_chains(CHAIN_PREFIX)


def remove_chains(prefix: str) -> int:
    """Delete every rule that jumps to a chain named ``prefix...``, then those chains (in the
    IPv4 and IPv6 tables); how many chains."""
    removed = 0
    for binary in IPTABLES:
        for table in TABLES:
            text = _save(binary, table)
            chains = [line[1:].split()[0] for line in text.splitlines()
                      if line.startswith(f":{prefix}")]
            if not chains:
                continue
            for line in text.splitlines():
                if not line.startswith("-A "):
                    continue
                words = shlex.split(line)
                if words[1].startswith(prefix):
                    continue  # flushed with its chain below
                targets = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")}
                if any(t.startswith(prefix) for t in targets):
                    run([binary, "-w", "-t", table, "-D", *words[1:]],
                        what=f"deleting a jump to a {prefix} chain in {binary} {table}")
            for chain in chains:
                run([binary, "-w", "-t", table, "-F", chain], what=f"flushing {chain}")
            for chain in chains:
                run([binary, "-w", "-t", table, "-X", chain], what=f"deleting {chain}")
            removed += len(chains)
    return removed


# --- ports ----------------------------------------------------------------------------------


def listening_on(port: int) -> bool:
    """Whether any TCP socket of the machine listens on ``port`` (IPv4 or IPv6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and fields[3] == "0A" and \
                        int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


# --- the CNI network ------------------------------------------------------------------------


def cni_conflist(net: NodeNetwork, service_cidr: str, ipam_dir: Path) -> str:
    """The pods' network: a bridge without gateway or masquerade (see the module rules)."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "dexkit",
        "plugins": [{
            "type": "bridge",
            "bridge": net.bridge,
            "isGateway": False,
            "isDefaultGateway": False,
            "ipMasq": False,
            "hairpinMode": True,
            "ipam": {
                "type": "host-local",
                "dataDir": str(ipam_dir),
                "ranges": [[{"subnet": net.cidr, "gateway": net.node_ip}]],
                "routes": [{"dst": service_cidr, "gw": net.node_ip}],
            },
        }],
    }, indent=2) + "\n"
