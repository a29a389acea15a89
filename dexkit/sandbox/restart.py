"""Restart one peer of a running sandbox in place: ``dexkit sandbox restart etcd|kube-apiserver``.

What a control plane does in real life (an upgrade, a crashed static Pod, a node reboot), on
the sandbox: to see that logins, cached tokens and ``dexkit doctor`` come through it. Rules:

- Only a peer whose readiness dexkit knows from its recorded endpoint: ``etcd`` (``/health``)
  and ``kube-apiserver`` (``/readyz`` with the sandbox's admin certificate).
- The peer is stopped by its record (never a recycled PID) and started again with the
  recorded argv, log file and working directory: the same ports, data directory, certificates
  and (on the node) mount namespace, so the kubeconfig, the node's components and the Pods
  keep working without a change.
- Its record in the state file is replaced in place, as soon as the new process exists: ``down``
  keeps stopping peers in the reverse order of their start, and stops this one even if the
  wait below fails.
- Ready is the peer's own check, then the API server's ``/readyz`` (which checks etcd): the
  sandbox as a whole serves again when ``restart`` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dexkit.errors import DexkitError, UsageError
from dexkit.sandbox import controlplane
from dexkit.sandbox.controlplane import SandboxLayout, SandboxState
from dexkit.sandbox.process import (
    ManagedProcess,
    ProcessRecord,
    ReadyCheck,
    is_running,
    start_process,
    stop_record,
)

if TYPE_CHECKING:
    from pathlib import Path

RESTARTABLE = ("etcd", "kube-apiserver")
APISERVER = "kube-apiserver"


@dataclass(frozen=True)
class Restarted:
    name: str
    process: ManagedProcess
    seconds: float


def restart_peer(directory: Path, name: str, *, timeout: float = 120.0,
                 die_with_parent: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> Restarted:
    """Restart peer ``name`` of the sandbox in ``directory`` by the module's rules.

    ``die_with_parent``: the new process gets SIGTERM when this one dies (in-process use, as
    the e2e fixtures start their sandboxes); the CLI leaves it running for ``down``."""
    if name not in RESTARTABLE:
        raise UsageError(f"dexkit cannot restart '{name}'",
                         f"name one of {', '.join(RESTARTABLE)}")
    state = SandboxState.load(directory)
    if state is None:
        raise DexkitError(f"no sandbox runs in {directory}",
                          "start it with 'dexkit sandbox up' (or 'up --node')")
    record = _running_record(state, name)
    layout = SandboxLayout(directory)
    started = clock()
    stop_record(record)

    def replace(process: ManagedProcess) -> None:
        state.processes = [process.record if r == record else r for r in state.processes]
        state.save()

    process = start_process(name, record.argv, layout.log(name),
                            _ready(layout, state, name), timeout=timeout, cwd=layout.dir,
                            die_with_parent=die_with_parent, on_started=replace, clock=clock)
    if name != APISERVER and APISERVER in state.endpoints:
        _wait(APISERVER, _ready(layout, state, APISERVER), timeout, clock)
    return Restarted(name, process, clock() - started)


def _running_record(state: SandboxState, name: str) -> ProcessRecord:
    records = [r for r in state.processes if r.name == name]
    if not records:
        raise DexkitError(f"the sandbox in {state.dir} runs no {name}",
                          "see 'dexkit sandbox status'")
    running = [r for r in records if is_running(r)]
    if not running:
        raise DexkitError(f"{name} of the sandbox in {state.dir} is not running (it exited; "
                          f"its log: {records[-1].log})",
                          "stop the rest with 'dexkit sandbox down' and start it again")
    return running[-1]


def _ready(layout: SandboxLayout, state: SandboxState, name: str) -> ReadyCheck:
    url = state.endpoints.get(name, "")
    if not url:
        raise DexkitError(f"the sandbox's state records no endpoint for {name}",
                          "stop it with 'dexkit sandbox down' and start it again")
    if name == "etcd":
        return controlplane.url_ready(f"{url}/health", body_contains='"health":"true"')
    context = controlplane.tls_context(layout.ca, layout.admin_cert, layout.admin_key)
    return controlplane.url_ready(f"{url}/readyz", context=context, body_contains="ok")


def _wait(name: str, check: ReadyCheck, timeout: float, clock: Callable[[], float]) -> None:
    deadline = clock() + timeout
    last = ""
    while True:
        try:
            if check():
                return
        except OSError as exc:
            last = f": {exc}"
        if clock() >= deadline:
            raise DexkitError(f"{name} was not ready {timeout:.0f}s after the restart{last}",
                              "read its log in the sandbox's logs/ directory")
        time.sleep(0.25)
