"""``down``: stop the node's processes, then undo what ``node.json`` records and check that
nothing is left (the module rules of :mod:`dexkit.sandbox.node`)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path

from dexkit.errors import DexkitError
from dexkit.sandbox import cgroups, controlplane, network
from dexkit.sandbox.node.state import RUN_DIR, NodeLayout, NodeState


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
    attempt = partial(_attempt, problems)
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
            attempt(f"removing {path}", partial(_remove_tree, path))
    attempt("removing the node's entries in shared directories",
            lambda: remove_own_entries(NodeLayout(sandbox)))
    left = leftovers(state, sandbox)
    if problems or left:
        raise DexkitError("the node sandbox did not stop cleanly: " + "; ".join(problems + left),
                          f"{NodeLayout(sandbox).state} is kept so that 'dexkit sandbox down' "
                          "can try again")
    NodeLayout(sandbox).state.unlink(missing_ok=True)


def _attempt(problems: list[str], what: str, action: Callable[[], object]) -> None:
    """One step of :func:`teardown`: a failure is noted and the next step still runs."""
    try:
        action()
    except (DexkitError, OSError) as exc:
        problems.append(f"{what}: {getattr(exc, 'message', exc)}")


def _remove_tree(path: str) -> None:
    if Path(path).exists():
        shutil.rmtree(path)


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

