"""Local peer processes: start with logs in files, wait until ready, stop without orphans.

Rules:
- Every peer runs in its own session (so its own process group) with stdout and stderr appended
  to one log file; nothing it prints reaches dexkit's terminal, and closing that terminal does
  not stop it.
- ``start_process`` returns only when the ready check passes. If the process exits first, or the
  check does not pass within the timeout, the process group is stopped and a
  :class:`~dexkit.errors.DexkitError` names the peer and carries the last lines of its log.
- Stopping sends SIGTERM to the whole group, waits, then SIGKILLs what is left; stopping a
  process that is already gone is not an error. A process recorded by another dexkit process is
  stopped only if its start time still matches, so a recycled PID is never signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dexkit.errors import DexkitError

ReadyCheck = Callable[[], bool]
TAIL_LINES = 25
_POLL = 0.25
_PR_SET_PDEATHSIG = 1


class PeerExited(DexkitError):
    """A peer exited before its ready check passed (its exit code is kept)."""

    def __init__(self, message: str, hint: str, *, code: int) -> None:
        super().__init__(message, hint)
        self.code = code


@dataclass(frozen=True)
class ProcessRecord:
    """What is needed to find and stop a peer later, from any process: kept in the state file."""

    name: str
    pid: int
    start_ticks: int | None
    argv: tuple[str, ...]
    log: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "start_ticks": self.start_ticks,
                "argv": list(self.argv), "log": self.log}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        ticks = data.get("start_ticks")
        return cls(name=str(data["name"]), pid=int(data["pid"]),
                   start_ticks=int(ticks) if ticks is not None else None,
                   argv=tuple(str(a) for a in data.get("argv", ())), log=str(data["log"]))


class ManagedProcess:
    """A peer this process started; ``stop`` is idempotent."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path,
                 argv: Sequence[str]) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.argv = tuple(argv)
        self.record = ProcessRecord(name=name, pid=popen.pid, start_ticks=start_ticks(popen.pid),
                                    argv=self.argv, log=str(log_path))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        _signal_group(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=timeout)
        # Members of the group that outlived the leader (none expected, but never leave any).
        _signal_group(self.popen.pid, signal.SIGKILL)


def start_process(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    ready_check: ReadyCheck,
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
    on_started: Callable[[ManagedProcess], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> ManagedProcess:
    """Start ``argv`` as peer ``name`` and wait until ``ready_check()`` returns True.

    With ``die_with_parent`` (Linux), the peer gets SIGTERM if this process dies without
    stopping it (a test run killed half-way); without it the peer outlives this process, as
    ``dexkit sandbox up`` wants, and is stopped through the state file. ``on_started`` is
    called as soon as the process exists, before the wait, so that it can be recorded even if
    this process is killed while waiting.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- dexkit: starting {name}: {' '.join(argv)}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=dict(env) if env is not None else None, cwd=cwd,
                preexec_fn=_term_with_parent if die_with_parent else None,
            )
        except OSError as exc:
            raise DexkitError(f"cannot start {name}: {exc.strerror or exc}: {argv[0]}",
                              f"check that {argv[0]} exists and is executable "
                              "(dexkit sandbox peers)") from exc
    process = ManagedProcess(name, popen, log_path, argv)
    try:
        if on_started is not None:
            on_started(process)
        wait_ready(process, ready_check, timeout=timeout, clock=clock)
    except BaseException:
        process.stop()
        raise
    return process


def _term_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when the parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_ready(process: ManagedProcess, ready_check: ReadyCheck, *, timeout: float,
               clock: Callable[[], float] = time.monotonic) -> None:
    deadline = clock() + timeout
    while True:
        code = process.popen.poll()
        if code is not None:
            raise PeerExited(
                f"{process.name} exited with code {code} before it was ready"
                + _tail_block(process.log_path),
                f"read the whole log: {process.log_path}", code=code)
        if _safe_check(ready_check):
            return
        if clock() >= deadline:
            raise DexkitError(
                f"{process.name} was not ready after {timeout:.0f} s"
                + _tail_block(process.log_path),
                f"read the whole log: {process.log_path}; a slow machine may need a longer "
                "timeout")
        time.sleep(_POLL)


def _safe_check(check: ReadyCheck) -> bool:
    try:
        return bool(check())
    except OSError:
        return False


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of a log (empty if it does not exist)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except FileNotFoundError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


def _tail_block(path: Path) -> str:
    last = tail(path)
    if not last:
        return " (its log is empty)"
    return f"; last lines of {path.name}:\n" + "\n".join(f"  {line}" for line in last)


# --- processes recorded by another dexkit process -------------------------------------------


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22 overall
    except (IndexError, ValueError):
        return None


def is_running(record: ProcessRecord) -> bool:
    """True if the recorded process is alive and is still the one that was recorded."""
    if not _pid_exists(record.pid):
        return False
    if _is_zombie(record.pid):
        return False
    if record.start_ticks is None:
        return True
    return start_ticks(record.pid) == record.start_ticks


def stop_record(record: ProcessRecord, timeout: float = 10.0,
                clock: Callable[[], float] = time.monotonic) -> bool:
    """Stop a recorded peer's process group; True if something was running."""
    if not is_running(record):
        return False
    _signal_group(record.pid, signal.SIGTERM)
    deadline = clock() + timeout
    while clock() < deadline:
        if not is_running(record):
            break
        time.sleep(_POLL)
    else:
        _signal_group(record.pid, signal.SIGKILL)
        kill_deadline = clock() + timeout
        while is_running(record) and clock() < kill_deadline:
            time.sleep(_POLL)
    _signal_group(record.pid, signal.SIGKILL)
    return True


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_zombie(pid: int) -> bool:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = raw[raw.rfind(")") + 2:].split()
    return bool(fields) and fields[0] == "Z"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    # Every peer is a session leader, so its PID is its process group ID.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
