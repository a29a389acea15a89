"""Rule 1 of :mod:`dexkit.sandbox.node`: refuse, before anything changes, a machine or a
project the node cannot run on."""

from __future__ import annotations

import os
import shutil

from dexkit.config import Config
from dexkit.errors import DexkitError
from dexkit.sandbox import cgroups, images, network, peers
from dexkit.sandbox.node.state import (
    CGROUP,
    CNI_BIN,
    CNI_PLUGINS,
    KIND_ENGINE_RUN_DIR,
    PACKAGES_HINT,
    REQUIRED_COMMANDS,
    RUN_DIR,
)


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
