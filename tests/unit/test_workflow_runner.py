"""The kind e2e harness's GitHub Actions runner (tests/e2e/workflow.py): its conditions, outputs,
permissions and variables, as GitHub defines them. The runner itself runs the real workflow in
tests/e2e/test_kind.py; these pin down the rules it judges steps by."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.workflow import (
    FORK_PULL_REQUEST,
    Facts,
    GitHub,
    IdTokenService,
    Job,
    Runner,
    StepRun,
    evaluate,
    load_job,
    permissions,
    read_outputs,
)


def _step(step_id: str, returncode: int | None, outputs: dict[str, str] | None = None,
          continue_on_error: bool = False) -> StepRun:
    return StepRun(step_id, "true", "", returncode, id=step_id, outputs=outputs or {},
                   continue_on_error=continue_on_error)


STEPS = {"oidc": _step("oidc", 0, {"available": "true"}), "skipped": _step("skipped", None),
         "broken": _step("broken", 1), "tolerated": _step("tolerated", 1, continue_on_error=True)}


@pytest.mark.parametrize(("condition", "failed", "expected"), [
    ("success()", False, True),
    ("success()", True, False),
    ("failure()", True, True),
    ("always()", True, True),
    ("cancelled()", False, False),
    # Without a status function GitHub means success() && (...).
    ("steps.oidc.outputs.available == 'true'", False, True),
    ("steps.oidc.outputs.available == 'true'", True, False),
    ("${{ steps.oidc.outputs.available == 'TRUE' }}", False, True),  # case-insensitive
    ("steps.oidc.outputs.available != 'true'", False, False),
    ("steps.oidc.outputs.missing == ''", False, True),  # a missing output reads as ''
    ("steps.none.outputs.available != 'true'", False, True),
    ("steps.skipped.outcome == 'skipped'", False, True),
    ("steps.broken.outcome == 'failure' && steps.broken.conclusion == 'failure'", False, True),
    ("steps.tolerated.outcome == 'failure' && steps.tolerated.conclusion == 'success'", False,
     True),
    ("always() && !(steps.broken.outcome == 'success')", True, True),
    ("failure() || github.event_name == 'push'", False, True),
    ("github.repository_owner == 'dexkit-ci'", False, True),
    ("'it''s' == 'IT''S'", False, True),
])
def test_conditions_are_judged_as_github_judges_them(condition: str, failed: bool,
                                                     expected: bool) -> None:
    assert evaluate(condition, Facts(failed, STEPS, GitHub())) is expected


@pytest.mark.parametrize("condition", [
    "env.ACTIONS_ID_TOKEN_REQUEST_URL != ''",  # a context the harness does not have
    "contains(github.ref, 'main')",  # a function it does not have
    "steps.oidc.outputs",  # not a value
    "success() == true",  # a literal it does not read
    "steps.oidc.outcome == 'success' &&",  # unfinished
    "(success()",
    "github.ref =~ 'main'",
])
def test_a_condition_the_harness_cannot_judge_raises(condition: str) -> None:
    with pytest.raises(ValueError):
        evaluate(condition, Facts(False, STEPS, GitHub()))


def test_outputs_are_read_as_github_writes_them(tmp_path: Path) -> None:
    path = tmp_path / "output"
    path.write_text("available=true\nempty=\nnote<<EOF\nline one\nline=two\nEOF\n")
    assert read_outputs(path) == {"available": "true", "empty": "",
                                  "note": "line one\nline=two"}
    assert read_outputs(tmp_path / "none") == {}
    path.write_text("note<<EOF\nnever ends\n")
    with pytest.raises(ValueError):
        read_outputs(path)


def test_permissions_as_github_grants_them() -> None:
    assert permissions(None) == {}  # GitHub's default: never an ID token
    assert permissions({"contents": "read", "id-token": "write"})["id-token"] == "write"
    assert permissions("write-all")["id-token"] == "write"
    assert "id-token" not in permissions("read-all")  # id-token has no read
    with pytest.raises(ValueError):
        permissions(["id-token"])


def _runner(tmp_path: Path, **more: object) -> Runner:
    base = {"PATH": "/usr/bin", "GITHUB_TOKEN": "leak", "ACTIONS_ID_TOKEN_REQUEST_URL": "leak",
            "RUNNER_OS": "leak", "KEEP": "1"}
    return Runner(root=tmp_path, repository=tmp_path, base_env=base,
                  id_token=IdTokenService("http://127.0.0.1:1/token?api-version=2.0", "bearer"),
                  **more)  # type: ignore[arg-type]


def test_a_job_gets_an_id_token_only_when_github_would_give_it_one(tmp_path: Path) -> None:
    allowed = Job({}, [], {"id-token": "write"})
    env = _runner(tmp_path).env(allowed)
    assert env["ACTIONS_ID_TOKEN_REQUEST_URL"].startswith("http://127.0.0.1:1/")
    assert env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"] == "bearer"
    assert env["GITHUB_REPOSITORY_OWNER"] == "dexkit-ci" and env["KEEP"] == "1"
    assert "GITHUB_TOKEN" not in env and "RUNNER_OS" not in env  # never the harness's own
    for job, github in ((Job({}, [], {"contents": "read"}), GitHub()),
                        (allowed, FORK_PULL_REQUEST)):
        env = _runner(tmp_path).env(job, github)
        assert "ACTIONS_ID_TOKEN_REQUEST_URL" not in env
        assert "ACTIONS_ID_TOKEN_REQUEST_TOKEN" not in env
    assert _runner(tmp_path).env(allowed, FORK_PULL_REQUEST)["GITHUB_EVENT_NAME"] == \
        "pull_request"


def test_a_step_key_the_harness_does_not_run_is_refused(tmp_path: Path) -> None:
    workflow = tmp_path / "w.yml"
    workflow.write_text("jobs:\n  j:\n    steps:\n    - run: 'true'\n      shell: sh\n")
    with pytest.raises(ValueError, match="shell"):
        load_job(workflow, "j")
    workflow.write_text("permissions: {id-token: write}\njobs:\n  j:\n    permissions: {}\n"
                        "    steps:\n    - run: 'true'\n")
    assert not load_job(workflow, "j").may_have_an_id_token  # the job's own replace them


@pytest.mark.parametrize("cache", ["pip", None])
def test_setup_python_with_cache_pip_gives_later_steps_the_runners_pip_cache(
        tmp_path: Path, cache: str | None) -> None:
    runner = _runner(tmp_path / "run", pip_cache=tmp_path / "kept")
    for directory in (runner.workspace, runner.runner_temp, runner.local_bin):
        directory.mkdir(parents=True)
    runner.hosts.write_bytes(Path("/etc/hosts").read_bytes())
    setup: dict[str, object] = {"uses": "actions/setup-python@v5",
                                "with": {"python-version": "3.11", "cache": cache}}
    job = Job({}, [setup, {"id": "s", "run": 'echo "dir=${PIP_CACHE_DIR:-}" >> "$GITHUB_OUTPUT"'}])
    runs = runner._steps(job, enumerate(job.steps), runner.github, label="")
    assert runs[1].returncode == 0, runs[1].output
    assert runs[1].outputs == {"dir": str(tmp_path / "kept") if cache else ""}
