"""Runs a GitHub Actions job's ``run:`` steps on this machine, as the runner would run them.

Rules (what a GitHub-hosted runner does, and where this machine differs):
- Steps run in order, each as ``bash --noprofile --norc -eo pipefail`` (the runner's default
  shell) in the workspace, with the job's ``env`` (``${{ github.workspace }}`` and
  ``${{ runner.temp }}`` expanded), ``CI=true`` and the variables a runner sets:
  ``GITHUB_ACTIONS``, ``GITHUB_WORKSPACE``, ``RUNNER_TEMP``, ``GITHUB_OUTPUT`` (a new file per
  step) and the ``github`` context's ``GITHUB_REPOSITORY``, ``GITHUB_REPOSITORY_OWNER``,
  ``GITHUB_REF``, ``GITHUB_EVENT_NAME`` (:class:`GitHub`). None of ``GITHUB_*``, ``RUNNER_*``
  and ``ACTIONS_*`` is inherited from the environment the harness itself runs in.
- A step may have ``name``, ``id``, ``if``, ``run``, ``uses``, ``with`` and
  ``continue-on-error``; any other key raises, as does anything below the harness cannot do:
  it never ignores what it does not understand.
- ``if:`` is GitHub's expression language, this much of it: the status functions
  ``success()``, ``failure()``, ``always()``, ``cancelled()`` (never true here); the contexts
  ``steps.<id>.outcome``, ``steps.<id>.conclusion``, ``steps.<id>.outputs.<name>`` and
  ``github.repository|repository_owner|ref|event_name``; ``'string'`` literals; ``==`` and
  ``!=`` (strings compared without regard to case, a missing value read as ``''``, as GitHub
  compares them); ``!``, ``&&``, ``||`` and parentheses; with or without ``${{ }}``. A condition
  that calls no status function means ``success() && (condition)``, as on GitHub.
- A step's outcome is ``success``, ``failure`` or ``skipped``; its conclusion is the same,
  except that a failure of a ``continue-on-error: true`` step concludes ``success`` and the job
  goes on as if it had passed. ``name=value`` lines and ``name<<DELIMITER`` blocks a step
  writes to ``$GITHUB_OUTPUT`` become ``steps.<id>.outputs``.
- The job's OIDC ID token: the job's ``permissions`` (its own, else the workflow's) must grant
  ``id-token: write`` (GitHub's default grants none), and the run must not be a pull request
  from a fork (GitHub gives those none, whatever the workflow asks); then, if the runner has a
  token service (:class:`IdTokenService`, a stand-in: GitHub's is not reachable here), every
  step gets ``ACTIONS_ID_TOKEN_REQUEST_URL`` and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN``, as a
  runner gives them.
- ``uses:`` steps are the runner's: ``actions/checkout`` is the workspace (a copy of the
  repository's tracked files), ``actions/setup-python`` is a fresh virtualenv first on
  ``PATH``, and with ``cache: pip`` pip's cache for the steps after it is the runner's
  ``pip_cache`` (what actions/cache restores on a runner; a fresh one without it); the others
  (``upload-artifact``) are recorded as not run.
- Each step runs in a private mount namespace where ``/etc/hosts`` and ``/usr/local/bin`` are
  the run's own files: ``sudo tee -a /etc/hosts`` and ``sudo mv kind /usr/local/bin`` work as on
  a runner, and the machine's own files are never touched.
- ``overrides`` replace job ``env`` values (the kind node image built here); ``shims`` are
  commands put first on ``PATH`` (``curl`` that serves the kind binary built here, ``sudo``);
  ``after`` runs a function after the step whose script starts with a given command (what this
  machine needs and a runner does not: the Dex image loaded, since no registry is reachable).
- :meth:`Runner.replay` runs some of the job's steps again in the same workspace, with their
  conditions judged afresh, as another job of the same workflow would (a pull request from a
  fork, say): one cluster serves both jobs' logins.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{\s*([a-z_.]+)\s*\}\}")
STEP_KEYS = {"name", "id", "if", "run", "uses", "with", "continue-on-error"}
# The permission scopes of a job's GITHUB_TOKEN, for 'read-all' and 'write-all'.
SCOPES = ("actions", "attestations", "checks", "contents", "deployments", "discussions",
          "id-token", "issues", "models", "packages", "pages", "pull-requests",
          "security-events", "statuses")
RUNNER_PREFIXES = ("GITHUB_", "RUNNER_", "ACTIONS_")


@dataclass
class StepRun:
    name: str
    script: str
    condition: str
    returncode: int | None = None  # None: not run
    output: str = ""
    seconds: float = 0.0
    note: str = ""
    id: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    continue_on_error: bool = False

    @property
    def ran(self) -> bool:
        return self.returncode is not None

    @property
    def outcome(self) -> str:
        if not self.ran:
            return "skipped"
        return "success" if self.returncode == 0 else "failure"

    @property
    def conclusion(self) -> str:
        return "success" if self.outcome == "failure" and self.continue_on_error else \
            self.outcome

    def __str__(self) -> str:
        state = "not run" if not self.ran else f"rc={self.returncode}"
        return f"--- step '{self.name}' ({state}, {self.seconds:.1f}s) {self.note}\n{self.output}"


@dataclass(frozen=True)
class GitHub:
    """The ``github`` context of a run: what the job is (and the GITHUB_* variables)."""

    repository: str = "dexkit-ci/dexkit"
    ref: str = "refs/heads/main"
    event_name: str = "push"
    # A pull request from a fork (or Dependabot's): GitHub gives the job no ID token.
    from_fork: bool = False

    @property
    def repository_owner(self) -> str:
        return self.repository.split("/", 1)[0]

    def context(self) -> dict[str, str]:
        return {"repository": self.repository, "repository_owner": self.repository_owner,
                "ref": self.ref, "event_name": self.event_name}

    def variables(self) -> dict[str, str]:
        return {f"GITHUB_{k.upper()}": v for k, v in self.context().items()}


FORK_PULL_REQUEST = GitHub(ref="refs/pull/1/merge", event_name="pull_request", from_fork=True)


@dataclass(frozen=True)
class IdTokenService:
    """What a job with ``id-token: write`` finds in ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN."""

    url: str
    request_token: str


@dataclass(frozen=True)
class Job:
    env: dict[str, str]
    steps: list[dict[str, Any]]
    permissions: dict[str, str] = field(default_factory=dict)

    @property
    def may_have_an_id_token(self) -> bool:
        return self.permissions.get("id-token") == "write"


def load_job(workflow: Path, job: str) -> Job:
    data = yaml.safe_load(workflow.read_text())
    body = data["jobs"][job]
    for step in body["steps"]:
        unknown = set(step) - STEP_KEYS
        if unknown:
            raise ValueError(f"the harness does not run steps with {sorted(unknown)}: {step}")
    granted = body["permissions"] if "permissions" in body else data.get("permissions")
    return Job({k: str(v) for k, v in (body.get("env") or {}).items()}, body["steps"],
               permissions(granted))


def permissions(value: object) -> dict[str, str]:
    """A ``permissions:`` value as scope -> access (absent: GitHub's default, whose id-token
    is none either way)."""
    if value is None:
        return {}
    if value in ("read-all", "write-all"):
        access = str(value).removesuffix("-all")
        return {scope: "write" if scope == "id-token" and access == "write" else access
                for scope in SCOPES if not (scope == "id-token" and access == "read")}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    raise ValueError(f"the harness does not know the permissions {value!r}")


def expand(text: str, context: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in context:
            raise KeyError(f"the harness has no value for ${{{{ {key} }}}}")
        return context[key]
    return EXPRESSION.sub(value, text)


# --- conditions: the part of GitHub's expression language the module docstring names -------

TOKEN = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\))"
                   r"|(?P<call>[A-Za-z_][A-Za-z0-9_]*\(\))|(?P<path>[A-Za-z_][A-Za-z0-9_.-]*))")
STATUS = ("success()", "failure()", "always()", "cancelled()")


@dataclass(frozen=True)
class Facts:
    """What a condition may read: whether the job has failed, the steps so far, github."""

    failed: bool
    steps: Mapping[str, StepRun]
    github: GitHub

    def call(self, name: str) -> bool:
        return {"success()": not self.failed, "failure()": self.failed, "always()": True,
                "cancelled()": False}[name]

    def lookup(self, path: str) -> str | None:
        parts = path.split(".")
        if parts[0] == "github" and len(parts) == 2 and parts[1] in self.github.context():
            return self.github.context()[parts[1]]
        if parts[0] == "steps" and len(parts) >= 3:
            step = self.steps.get(parts[1])
            if len(parts) == 3 and parts[2] in ("outcome", "conclusion"):
                return None if step is None else str(getattr(step, parts[2]))
            if len(parts) == 4 and parts[2] == "outputs":
                return None if step is None else step.outputs.get(parts[3])
        raise ValueError(f"the harness does not know the context {path!r}")


def _tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    text = text.strip()
    while at < len(text):
        match = TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise ValueError(f"the harness cannot read the condition {text!r} at {text[at:]!r}")
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        at = match.end()
    return found


class _Condition:
    """Recursive descent over: or := and ('||' and)*; and := unary ('&&' unary)*;
    unary := '!' unary | operand (('=='|'!=') operand)?; operand := '(' or ')' | call | path
    | string."""

    def __init__(self, text: str, facts: Facts) -> None:
        self.text, self.facts = text, facts
        self.tokens = _tokens(text)
        self.at = 0

    def value(self) -> bool:
        result = self._or()
        if self.at != len(self.tokens):
            raise ValueError(f"the harness cannot read the condition {self.text!r}")
        return _truthy(result)

    def _peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def _or(self) -> object:
        left = self._and()
        while self._peek() == "||":
            self.at += 1
            right = self._and()
            left = left if _truthy(left) else right
        return left

    def _and(self) -> object:
        left = self._unary()
        while self._peek() == "&&":
            self.at += 1
            right = self._unary()
            left = right if _truthy(left) else left
        return left

    def _unary(self) -> object:
        if self._peek() == "!":
            self.at += 1
            return not _truthy(self._unary())
        left = self._operand()
        if self._peek() in ("==", "!="):
            op = self.tokens[self.at][1]
            self.at += 1
            same = _equal(left, self._operand())
            return same if op == "==" else not same
        return left

    def _operand(self) -> object:
        if self.at >= len(self.tokens):
            raise ValueError(f"the condition {self.text!r} ends too soon")
        kind, text = self.tokens[self.at]
        self.at += 1
        if text == "(" and kind == "op":
            inner = self._or()
            if self._peek() != ")":
                raise ValueError(f"the condition {self.text!r} misses a ')'")
            self.at += 1
            return inner
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "call":
            if text not in STATUS:
                raise ValueError(f"the harness does not know the function {text!r}")
            return self.facts.call(text)
        if kind == "path":
            return self.facts.lookup(text)
        raise ValueError(f"the harness cannot read the condition {self.text!r} at {text!r}")


def _truthy(value: object) -> bool:
    return value not in (None, False, "")


def _equal(left: object, right: object) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        raise ValueError("the harness compares strings only")
    return str(left or "").casefold() == str(right or "").casefold()


def evaluate(condition: str, facts: Facts) -> bool:
    """``if:`` as GitHub judges it (the module docstring says how much of it)."""
    text = condition.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2].strip()
    if not any(call in text.replace(" ", "") for call in STATUS):
        text = f"success() && ({text})"
    return _Condition(text, facts).value()


def read_outputs(path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT``: ``name=value`` lines and ``name<<DELIMITER`` ... ``DELIMITER``."""
    if not path.is_file():
        return {}
    outputs: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block: list[str] = []
            for inner in lines:
                if inner == delimiter:
                    break
                block.append(inner)
            else:
                raise ValueError(f"$GITHUB_OUTPUT: no end ({delimiter!r}) to {name!r}")
            outputs[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
        elif line.strip():
            raise ValueError(f"$GITHUB_OUTPUT: the harness cannot read {line!r}")
    return outputs


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
    github: GitHub = field(default_factory=GitHub)
    id_token: IdTokenService | None = None
    pip_cache: Path | None = None  # setup-python's `cache: pip`, as the runner's cache keeps it

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

    def env(self, job: Job, github: GitHub | None = None) -> dict[str, str]:
        github = github or self.github
        env = {k: v for k, v in self.base_env.items() if not k.startswith(RUNNER_PREFIXES)}
        env.update({k: expand(v, self.context()) for k, v in job.env.items()})
        env.update(self.overrides)
        env.update({"CI": "true", "GITHUB_ACTIONS": "true",
                    "GITHUB_WORKSPACE": str(self.workspace),
                    "RUNNER_TEMP": str(self.runner_temp), **github.variables()})
        if job.may_have_an_id_token and not github.from_fork and self.id_token is not None:
            env.update({"ACTIONS_ID_TOKEN_REQUEST_URL": self.id_token.url,
                        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.id_token.request_token})
        env["PATH"] = os.pathsep.join([str(self.root / "python" / "bin"), str(self.root / "shims"),
                                       env.get("PATH", "")])
        return env

    def run(self, job: Job) -> list[StepRun]:
        self.prepare()
        return self._steps(job, enumerate(job.steps), self.github, label="")

    def replay(self, job: Job, first: str, last: str, github: GitHub, *,
               id_token: IdTokenService | None = None) -> list[StepRun]:
        """The job's steps from id ``first`` to id ``last`` again, in this run's workspace, as
        a job of ``github`` runs them: their own step results and variables, and the ID token
        GitHub would give it (from ``id_token`` if given, else the runner's service)."""
        ids = [step.get("id") for step in job.steps]
        start, end = ids.index(first), ids.index(last)
        chosen = list(enumerate(job.steps))[start:end + 1]
        runner = replace(self, id_token=id_token) if id_token is not None else self
        return runner._steps(job, chosen, github, label=f"as {github.event_name}: ")

    def _steps(self, job: Job, steps: Iterable[tuple[int, dict[str, Any]]], github: GitHub, *,
               label: str) -> list[StepRun]:
        env = self.env(job, github)
        runs: list[StepRun] = []
        done: dict[str, StepRun] = {}
        failed = False
        for index, step in steps:
            name = label + str(step.get("name") or step.get("uses") or f"step {index + 1}")
            condition = str(step.get("if", "success()")).strip()
            script = str(step.get("run", ""))
            current = StepRun(name, script, condition, id=step.get("id"),
                              continue_on_error=bool(step.get("continue-on-error", False)))
            runs.append(current)
            if current.id:
                done[current.id] = current
            if "run" not in step:
                current.note = f"(uses: {step.get('uses')}: the harness's own)"
                if str(step.get("uses", "")).startswith("actions/setup-python@") and \
                        (step.get("with") or {}).get("cache") == "pip":
                    env["PIP_CACHE_DIR"] = str(self.pip_cache or self.runner_temp / "pip")
                    current.note += f"; pip's cache: {env['PIP_CACHE_DIR']}"
                continue
            if not evaluate(condition, Facts(failed, done, github)):
                continue
            outputs = self.runner_temp / f"output-{index}-{id(current)}"
            self._run_step(current, expand(script, self.context()),
                           {**env, "GITHUB_OUTPUT": str(outputs)})
            current.outputs = read_outputs(outputs)
            failed = failed or current.conclusion == "failure"
            if current.returncode == 0:
                for command, hook in self.after.items():
                    if script.lstrip().startswith(command):
                        started = time.monotonic()
                        said = hook(env)
                        runs.append(StepRun(f"harness, after '{command}'", "", "", 0, said,
                                            time.monotonic() - started,
                                            note="(not in the workflow)"))
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
