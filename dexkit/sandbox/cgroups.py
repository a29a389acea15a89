"""The node sandbox's cgroups: one tree that dexkit creates, holds every node process, and removes.

Rules:
- The tree is ``/<name>`` in every cgroup hierarchy the machine mounts (v1 controllers, named
  hierarchies such as ``name=systemd``, and the unified v2 mount of a hybrid setup), because
  runc's cgroupfs driver creates a container's cgroup in each of them. The kubelet's
  ``cgroupRoot`` is this tree, so pods live in ``/<name>/kubepods/...``; containerd is moved into
  ``/<name>/runtime`` as it starts, so its shims (which leave its process group) are found too.
- ``up`` refuses a tree that already exists: it is another sandbox's, or one a crash left.
- Removal kills every process found anywhere in the tree, repeats until none is left (a dying
  shim may still fork), then removes the directories deepest first. Nothing outside the tree
  is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from dexkit.errors import DexkitError

MOUNTINFO = Path("/proc/self/mountinfo")
RUNTIME = "runtime"


def hierarchies(mountinfo: str | None = None) -> list[Path]:
    """The mount points of every cgroup and cgroup2 file system (from ``/proc/self/mountinfo``)."""
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    found: list[Path] = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fstype = right.split(" ", 1)[0]
        if fstype in ("cgroup", "cgroup2"):
            found.append(Path(left.split()[4]))
    return sorted(set(found))


def is_v1_only(mountinfo: str | None = None) -> bool:
    """True when the memory controller is a v1 hierarchy (cgroup v1 or hybrid)."""
    text = MOUNTINFO.read_text() if mountinfo is None else mountinfo
    return any(" - cgroup " in line and "memory" in line.rsplit(" ", 1)[-1]
               for line in text.splitlines())


def tree_dirs(name: str, mounts: list[Path] | None = None) -> list[Path]:
    return [mount / name for mount in (mounts if mounts is not None else hierarchies())]


def existing(name: str, mounts: list[Path] | None = None) -> list[Path]:
    return [d for d in tree_dirs(name, mounts) if d.is_dir()]


def create(name: str, mounts: list[Path] | None = None) -> list[Path]:
    """Create ``/<name>`` and ``/<name>/runtime`` in every hierarchy; refuse an existing tree."""
    found = existing(name, mounts)
    if found:
        raise DexkitError(f"the cgroup {found[0]} already exists: another node sandbox runs, "
                          "or one was not stopped",
                          "run 'dexkit sandbox down' in its project (or remove that cgroup "
                          "tree once no process is in it)")
    made: list[Path] = []
    for top in tree_dirs(name, mounts):
        for path in (top, top / RUNTIME):
            path.mkdir()
            made.append(path)
            _inherit_cpuset(path)
    return made


def _inherit_cpuset(path: Path) -> None:
    """A v1 cpuset cgroup takes no process until its cpus and mems are set: copy the parent's."""
    for key in ("cpuset.cpus", "cpuset.mems"):
        own = path / key
        if own.exists() and not own.read_text().strip():
            own.write_text((path.parent / key).read_text())


def join(name: str, pid: int, mounts: list[Path] | None = None) -> None:
    """Move ``pid`` (all its threads) into ``/<name>/runtime`` of every hierarchy."""
    for top in tree_dirs(name, mounts):
        procs = top / RUNTIME / "cgroup.procs"
        if procs.exists():
            procs.write_text(f"{pid}\n")


def pids(name: str, mounts: list[Path] | None = None) -> set[int]:
    """Every process in the tree, in any hierarchy."""
    found: set[int] = set()
    for top in existing(name, mounts):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                found.update(int(p) for p in procs.read_text().split())
    return found


def kill_all(name: str, *, timeout: float = 20.0, mounts: list[Path] | None = None,
             clock: Callable[[], float] = time.monotonic) -> int:
    """SIGKILL every process in the tree until it is empty; how many were killed."""
    killed: set[int] = set()
    deadline = clock() + timeout
    while True:
        left = pids(name, mounts)
        if not left:
            return len(killed)
        if clock() >= deadline:
            raise DexkitError(f"processes {sorted(left)[:10]} are still in the cgroup /{name} "
                              f"after {timeout:.0f}s",
                              "a process stuck in the kernel (D state) cannot be killed; look "
                              "at it with 'ps -o pid,stat,wchan -p <pid>'")
        for pid in left - {os.getpid()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.1)


def remove(name: str, *, mounts: list[Path] | None = None, timeout: float = 20.0) -> None:
    """Kill what is left in the tree and remove its directories, deepest first."""
    kill_all(name, mounts=mounts, timeout=timeout)
    problems: list[str] = []
    for top in existing(name, mounts):
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()),
                      key=lambda p: len(p.parts), reverse=True)
        for path in [*dirs, top]:
            for attempt in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    # EBUSY for a moment after the last process left (v1 release is async).
                    if attempt == 49:
                        problems.append(f"{path}: {exc.strerror}")
                    time.sleep(0.05)
    if problems:
        raise DexkitError("could not remove the node sandbox's cgroups: " + "; ".join(problems),
                          "a process may still be in them (see cgroup.procs)")
