"""login / verify / kubeconfig through the real CLI where no Dex is needed: the failure paths
users hit first (nothing listening, no password, bad flags) and the kubeconfig write."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import yaml


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _project(dexkit, project: Path) -> int:  # type: ignore[no-untyped-def]
    port = _closed_port()
    result = dexkit("init", "--dir", project, "--issuer", f"https://127.0.0.1:{port}",
                    "--connector", "static")
    assert result.code == 0, result.err
    return port


def test_verify_names_the_first_broken_link_and_skips_the_rest(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    port = _project(dexkit, project)
    result = dexkit("verify", "--dir", project, "--output", "json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["passed"] is False
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["TLS trust"]["status"] == "fail"
    assert f"cannot connect to 127.0.0.1:{port}" in steps["TLS trust"]["detail"]
    assert "is Dex running" in steps["TLS trust"]["hint"]
    assert all(s["status"] == "skip" for s in report["steps"][1:])
    password = (project / ".dexkit/passwords/admin@example.com").read_text().strip()
    assert password not in result.out + result.err


def test_verify_text_output_ends_with_error_and_hint(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("verify", "--dir", project)
    assert result.code == 1
    assert "TLS trust" in result.out and "skip" in result.out
    lines = result.err.strip().splitlines()
    assert lines[-2].startswith("error: TLS trust: cannot connect")
    assert lines[-1].startswith("hint: ")


def test_login_against_nothing_is_one_clear_error(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    port = _project(dexkit, project)
    result = dexkit("login", "--dir", project, "--grant", "password")
    assert result.code == 1
    assert result.err.startswith(f"error: cannot connect to https://127.0.0.1:{port}/")
    assert "Traceback" not in result.err


def test_password_grant_without_a_password(dexkit, project: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    (project / ".dexkit/passwords/admin@example.com").unlink()
    monkeypatch.delenv("DEXKIT_PASSWORD", raising=False)
    result = dexkit("verify", "--dir", project)
    assert result.code == 2
    assert "no password for admin@example.com" in result.err
    assert "DEXKIT_PASSWORD" in result.err


def test_unknown_grant_and_bad_probe(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    assert dexkit("verify", "--dir", project, "--grant", "implicit").code == 2
    bad = dexkit("verify", "--dir", project, "--can", "list")
    assert bad.code == 2 and "VERB RESOURCE" in bad.err


def test_insecure_is_loud(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    result = dexkit("verify", "--dir", project, "--insecure")
    assert "TLS VERIFICATION IS OFF" in result.err


def test_kubeconfig_writes_an_exec_user(dexkit, project: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _project(dexkit, project)
    target = tmp_path / "kube" / "config"
    result = dexkit("kubeconfig", "--dir", project, "--kubeconfig", target, "--context", "dex",
                    "--cluster", "sandbox", "--server", "https://127.0.0.1:6443",
                    "--use-context")
    assert result.code == 0, result.err
    doc = yaml.safe_load(target.read_text())
    (user,) = doc["users"]
    exec_ = user["user"]["exec"]
    assert exec_["args"][0] == "token"
    assert exec_["interactiveMode"] == "IfAvailable"
    assert doc["current-context"] == "dex"
    assert target.stat().st_mode & 0o777 == 0o600
    again = dexkit("kubeconfig", "--dir", project, "--kubeconfig", target, "--context", "dex",
                   "--cluster", "sandbox", "--server", "https://127.0.0.1:6443",
                   "--use-context")
    assert again.code == 0 and "already up to date" in again.err


def test_kubeconfig_password_grant_names_a_file_never_the_password(dexkit, project: Path,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    _project(dexkit, project)
    target = tmp_path / "config"
    assert dexkit("kubeconfig", "--dir", project, "--kubeconfig", target, "--grant",
                  "password").code == 0
    password = (project / ".dexkit/passwords/admin@example.com").read_text().strip()
    text = target.read_text()
    assert password not in text
    assert "--password-file" in text
