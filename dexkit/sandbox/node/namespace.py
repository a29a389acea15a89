"""The node's mount namespace (rule 3 of :mod:`dexkit.sandbox.node`): its holder, and running
a command in it (``dexkit sandbox exec``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from dexkit.errors import DexkitError
from dexkit.sandbox.controlplane import SandboxState
from dexkit.sandbox.node.state import NAMESPACE_PEER, PACKAGES_HINT, is_node
from dexkit.sandbox.process import is_running


def namespace_ready(pid: int, hosts: Path) -> Callable[[], bool]:
    def check() -> bool:
        mine = Path("/proc/self/ns/mnt").readlink()
        theirs = Path(f"/proc/{pid}/ns/mnt").readlink()
        return mine != theirs and Path("/proc", str(pid), "root", "etc", "hosts").read_bytes() == \
            hosts.read_bytes()
    return check


def namespace_holder(state: SandboxState) -> int:
    """The PID of the running holder of the sandbox's mount namespace."""

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
