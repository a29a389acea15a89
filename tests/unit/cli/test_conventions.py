"""kubectl's ecosystem conventions: shell completion, -o json|yaml, one error shape.

`kubectl dexkit` through the real kubectl is in tests/e2e/test_kubectl_plugin.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit.cli import COMMANDS

DEXKIT = str(Path(sys.executable).with_name("dexkit"))


def _complete(env: dict[str, str]) -> list[str]:
    """Ask the installed dexkit for completions as a shell would (a fresh process: the CLI
    registers commands once per process)."""
    result = subprocess.run([DEXKIT], env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                                           **env}, capture_output=True, text=True, check=False,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completion_lists_every_command() -> None:
    words = _complete({"_DEXKIT_COMPLETE": "complete_bash", "COMP_WORDS": "dexkit ",
                       "COMP_CWORD": "1"})
    assert set(words) == set(COMMANDS)


def test_bash_completion_of_one_commands_options() -> None:
    words = _complete({"_DEXKIT_COMPLETE": "complete_bash", "COMP_WORDS": "dexkit render --",
                       "COMP_CWORD": "2"})
    assert {"--dir", "--out", "--format"} <= set(words)
    values = _complete({"_DEXKIT_COMPLETE": "complete_bash",
                        "COMP_WORDS": "dexkit render --format ", "COMP_CWORD": "3"})
    assert set(values) == {"bundle", "helm-values", "eks", "eksctl"}


def test_zsh_completion_of_a_group() -> None:
    result = subprocess.run([DEXKIT], env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                                           "_DEXKIT_COMPLETE": "complete_zsh",
                                           "_TYPER_COMPLETE_ARGS": "dexkit apiserver "},
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("flags", "config", "patch", "snippet"):
        assert f'"{command}":' in result.stdout


def test_show_completion_prints_the_script(dexkit: Any) -> None:
    # A fresh process, as a user's shell runs it (Typer keeps completion state per process).
    result = subprocess.run([DEXKIT, "--show-completion", "bash"], capture_output=True,
                            text=True, check=False, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    assert "_DEXKIT_COMPLETE=complete_bash" in result.stdout
    assert "--install-completion" in dexkit("--help").out


def test_show_completion_uses_the_shell_named_not_the_parent_process() -> None:
    """From bash (or from no shell at all: CI, cron), 'zsh' asks for zsh's script."""
    result = subprocess.run(["bash", "-c", f"{DEXKIT} --show-completion zsh"],
                            capture_output=True, text=True, check=False, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    assert "compdef _dexkit_completion dexkit" in result.stdout


def _project(dexkit: Any, project: Path) -> Path:
    assert dexkit("init", "--dir", project).code == 0
    return project


@pytest.mark.parametrize("command", [("apiserver", "flags"), ("certs", "show"),
                                     ("certs", "check"), ("scenarios",)])
def test_yaml_is_the_json_document(dexkit: Any, project: Path, command: tuple[str, ...]) -> None:
    args = [*command] if command == ("scenarios",) else [*command, "--dir", str(project)]
    if command != ("scenarios",):
        _project(dexkit, project)
    as_json = dexkit(*args, "--output", "json")
    as_yaml = dexkit(*args, "-o", "yaml")
    assert as_json.code == as_yaml.code == 0, as_yaml.err
    assert yaml.safe_load(as_yaml.out) == json.loads(as_json.out)
    assert not as_yaml.out.lstrip().startswith("{")


def test_a_bad_output_format_is_a_usage_error(dexkit: Any) -> None:
    result = dexkit("scenarios", "-o", "xml")
    assert result.code == 2
    assert result.err.count("error:") == 1 and result.err.count("hint:") == 1
    assert "'text', 'json', 'yaml'" in result.err or "text|json|yaml" in result.err
