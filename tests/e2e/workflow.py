"""Runs a GitHub Actions job's ``run:`` steps on this machine, as the runner would run them.

Rules (what a GitHub-hosted runner does, and where this machine differs):
- Steps run in order, each as ``bash --noprofile --norc -eo pipefail`` (the runner's default
  shell) in the workspace, with the job's ``env`` (``${{ github.workspace }}`` and
  ``${{ runner.temp }}`` expanded) and ``CI=true``. ``if: failure()`` steps run only after a
  failed step, ``if: always()`` steps always, others only while nothing failed.
- ``uses:`` steps are the runner's: ``actions/checkout`` is the workspace (a copy of the
  repository's tracked files), ``actions/setup-python`` is a fresh virtualenv first on
  ``PATH``; the others (``upload-artifact``) are recorded as not run.
- Each step runs in a private mount namespace where ``/etc/hosts`` and ``/usr/local/bin`` are
  the run's own files: ``sudo tee -a /etc/hosts`` and ``sudo mv kind /usr/local/bin`` work as on
  a runner, and the machine's own files are never touched.
- ``overrides`` replace job ``env`` values (the kind node image built here); ``shims`` are
  commands put first on ``PATH`` (``curl`` that serves the kind binary built here, ``sudo``);
  ``after`` runs a function after the step whose script starts with a given command (what this
  machine needs and a runner does not: the Dex image loaded, since no registry is reachable).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*([a-z_.]+)\s*\}\}")


@dataclass
class StepRun:
    name: str
    script: str
    condition: str
    returncode: int | None = None  # None: not run
    output: str = ""
    seconds: float = 0.0
    note: str = ""

    @property
    def ran(self) -> bool:
        return self.returncode is not None

    def __str__(self) -> str:
        state = "not run" if not self.ran else f"rc={self.returncode}"
        return f"--- step '{self.name}' ({state}, {self.seconds:.1f}s) {self.note}\n{self.output}"


@dataclass(frozen=True)
class Job:
    env: dict[str, str]
    steps: list[dict[str, Any]]


def load_job(workflow: Path, job: str) -> Job:
    data = yaml.safe_load(workflow.read_text())
    body = data["jobs"][job]
    return Job({k: str(v) for k, v in (body.get("env") or {}).items()}, body["steps"])


def expand(text: str, context: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in context:
            raise KeyError(f"the harness has no value for ${{{{ {key} }}}}")
        return context[key]
    return EXPRESSION.sub(value, text)


@dataclass
class Runner:
    """One run of a job in ``root`` (workspace, runner temp, hosts file, /usr/local/bin)."""

    root: Path
    repository: Path
    base_env: dict[str, str]
    overrides: dict[str, str] = field(default_factory=dict)
    shims: dict[str, str] = field(default_factory=dict)
    after: dict[str, Callable[[dict[str, str]], str]] = field(default_factory=dict)
    timeout: float = 900

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def runner_temp(self) -> Path:
        return self.root / "runner-temp"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def local_bin(self) -> Path:
        return self.root / "usr-local-bin"

    def prepare(self) -> None:
        """checkout, setup-python, the run's hosts file and /usr/local/bin, the shims."""
        listed = subprocess.run(["git", "-C", str(self.repository), "ls-files", "-z"],
                                capture_output=True, check=True).stdout.decode().split("\0")
        for name in filter(None, listed):
            source = self.repository / name
            if source.is_file():
                target = self.workspace / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(source.read_bytes())
                target.chmod(source.stat().st_mode & 0o777)
        subprocess.run([sys.executable, "-m", "venv", str(self.root / "python")], check=True)
        self.runner_temp.mkdir(parents=True)
        self.local_bin.mkdir(parents=True)
        self.hosts.write_bytes(Path("/etc/hosts").read_bytes())
        shims = self.root / "shims"
        shims.mkdir()
        for name, text in self.shims.items():
            (shims / name).write_text(text)
            (shims / name).chmod(0o755)

    def context(self) -> dict[str, str]:
        return {"github.workspace": str(self.workspace), "runner.temp": str(self.runner_temp)}

    def env(self, job: Job) -> dict[str, str]:
        env = dict(self.base_env)
        env.update({k: expand(v, self.context()) for k, v in job.env.items()})
        env.update(self.overrides)
        env.update({"CI": "true", "GITHUB_ACTIONS": "true",
                    "GITHUB_WORKSPACE": str(self.workspace),
                    "RUNNER_TEMP": str(self.runner_temp)})
        env["PATH"] = os.pathsep.join([str(self.root / "python" / "bin"), str(self.root / "shims"),
                                       env.get("PATH", "")])
        return env

    def run(self, job: Job) -> list[StepRun]:
        self.prepare()
        env = self.env(job)
        runs: list[StepRun] = []
        failed = False
        for index, step in enumerate(job.steps):
            name = str(step.get("name") or step.get("uses") or f"step {index + 1}")
            condition = str(step.get("if", "success()")).strip()
            script = str(step.get("run", ""))
            current = StepRun(name, script, condition)
            runs.append(current)
            if "run" not in step:
                current.note = f"(uses: {step.get('uses')}: the harness's own)"
                continue
            wanted = {"success()": not failed, "failure()": failed, "always()": True}
            if condition not in wanted:
                raise ValueError(f"the harness does not know the condition {condition!r}")
            if not wanted[condition]:
                continue
            self._run_step(current, expand(script, self.context()), env)
            failed = failed or current.returncode != 0
            if current.returncode == 0:
                for command, hook in self.after.items():
                    if script.lstrip().startswith(command):
                        runs.append(StepRun(f"harness, after '{command}'", "", "", 0,
                                            hook(env), note="(not in the workflow)"))
        return runs

    def _run_step(self, current: StepRun, script: str, env: dict[str, str]) -> None:
        path = self.root / f"step-{id(current)}.sh"
        path.write_text(script)
        inner = ('mount --bind "$1" /etc/hosts && mount --bind "$2" /usr/local/bin && '
                 'exec bash --noprofile --norc -eo pipefail "$3"')
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", inner, "sh",
                str(self.hosts), str(self.local_bin), str(path)]
        started = time.monotonic()
        try:
            done = subprocess.run(argv, env=env, cwd=self.workspace, capture_output=True,
                                  text=True, timeout=self.timeout, check=False)
            current.returncode, current.output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            current.returncode = 124
            current.output = f"timed out after {self.timeout:.0f}s: {exc.output!r}"
        current.seconds = time.monotonic() - started


CURL_SHIM = """#!/bin/sh
# The harness's curl: serves only the kind release the workflow downloads, from the kind
# binary built here (no other download reaches this machine).
out="" url=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    -*o) out="$2"; shift 2 ;;
    -*) shift ;;
    *) url="$1"; shift ;;
  esac
done
if [ "$url" != "{url}" ]; then
  echo "curl (kind harness): only {url} is served here, not '$url'" >&2
  exit 22
fi
cp "{kind}" "${{out:-kind}}"
"""
SUDO_SHIM = """#!/bin/sh
# The harness's sudo: the steps already run as root, as a runner's passwordless sudo would.
exec "$@"
"""
