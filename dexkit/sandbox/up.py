"""``dexkit sandbox up``'s use cases: the peers found, the sandbox started, what runs said.

- :func:`control_plane` (level 1): etcd and kube-apiserver from the built peers, and Dex as a
  process when :func:`dexkit.sandbox.stack.choose_dex` says it can start
  (:func:`dexkit.sandbox.stack.start` does the rest).
- :func:`node` (level 2, ``--node``): a real node instead of Dex as a process
  (:mod:`dexkit.sandbox.node`); ``up --node`` rather than a command of its own, since it is the
  same sandbox with a node added: ``status``, ``down`` and every project command that finds
  the running sandbox work on it as on level 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dexkit.sandbox import controlplane, peers, stack
from dexkit.sandbox import node as level2

if TYPE_CHECKING:
    from dexkit.config import Config
    from dexkit.console import Reporter
    from dexkit.sandbox import wiring
    from dexkit.sandbox.stack import StorageChoice


@dataclass(frozen=True)
class UpRequest:
    project: Path
    config: Config
    kubernetes_version: str | None = None
    mode: wiring.Mode | None = None
    timeout: float = 120.0  # seconds for the API server (level 1), the node (level 2)
    storage: StorageChoice = "rendered"  # Dex's, level 1
    environ: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Up:
    """What runs, for the command to print."""

    title: str
    fields: dict[str, str]
    next_step: str


def control_plane(req: UpRequest, out: Reporter) -> Up:
    """Start the level-1 sandbox for ``req.project`` and say what runs where."""

    config, directory = req.config, req.project
    version = peers.resolve_kubernetes_version(req.kubernetes_version)
    binaries = controlplane.ControlPlaneBinaries(
        etcd=peers.require_peer("etcd"),
        kube_apiserver=peers.require_peer("kube-apiserver", version))
    choice = stack.choose_dex(config, dict(req.environ))
    for warning, hint in choice.notes:
        out.warn(warning, hint)
    dex = choice.path
    out.info(f"starting the sandbox in {controlplane.sandbox_dir(directory.resolve())} "
             f"(Kubernetes {version}) ...")
    started = time.monotonic()
    env = dict(req.environ) if dex else {}
    running = stack.start(stack.StackRequest(
        project=directory, config=config, binaries=binaries, kubernetes_version=version,
        dex=dex, mode=req.mode, storage=req.storage, env=env,
        die_with_parent=False, apiserver_timeout=req.timeout),
        progress=lambda verb, detail: out.step(verb, detail))
    for arg in running.wired.args:
        out.step("oidc", arg)
    for note in running.notes:
        out.warn(note)
    if running.ready_as:
        out.step("login", f"the API server accepts Dex's token for {running.ready_as}")
    elif dex is not None:
        out.step("login", "the API server's OIDC authenticator is initialized (no static "
                          "user to log in with here)")
    return Up(f"sandbox ready in {time.monotonic() - started:.1f}s", stack.describe(running),
              _next_steps(config, directory, dex is not None))


def _next_steps(config: Config, directory: Path, with_dex: bool) -> str:
    where = "" if directory == Path() else f" --dir {directory}"
    if not with_dex:
        return f"stop it with 'dexkit sandbox down{where}'"
    user = config.static_users[0].email if config.static_users else None
    login = f" (log in as {user}, password in .dexkit/passwords/{user})" if user else ""
    return (f"'dexkit verify{where}', then 'dexkit kubeconfig{where}' and 'kubectl auth "
            f"whoami'{login}; stop it with 'dexkit sandbox down{where}'")


def node(req: UpRequest, out: Reporter) -> Up:
    """Start the node sandbox (level 2) for ``req.project`` and say what runs where."""

    directory = req.project
    version = peers.resolve_kubernetes_version(req.kubernetes_version)
    binaries = level2.NodeBinaries.require(version)
    out.info(f"starting the node sandbox in {level2.NodeLayout(directory.resolve()).sandbox} "
             f"(Kubernetes {version}) ...")
    started = time.monotonic()
    running = level2.start(level2.NodeRequest(
        project=directory, config=req.config, binaries=binaries, kubernetes_version=version,
        mode=req.mode, die_with_parent=False, ready_timeout=req.timeout),
        progress=lambda verb, detail: out.step(verb, detail))
    where = "" if directory == Path() else f" --dir {directory}"
    return Up(f"node sandbox ready in {time.monotonic() - started:.1f}s",
              level2.describe(running),
              f"'dexkit deploy{where}' runs Dex as the rendered Deployment; run commands "
              f"that reach the issuer by name through 'dexkit sandbox exec{where} -- ...'; "
              f"stop it with 'dexkit sandbox down{where}'")
