"""`dexkit doctor` through the real CLI: table or JSON, hints, verdict, exit code."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

Project = Callable[..., Path]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _project(new_project: Project) -> Path:
    port = _closed_port()
    return new_project(issuer=f"https://127.0.0.1:{port}",
                       tls={"hosts": [], "ips": ["127.0.0.1"]},
                       dex={"service": {"type": "ClusterIP"}})


def test_json_names_the_broken_link_and_exits_1(dexkit: Any, new_project: Project) -> None:
    project = _project(new_project)
    result = dexkit("doctor", "--dir", project, "--offline", "--output", "json")
    assert result.code == 1, result.err
    data = json.loads(result.out)
    assert data["passed"] is False and data["failed"] == ["network.tcp"]
    assert data["warnings"] == []
    by_id = {r["id"]: r for r in data["results"]}
    assert by_id["network.tcp"]["hint"].startswith("Dex is not running")
    assert by_id["cluster.reachable"]["message"].startswith("--offline")
    assert by_id["local.sans"]["status"] == "ok"


def test_text_shows_table_hints_and_verdict(dexkit: Any, new_project: Project) -> None:
    project = _project(new_project)
    result = dexkit("doctor", "--dir", project, "--offline")
    assert result.code == 1
    assert "network.tcp" in result.out and "FAIL" in result.out
    assert "hint [network.tcp]: Dex is not running" in result.err
    assert "doctor: broken: network.tcp (1 failed, 0 warnings" in result.err


def test_unknown_login_is_a_usage_error(dexkit: Any, new_project: Project) -> None:
    result = dexkit("doctor", "--dir", new_project(), "--login", "browser")
    assert result.code == 2 and "unknown login 'browser'" in result.err


def test_no_project_fails_the_config_check_only(dexkit: Any, tmp_path: Path) -> None:
    result = dexkit("doctor", "--dir", tmp_path, "--offline", "--output", "json")
    data = json.loads(result.out)
    assert result.code == 1 and data["failed"] == ["local.config"]
    assert "dexkit init" in data["results"][0]["hint"]
