"""`kubectl dexkit ...` through the real kubectl: it finds the kubectl-dexkit entry point on
PATH, as it finds every plugin, and runs it with the remaining arguments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def _kubectl(kubectl: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    plugin = BIN / "kubectl-dexkit"
    assert plugin.is_file(), "kubectl-dexkit is not installed: reinstall dexkit (pip install -e .)"
    env = {"PATH": f"{BIN}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path),
           "KUBECONFIG": str(tmp_path / "kubeconfig"), "NO_COLOR": "1"}
    return subprocess.run([str(kubectl), *args], env=env, capture_output=True, text=True,
                          check=False, timeout=60, cwd=tmp_path)


def test_kubectl_finds_the_plugin(kubectl: Path, tmp_path: Path) -> None:
    listed = _kubectl(kubectl, tmp_path, "plugin", "list")
    assert str(BIN / "kubectl-dexkit") in listed.stdout, listed.stdout + listed.stderr


def test_kubectl_dexkit_runs_dexkit(kubectl: Path, tmp_path: Path) -> None:
    from dexkit import __version__

    version = _kubectl(kubectl, tmp_path, "dexkit", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"dexkit {__version__}\n"
    helped = _kubectl(kubectl, tmp_path, "dexkit", "--help")
    assert helped.returncode == 0
    assert "Usage: kubectl dexkit" in helped.stdout
    init = _kubectl(kubectl, tmp_path, "dexkit", "init", "--dir", str(tmp_path / "p"))
    assert init.returncode == 0, init.stderr
    flags = _kubectl(kubectl, tmp_path, "dexkit", "apiserver", "flags", "--dir",
                     str(tmp_path / "p"), "-o", "yaml")
    assert flags.returncode == 0, flags.stderr
    assert "- --oidc-issuer-url=https://dex.example.com:32000" in flags.stdout


def test_errors_keep_their_shape_and_exit_code(kubectl: Path, tmp_path: Path) -> None:
    missing = _kubectl(kubectl, tmp_path, "dexkit", "render", "--dir", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert missing.stderr.count("error:") == 1 and missing.stderr.count("hint:") == 1
    usage = _kubectl(kubectl, tmp_path, "dexkit", "render", "--nope")
    assert usage.returncode == 2
    assert "hint: run 'kubectl dexkit render --help'" in usage.stderr
