"""Which cluster a project command uses when none is named (dexkit.sandbox.target)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dexkit.sandbox.controlplane import SandboxLayout, SandboxState, sandbox_dir
from dexkit.sandbox.process import ProcessRecord, start_ticks
from dexkit.sandbox.target import SANDBOX_CONTEXT, resolve, running_sandbox, sandbox_cluster

KUBECONFIG = f"""\
apiVersion: v1
kind: Config
clusters:
- name: {SANDBOX_CONTEXT}
  cluster: {{server: "https://127.0.0.1:6443", certificate-authority-data: Q0E=}}
users: []
contexts: []
"""


@pytest.fixture
def alive() -> Iterator[subprocess.Popen[bytes]]:
    """A real process standing in for the sandbox's kube-apiserver (only its PID is read)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def _state(project: Path, pid: int, ticks: int | None) -> SandboxState:
    directory = sandbox_dir(project.resolve())
    directory.mkdir(parents=True)
    layout = SandboxLayout(directory)
    layout.kubeconfig.write_text(KUBECONFIG)
    state = SandboxState(dir=directory, kubeconfig=str(layout.kubeconfig), processes=[
        ProcessRecord("kube-apiserver", pid, ticks, ("kube-apiserver",), "log")])
    state.save()
    return state


def test_a_running_sandbox_is_used_when_nothing_is_named(
        tmp_path: Path, alive: subprocess.Popen[bytes]) -> None:
    state = _state(tmp_path, alive.pid, start_ticks(alive.pid))
    resolved = resolve(tmp_path, None, None, environ={})
    assert resolved.target.kubeconfig == Path(state.kubeconfig)
    assert "using the project's running sandbox" in resolved.note
    assert sandbox_cluster(state).server == "https://127.0.0.1:6443"
    assert sandbox_cluster(state).ca_data == "Q0E="


@pytest.mark.parametrize(("kubeconfig", "context", "environ"), [
    (Path("/elsewhere/config"), None, {}),
    (None, "prod", {}),
    (None, None, {"KUBECONFIG": "/elsewhere/config"}),
])
def test_anything_the_user_names_wins(tmp_path: Path, alive: subprocess.Popen[bytes],
                                      kubeconfig: Path | None, context: str | None,
                                      environ: dict[str, str]) -> None:
    _state(tmp_path, alive.pid, start_ticks(alive.pid))
    resolved = resolve(tmp_path, kubeconfig, context, environ=environ)
    assert (resolved.target.kubeconfig, resolved.target.context) == (kubeconfig, context)
    assert resolved.note == ""


def test_a_stopped_or_recycled_sandbox_is_not_used(tmp_path: Path,
                                                   alive: subprocess.Popen[bytes]) -> None:
    ticks = start_ticks(alive.pid)
    assert ticks is not None
    _state(tmp_path, alive.pid, ticks + 1)  # the PID now belongs to another process
    assert running_sandbox(tmp_path) is None
    assert resolve(tmp_path, None, None, environ={}).note == ""


def test_no_state_or_a_broken_state_file_is_no_sandbox(tmp_path: Path) -> None:
    assert running_sandbox(tmp_path) is None
    directory = sandbox_dir(tmp_path.resolve())
    directory.mkdir(parents=True)
    (directory / "state.json").write_text("{not json")
    assert running_sandbox(tmp_path) is None
    assert os.environ.get("KUBECONFIG") is None  # the test run itself names no cluster


def test_asking_for_the_sandbox_imports_no_certificate_or_http_code() -> None:
    """Every project command asks; only ``sandbox up`` needs controlplane's imports."""
    code = ("import sys; import dexkit.sandbox.target\n"
            "print([m for m in ('cryptography', 'urllib.request', 'dexkit.sandbox.controlplane')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
