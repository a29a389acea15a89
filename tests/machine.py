"""The machine-wide lock that keeps what changes the machine apart from what checks it.

A test module that takes what belongs to the machine (the node sandbox's bridge, iptables rules
and cgroup tree, a container engine, port 32000 that kube-proxy captures) holds it exclusively
while it runs, and compares the machine before and after. Level-1 sandboxes (loopback,
kernel-chosen ports above the NodePort range) neither change nor compare the machine and take
nothing; the disk-full tests mount their tmpfs in a mount namespace of their own. ``nox -s
bench`` holds it shared while it times, exclusively for its node and kind sections.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path

MACHINE_LOCK_WAIT = 45 * 60.0  # seconds: longer than a whole cold suite


class MachineLock:
    """``flock`` on one file per machine: a test module that takes what belongs to the machine
    holds it exclusively while it runs (the module docstring says who holds it shared). Two
    runs at once (a developer's and CI's) take turns for the machine's modules; a wait is said,
    and fails by name after :data:`MACHINE_LOCK_WAIT`. (filelock's FileLock is an exclusive
    ``flock`` too, so runs of older checkouts take part.)"""

    def __init__(self) -> None:
        base = Path("/run/lock")
        base = base if os.access(base, os.W_OK) else Path(tempfile.gettempdir())
        self.path = base / "dexkit-e2e.lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    def take(self, exclusive: bool, why: str) -> None:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            self.waiting(why)
        deadline = time.monotonic() + MACHINE_LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.timed_out(f"another dexkit e2e run held {self.path} for "
                                   f"{MACHINE_LOCK_WAIT / 60:.0f} minutes")
                time.sleep(1.0)

    def waiting(self, why: str) -> None:
        sys.stderr.write(f"another dexkit e2e run holds {self.path}; waiting for it ({why})\n")

    def timed_out(self, message: str) -> None:
        raise TimeoutError(message)

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
