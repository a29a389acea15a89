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
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dexkit.config import load_config
from dexkit.sandbox import engine, peers
from tests.e2e.conftest import new_static_project
from tests.e2e.kind_harness import (
    CONTEXT,
    DEFAULT_VERSION,
    KIND_MINORS,
    NODE,
    KindHarness,
    start_harness,
    take_the_machine,
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
def harness(request: pytest.FixtureRequest) -> Iterator[KindHarness]:
    take_the_machine(request)
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


# --- the guide's other half: `dexkit apiserver patch` on a kubeadm node ---------------------

PLAIN_CLUSTER = """\
# A kind cluster WITHOUT dexkit's kubeadm patches: the issuer port mapped to Dex's NodePort, and
# the node's static-pod directory on this machine, where an admin on the node would edit it
# (through /proc/<pid>/root dexkit would resolve the path to this machine's own /etc/kubernetes:
# the magic link reads as '/').
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
  extraPortMappings:
  - {{containerPort: 32000, hostPort: 32000, listenAddress: 127.0.0.1, protocol: TCP}}
  extraMounts:
  - {{hostPath: {manifests}, containerPath: /etc/kubernetes/manifests}}
"""


def _dexkit(env: dict[str, str], *args: str, timeout: float = 420) -> str:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "dexkit", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"dexkit {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def _apiserver_pod(harness: KindHarness, env: dict[str, str]) -> dict[str, object]:
    import json

    out = harness.run([str(harness.kubectl), "--context", CONTEXT, "-n", "kube-system", "get",
                       "pod", f"kube-apiserver-{NODE}", "-o", "json"], env)
    assert out.returncode == 0, out.stderr
    pod: dict[str, object] = json.loads(out.stdout)
    return pod


def _wait_for_flag(harness: KindHarness, env: dict[str, str], flag: str,
                   timeout: float = 240) -> None:
    """Until the kubelet has restarted the API server from the patched manifest."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pod = _apiserver_pod(harness, env)
            container = pod["spec"]["containers"][0]  # type: ignore[index]
            ready = all(c.get("ready") for c in pod["status"]["containerStatuses"])  # type: ignore[index]
            if any(str(a).startswith(flag) for a in container["command"]) and ready:
                return
        except (AssertionError, KeyError, ValueError):
            pass  # the API server is restarting
        assert time.monotonic() < deadline, f"the API server never came back with {flag}"
        time.sleep(3)


@pytest.mark.parametrize("mode", ["flags", "authentication-config"])
def test_apiserver_patch_on_the_real_manifest_of_a_kind_node(
        harness: KindHarness, tmp_path: Path, mode: str) -> None:
    """A kind cluster created without dexkit's patches; `dexkit apiserver patch` edits the
    node's real /etc/kubernetes/manifests/kube-apiserver.yaml (through /proc/<node>/root), the
    kubelet restarts the API server with OIDC, and verify passes. In authentication-config mode,
    a new CA in the rewritten file is taken without restarting the API server."""
    project = new_static_project(tmp_path / "project", mode=mode, port=32000,
                                 version=DEFAULT_VERSION)
    set_in_config(project, "image: ghcr.io/dexidp/dex:v2.45.1",
                  f"image: {harness.dex_archive.name}")
    env = harness.env(tmp_path / "home")
    _dexkit(env, "render", "--dir", str(project))
    manifests = tmp_path / "node-kubernetes" / "manifests"
    manifests.mkdir(parents=True)
    (tmp_path / "plain.yaml").write_text(PLAIN_CLUSTER.format(manifests=manifests))
    harness.create_cluster(tmp_path / "plain.yaml", harness.node_image(DEFAULT_VERSION), env)
    try:
        harness.load_dex(env)
        root = Path(f"/proc/{harness.node_pid()}/root")
        manifest = manifests / "kube-apiserver.yaml"  # the node's /etc/kubernetes/manifests
        assert "oidc" not in manifest.read_text() and "authentication-config" not in \
            manifest.read_text()
        config = load_config(project).config
        if mode == "flags":
            place = root / config.api_server.ca_file.lstrip("/")
            place.write_bytes((project / "ssl" / "ca.pem").read_bytes())
            flag = "--oidc-issuer-url="
        else:
            place = root / config.api_server.authentication_config_file.lstrip("/")
            place.parent.mkdir(parents=True, exist_ok=True)
            place.write_bytes((project / "out/apiserver/authentication-config.yaml").read_bytes())
            flag = "--authentication-config="
        patched = _dexkit(env, "apiserver", "patch", str(manifest), "--dir", str(project))
        assert "patched" in patched or "configured" in patched, patched
        assert flag in manifest.read_text()
        _wait_for_flag(harness, env, flag)
        _dexkit(env, "deploy", "--dir", str(project), "--context", CONTEXT, "--wait",
                "--timeout", "300")
        verify = ["verify", "--dir", str(project), "--context", CONTEXT, "--grant", "password"]
        assert "verified:" in _dexkit(env, *verify)
        if mode == "authentication-config":
            _new_ca_without_a_restart(harness, env, project, place, verify)
    finally:
        harness.delete_cluster(env)


def _new_ca_without_a_restart(harness: KindHarness, env: dict[str, str], project: Path,
                              place: Path, verify: list[str]) -> None:
    """`certs rotate --ca`, the rewritten AuthenticationConfiguration copied over the node's
    file, Dex redeployed: the API server trusts the new CA within its reload period (about a
    minute) in the same container, which --oidc-ca-file cannot do."""
    before = _apiserver_pod(harness, env)["status"]["containerStatuses"][0]  # type: ignore[index]
    _dexkit(env, "certs", "rotate", "--ca", "--dir", str(project))
    _dexkit(env, "render", "--dir", str(project))
    place.write_bytes((project / "out/apiserver/authentication-config.yaml").read_bytes())
    _dexkit(env, "deploy", "--dir", str(project), "--context", CONTEXT, "--wait", "--timeout",
            "300")
    deadline = time.monotonic() + 150
    while True:
        import subprocess

        done = subprocess.run([sys.executable, "-m", "dexkit", *verify], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode == 0:
            break
        assert time.monotonic() < deadline, done.stdout + done.stderr
        time.sleep(5)
    after = _apiserver_pod(harness, env)["status"]["containerStatuses"][0]  # type: ignore[index]
    assert after["containerID"] == before["containerID"]  # type: ignore[index]
    assert after["restartCount"] == before["restartCount"]  # type: ignore[index]
