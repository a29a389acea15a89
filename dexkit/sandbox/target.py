"""Which cluster a project command talks to when the user names none: the project's sandbox.

Rule: with no ``--kubeconfig``, no ``KUBECONFIG`` and no ``--context``, a project whose sandbox
is running (its state file names a kube-apiserver whose process is alive, start time checked)
uses the sandbox's admin kubeconfig, and the command says so in one line. Anything the user
names wins, as it does for kubectl.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dexkit.kube import Target
from dexkit.sandbox.process import is_running
from dexkit.sandbox.state import SandboxState, sandbox_dir

SANDBOX_CONTEXT = "dexkit-sandbox"  # the context name in the sandbox's admin kubeconfig


@dataclass(frozen=True)
class Resolved:
    target: Target
    note: str = ""  # set when the project's sandbox was picked
    sandbox: SandboxState | None = None  # the sandbox picked, if one was

    @property
    def sandbox_has_node(self) -> bool:
        """Whether the picked sandbox runs a kubelet (Pods run) or only a control plane."""
        return self.sandbox is not None and any(p.name == "kubelet"
                                                for p in self.sandbox.processes)


def running_sandbox(project: Path) -> SandboxState | None:
    """The project's sandbox state when its API server runs, else None (never an error: a
    broken or stale state file is for ``sandbox status`` to report)."""
    try:
        state = SandboxState.load(sandbox_dir(project.resolve()))
    except Exception:
        return None
    if state is None or not state.kubeconfig or not Path(state.kubeconfig).is_file():
        return None
    apiserver = [p for p in state.processes if p.name == "kube-apiserver"]
    return state if apiserver and is_running(apiserver[-1]) else None


def resolve(project: Path, kubeconfig: Path | None, context: str | None,
            environ: Mapping[str, str] | None = None) -> Resolved:
    """The target by the module's rule."""
    env = os.environ if environ is None else environ
    if kubeconfig is not None or context is not None or env.get("KUBECONFIG"):
        return Resolved(Target(kubeconfig, context))
    state = running_sandbox(project)
    if state is None:
        return Resolved(Target())
    return Resolved(Target(Path(state.kubeconfig)),
                    f"using the project's running sandbox ({state.kubeconfig}); pass "
                    "--kubeconfig or set KUBECONFIG for another cluster", state)


@dataclass(frozen=True)
class SandboxCluster:
    """The sandbox as a kubeconfig cluster entry: where it serves and the CA it serves with."""

    name: str
    server: str
    ca_data: str  # base64, as certificate-authority-data


def sandbox_cluster(state: SandboxState) -> SandboxCluster:
    """The running sandbox's API server as its admin kubeconfig names it."""
    # PyYAML (~14 ms) only when the sandbox runs: asking whether it does stays lean.
    import yaml  # noqa: PLC0415

    data = yaml.safe_load(Path(state.kubeconfig).read_text()) or {}
    cluster = (data.get("clusters") or [{}])[0].get("cluster") or {}
    return SandboxCluster(SANDBOX_CONTEXT, str(cluster.get("server", "")),
                          str(cluster.get("certificate-authority-data", "")))
