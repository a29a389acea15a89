"""Peer processes: readiness, early exits, timeouts with log tails, and stops without orphans.

The "peers" here are small Python programs, so these tests need no built binary.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import pytest

from dexkit.errors import DexkitError
from dexkit.sandbox import process

if TYPE_CHECKING:
    from pathlib import Path

# Writes its PID and a child's PID, says it is ready, then sleeps (as does its child).
SERVER = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
print("ready", flush=True)
time.sleep(600)
"""


def _pids(path: Path) -> tuple[int, int]:
    parent, child = path.read_text().split()
    return int(parent), int(child)


def _gone(pid: int) -> bool:
    record = process.ProcessRecord(name="x", pid=pid, start_ticks=None, argv=(), log="")
    return not process.is_running(record)


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_start_waits_for_ready_and_stop_kills_the_whole_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    log = tmp_path / "logs" / "server.log"
    started = process.start_process(
        "server", [sys.executable, "-c", SERVER, str(pids)], log,
        lambda: pids.exists() and "ready" in log.read_text(), timeout=30)
    parent, child = _pids(pids)
    assert started.pid == parent and started.alive()
    assert started.record.start_ticks == process.start_ticks(parent)
    assert "--- dexkit: starting server" in log.read_text()

    started.stop(timeout=5)
    assert not started.alive()
    assert _wait_gone(child), "the peer's child outlived it"
    started.stop()  # idempotent


def test_an_early_exit_is_an_error_with_the_log_tail(tmp_path: Path) -> None:
    code = "import sys; print('bad flag --nope'); sys.exit(3)"
    with pytest.raises(DexkitError) as info:
        process.start_process("etcd", [sys.executable, "-c", code], tmp_path / "etcd.log",
                              lambda: False, timeout=30)
    assert "etcd exited with code 3 before it was ready" in info.value.message
    assert "bad flag --nope" in info.value.message
    assert str(tmp_path / "etcd.log") in info.value.hint


def test_a_timeout_stops_the_peer_and_names_it(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    with pytest.raises(DexkitError) as info:
        process.start_process("kube-apiserver", [sys.executable, "-c", SERVER, str(pids)],
                              tmp_path / "apiserver.log", lambda: False, timeout=1.5)
    assert "kube-apiserver was not ready after 2 s" in info.value.message
    assert "ready" in info.value.message  # the log tail
    parent, child = _pids(pids)
    assert _wait_gone(parent) and _wait_gone(child)


def test_a_ready_check_that_cannot_connect_is_not_ready(tmp_path: Path) -> None:
    def refused() -> bool:
        raise ConnectionRefusedError

    with pytest.raises(DexkitError, match="not ready"):
        process.start_process("x", [sys.executable, "-c", "import time; time.sleep(30)"],
                              tmp_path / "x.log", refused, timeout=0.5)


def test_a_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DexkitError, match="cannot start etcd") as info:
        process.start_process("etcd", [str(tmp_path / "etcd")], tmp_path / "etcd.log",
                              lambda: True)
    assert "dexkit sandbox peers" in info.value.hint


def test_records_stop_from_another_process_and_survive_json(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = process.start_process(
        "server", [sys.executable, "-c", SERVER, str(pids)], tmp_path / "s.log",
        pids.exists, timeout=30)
    record = process.ProcessRecord.from_json(started.record.to_json())
    assert record == started.record
    assert process.is_running(record)
    try:
        assert process.stop_record(record, timeout=5)
        started.popen.wait(timeout=5)  # reap it, as its real parent would
        assert not process.is_running(record)
        assert _wait_gone(_pids(pids)[1])
        assert not process.stop_record(record)  # nothing left to stop
    finally:
        started.stop()


def test_a_recycled_pid_is_never_signalled() -> None:
    # This test process is alive, but with another start time it is not "the recorded peer".
    ticks = process.start_ticks(os.getpid())
    assert ticks is not None
    stranger = process.ProcessRecord(name="etcd", pid=os.getpid(), start_ticks=ticks + 1,
                                     argv=(), log="")
    assert not process.is_running(stranger)
    assert not process.stop_record(stranger)


def test_tail_of_a_missing_or_long_log(tmp_path: Path) -> None:
    assert process.tail(tmp_path / "none.log") == []
    log = tmp_path / "long.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process.tail(log, 3) == ["line 97", "line 98", "line 99"]
