"""kind, for real: the CI recipe (.github/workflows/kind-e2e.yml) run verbatim against real kind
clusters built here, on every minor and across minors.

The engine, the node images and the machine check are the harness's (tests/e2e/kind_harness.py);
the workflow's steps are run as a runner runs them (tests/e2e/workflow.py). What differs from a
GitHub runner is only what this machine lacks: the kind binary and the node image are built here
(KIND_NODE_IMAGE and the download point at them), and the Dex image is built here and loaded
with 'kind load image-archive' (dex.image: dexkit.local/dex:v2.45.1), since no registry answers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dexkit.sandbox import engine, peers
from tests.e2e.kind_harness import (
    DEFAULT_VERSION,
    KIND_MINORS,
    KindHarness,
    start_harness,
)
from tests.e2e.node_sandbox import set_in_config
from tests.e2e.workflow import CURL_SHIM, SUDO_SHIM, Runner, StepRun, load_job

pytestmark = [pytest.mark.e2e]

REPOSITORY = Path(__file__).resolve().parents[2]
WORKFLOW = REPOSITORY / ".github" / "workflows" / "kind-e2e.yml"
JOB = "kind-e2e"
KIND_URL = f"https://kind.sigs.k8s.io/dl/v{peers.KIND_VERSION}/kind-linux-amd64"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


# Each minor's config on its own node image; with several minors, also the first minor's
# config on the last one's image and the other way round (the mismatch a user makes when the
# node image and kubernetesVersion disagree).
CASES = [(v, v) for v in KIND_MINORS]
if len(KIND_MINORS) > 1:
    CASES += [(KIND_MINORS[0], KIND_MINORS[-1]), (KIND_MINORS[-1], KIND_MINORS[0])]


@pytest.fixture(scope="module")
def harness() -> Iterator[KindHarness]:
    yield from start_harness()


def recipe(harness: KindHarness, root: Path, *, image: str, config_minor: str) -> Runner:
    """A runner for the workflow with this machine's differences (module docstring)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DEXKIT_", "KUBECONFIG", "VIRTUAL_ENV", "PYTHON"))}
    env.update(harness.engine.env)
    home = root / "home"
    home.mkdir(parents=True)
    env.update({"HOME": str(home), "COLUMNS": "200", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                # a runner has kubectl; the kind CLI finds docker (Debian's) on the engine
                "PATH": os.pathsep.join([str(harness.engine.layout.bin),
                                         str(harness.kubectl.parent), SYSTEM_PATH])})
    if os.environ.get("PIP_INDEX_URL"):
        env["PIP_INDEX_URL"] = os.environ["PIP_INDEX_URL"]

    def project_for_this_machine(step_env: dict[str, str]) -> str:
        project = Path(step_env["DEXKIT_DIR"])
        set_in_config(project, "image: ghcr.io/dexidp/dex:v2.45.1",
                      f"image: {harness.dex_archive.name}")
        set_in_config(project, 'kubernetesVersion: "1.37"', f'kubernetesVersion: "{config_minor}"')
        return f"dex.image: {harness.dex_archive.name}, kubernetesVersion: {config_minor}"

    def load_dex(step_env: dict[str, str]) -> str:
        harness.load_dex(step_env)
        return f"kind load image-archive {harness.dex_archive.path.name}"

    return Runner(root=root, repository=REPOSITORY, base_env=env,
                  overrides={"KIND_NODE_IMAGE": image},
                  shims={"curl": CURL_SHIM.format(url=KIND_URL, kind=harness.kind),
                         "sudo": SUDO_SHIM},
                  after={"dexkit init": project_for_this_machine,
                         "kind create cluster": load_dex})


def _report(runs: list[StepRun]) -> str:
    return "\n".join(str(r) for r in runs)


def test_the_workflow_downloads_the_kind_release_the_harness_builds() -> None:
    job = load_job(WORKFLOW, JOB)
    assert job.env["KIND_VERSION"] == f"v{peers.KIND_VERSION}"
    assert job.env["KIND_NODE_IMAGE"].startswith(f"kindest/node:v{_minor(DEFAULT_VERSION)}.")
    assert "@sha256:" in job.env["KIND_NODE_IMAGE"]  # pinned by digest, as docs/ci-kind.md says


@pytest.mark.parametrize(("config_version", "image_version"), CASES,
                         ids=[f"config-{_minor(c)}-node-{_minor(i)}" for c, i in CASES])
def test_the_ci_recipe_runs_verbatim_to_a_verified_login(
        harness: KindHarness, tmp_path: Path, config_version: str, image_version: str) -> None:
    image = harness.node_image(image_version)
    runner = recipe(harness, tmp_path / "run", image=image,
                    config_minor=_minor(config_version))
    hosts_before = Path("/etc/hosts").read_bytes()
    runs = runner.run(load_job(WORKFLOW, JOB))
    report = _report(runs)
    assert Path("/etc/hosts").read_bytes() == hosts_before, "the machine's /etc/hosts changed"
    failed = [r for r in runs if r.ran and r.returncode != 0]
    assert not failed, report
    by_name = {r.name: r for r in runs}
    verify = next(r for r in runs if r.script.lstrip().startswith("dexkit verify"))
    assert "verified: Dex login -> ID token -> API server identity, as configured" in \
        verify.output, report
    doctor = next(r for r in runs if r.script.lstrip().startswith("dexkit doctor"))
    assert "doctor: no broken link found" in doctor.output, report
    assert not any(r.ran for r in runs if r.condition == "failure()"), report
    assert all(r.ran and r.returncode == 0 for r in runs if r.condition == "always()"), report
    # The runner's /etc/hosts got the one entry hosts.sh writes (in the run's own copy).
    assert b"127.0.0.1 dex.example.com" in runner.hosts.read_bytes()
    created = next(r for r in runs if r.script.lstrip().startswith("kind create cluster"))
    harness.timings[f"kind create {_minor(config_version)} on {_minor(image_version)}"] = \
        created.seconds
    for name, step in by_name.items():
        harness.timings[f"step {name[:30]}"] = step.seconds
    assert engine.docker(harness.engine.layout, "ps", "-aq").strip() == ""  # deleted


def test_a_failing_step_runs_the_log_steps_and_still_deletes_the_cluster(
        harness: KindHarness, tmp_path: Path) -> None:
    """The workflow's on-failure steps are real too: break deploy (the serving key is gone)
    and the log steps run, then the cluster is deleted."""
    image = harness.node_image(DEFAULT_VERSION)
    runner = recipe(harness, tmp_path / "run", image=image,
                    config_minor=_minor(DEFAULT_VERSION))
    for_this_machine = runner.after["dexkit init"]

    def without_key(step_env: dict[str, str]) -> str:
        (Path(step_env["DEXKIT_DIR"]) / "ssl" / "key.pem").unlink()
        return for_this_machine(step_env) + "; then ssl/key.pem removed (on purpose)"

    runner.after["dexkit init"] = without_key
    runs = runner.run(load_job(WORKFLOW, JOB))
    report = _report(runs)
    failed = [r for r in runs if r.ran and r.returncode != 0]
    assert failed and failed[0].script.lstrip().startswith(("dexkit render", "dexkit deploy")), \
        report
    logs = next(r for r in runs if r.condition == "failure()" and r.ran)
    assert logs.returncode == 0, report
    assert "kind export logs" in logs.script
    assert all(r.ran and r.returncode == 0 for r in runs if r.condition == "always()"), report
    assert engine.docker(harness.engine.layout, "ps", "-aq").strip() == ""
