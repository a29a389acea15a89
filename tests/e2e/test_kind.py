"""kind, for real: the CI recipe (.github/workflows/kind-e2e.yml) run verbatim against real kind
clusters built here, on every minor and across minors.

The engine, the node images and the machine check are the harness's (tests/e2e/kind_harness.py);
the workflow's steps are run as a runner runs them (tests/e2e/workflow.py). What differs from a
GitHub runner is only what this machine lacks: the kind binary and the node image are built here
(KIND_NODE_IMAGE and the download point at them), and the Dex image is built here and loaded
with 'kind load image-archive' (dex.image: dexkit.local/dex:v2.45.1), since no registry answers.

GitHub is not reachable either, and the recipe logs in with the job's own ID token. What stands
in for it (the ``github`` fixture), each where GitHub's own would be:
- GitHub's issuer, https://token.actions.githubusercontent.com, by that name on kind's network:
  a container there has the name as its network alias, so docker's DNS answers it to the kind
  node and, through the node's resolver and CoreDNS, to the Dex Pod, as a runner's DNS answers
  GitHub's name; in that container's network namespace (and nowhere else) the stand-in issuer
  (tests/e2e/ci_issuer.py: GitHub's discovery document, JWKS and claims) serves HTTPS on 443.
  The scenario's connector names GitHub's issuer as users copy it; nothing of it is edited.
- Trust: the Dex image built here has the stand-in's throwaway CA added to its CA bundle, as the
  official image's bundle holds the CA that signs GitHub's certificate.
- GitHub's token service: a local stand-in, whose URL and request token the runner hands to
  the steps as ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN because the workflow's permissions grant
  id-token: write (tests/e2e/workflow.py).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dexkit.config import load_config
from dexkit.sandbox import engine, images, peers
from dexkit.scenarios import get_scenario
from tests.e2e.ci_issuer import (
    DISCOVERY,
    GITHUB_HOST,
    JWKS,
    ActionsStandIn,
    GitHubIssuer,
    actions_token_service,
    listener_in,
    serve_documents,
)
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
from tests.e2e.workflow import (
    CURL_SHIM,
    FORK_PULL_REQUEST,
    SUDO_SHIM,
    GitHub,
    IdTokenService,
    Runner,
    StepRun,
    load_job,
)

pytestmark = [pytest.mark.e2e, pytest.mark.machine]

REPOSITORY = Path(__file__).resolve().parents[2]
WORKFLOW = REPOSITORY / ".github" / "workflows" / "kind-e2e.yml"
JOB = "kind-e2e"
KIND_URL = f"https://kind.sigs.k8s.io/dl/v{peers.KIND_VERSION}/kind-linux-amd64"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The job the workflow runs as: a push to main (its ID token says so).
PUSH = GitHub(repository="dexkit-ci/dexkit", ref="refs/heads/main", event_name="push")
STAND_IN = "github-stand-in"
KIND_NODES = ("--filter", "label=io.x-k8s.kind.cluster")


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


@dataclass
class GitHubStandIn:
    issuer: GitHubIssuer
    service: ActionsStandIn
    dex_archive: images.ImageArchive  # trusts the stand-in issuer's CA
    fetched: list[str]  # the paths the issuer was asked for (by Dex, from inside the cluster)

    @property
    def id_token(self) -> IdTokenService:
        return IdTokenService(self.service.url, self.service.request_token)


def scenario_audience() -> str:
    """The kind-ci connector's tokenExchange.audience: what the job asks GitHub for."""
    (connector,) = get_scenario("kind-ci").config_data()["connectors"]
    return str(connector["tokenExchange"]["audience"])


@pytest.fixture(scope="module")
def github(harness: KindHarness, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[GitHubStandIn]:
    """GitHub's issuer and token service, standing in (module docstring)."""
    started = time.monotonic()
    directory = tmp_path_factory.mktemp("github")
    issuer = GitHubIssuer(directory, PUSH, (scenario_audience(),))
    bundle = directory / "ca-certificates.crt"
    bundle.write_bytes(images.CA_BUNDLE.read_bytes() + issuer.ca_pem)
    dex_archive = images.build_dex_image(images.dex_source(), root=directory, ca_bundle=bundle)
    node = harness.node_image(DEFAULT_VERSION)  # its 'sleep' holds the namespace; no kind
    harness.engine.docker("run", "-d", "--name", STAND_IN, "--network", engine.KIND_NETWORK,
                          "--network-alias", GITHUB_HOST, "--entrypoint", "sleep", node,
                          "infinity")
    try:
        pid = int(harness.engine.docker("inspect", "--format", "{{.State.Pid}}",
                                        STAND_IN).strip())
        address = harness.engine.docker(
            "inspect", "--format",
            f'{{{{(index .NetworkSettings.Networks "{engine.KIND_NETWORK}").IPAddress}}}}',
            STAND_IN).strip()
        listener = listener_in(pid, address, 443)
        with serve_documents(issuer.documents(), listener, issuer.tls) as fetched, \
                actions_token_service(issuer) as service:
            harness.timings["github stand-in (Dex image with its CA, container)"] = \
                time.monotonic() - started
            yield GitHubStandIn(issuer, service, dex_archive, fetched)
    finally:
        harness.engine.docker("rm", "-f", "-v", STAND_IN)


def recipe(harness: KindHarness, root: Path, *, image: str, config_minor: str,
           github: GitHubStandIn | None = None) -> Runner:
    """A runner for the workflow with this machine's differences (module docstring); without
    ``github`` the job has no token service (nor the Dex image that trusts its issuer)."""
    dex_archive = github.dex_archive if github is not None else harness.dex_archive
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
                      f"image: {dex_archive.name}")
        set_in_config(project, 'kubernetesVersion: "1.37"', f'kubernetesVersion: "{config_minor}"')
        return f"dex.image: {dex_archive.name}, kubernetesVersion: {config_minor}"

    def load_dex(step_env: dict[str, str]) -> str:
        loaded = harness.run([str(harness.kind), "load", "image-archive",
                              str(dex_archive.path)], step_env)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        return f"kind load image-archive {dex_archive.path.name}"

    return Runner(root=root, repository=REPOSITORY, base_env=env,
                  overrides={"KIND_NODE_IMAGE": image},
                  shims={"curl": CURL_SHIM.format(url=KIND_URL, kind=harness.kind),
                         "sudo": SUDO_SHIM},
                  after={"dexkit init": project_for_this_machine,
                         "kind create cluster": load_dex},
                  github=PUSH, id_token=github.id_token if github is not None else None,
                  pip_cache=harness.engine.layout.cache / "workflow-pip")


def _report(runs: list[StepRun]) -> str:
    return "\n".join(str(r) for r in runs)


def test_the_workflow_downloads_the_kind_release_the_harness_builds() -> None:
    job = load_job(WORKFLOW, JOB)
    assert job.env["KIND_VERSION"] == f"v{peers.KIND_VERSION}"
    assert job.env["KIND_NODE_IMAGE"].startswith(f"kindest/node:v{_minor(DEFAULT_VERSION)}.")
    assert "@sha256:" in job.env["KIND_NODE_IMAGE"]  # pinned by digest, as docs/ci-kind.md says


VERIFIED = "verified: Dex login -> ID token -> API server identity, as configured"


@pytest.mark.parametrize(("config_version", "image_version"), CASES,
                         ids=[f"config-{_minor(c)}-node-{_minor(i)}" for c, i in CASES])
def test_the_ci_recipe_runs_verbatim_to_a_verified_login(
        harness: KindHarness, github: GitHubStandIn, tmp_path: Path, config_version: str,
        image_version: str) -> None:
    """The job logs in with its own ID token (token exchange), and doctor with the static
    user; then, on the same cluster, the login steps again as two other jobs of the workflow:
    a pull request from a fork (no ID token: the password fallback runs and passes), and a job
    whose token service refuses (the exchange fails the job: no password hides it)."""
    image = harness.node_image(image_version)
    runner = recipe(harness, tmp_path / "run", image=image,
                    config_minor=_minor(config_version), github=github)
    job = load_job(WORKFLOW, JOB)
    replays: dict[str, list[StepRun]] = {}

    restarts: list[int] = []

    def other_jobs(step_env: dict[str, str]) -> str:
        restarts.append(_dex_restarts(harness, step_env))
        replays["fork"] = runner.replay(job, "oidc", "password", FORK_PULL_REQUEST)
        refused = IdTokenService(github.service.url, "not-the-job's")
        replays["refused"] = runner.replay(job, "oidc", "password", PUSH, id_token=refused)
        return "\n".join(str(r) for r in replays["fork"] + replays["refused"])

    runner.after["dexkit doctor"] = other_jobs
    hosts_before = Path("/etc/hosts").read_bytes()
    asked_before = len(github.service.asked)
    runs = runner.run(job)
    report = _report(runs)
    assert Path("/etc/hosts").read_bytes() == hosts_before, "the machine's /etc/hosts changed"
    failed = [r for r in runs if r.ran and r.returncode != 0]
    assert not failed, report
    by_id = {r.id: r for r in runs if r.id}
    # The job's own ID token, exchanged at Dex: the API server sees GitHub's sub claim as the
    # username and the repository owner as a group. Dex fetched GitHub's discovery document
    # and keys from inside the cluster (by GitHub's name, trusting its CA).
    assert by_id["oidc"].outputs == {"available": "true"}, report
    exchange = by_id["exchange"]
    assert exchange.ran and VERIFIED in exchange.output, report
    assert github.issuer.subject() in exchange.output, report
    assert f"oidc:repository_owner:{PUSH.repository_owner}" in exchange.output, report
    assert set(github.service.asked[asked_before:]) == {scenario_audience()}, github.service.asked
    assert DISCOVERY in github.fetched and JWKS in github.fetched, github.fetched
    assert not by_id["password"].ran, report  # the fallback is for jobs without a token
    doctor = next(r for r in runs if r.script.lstrip().startswith("dexkit doctor"))
    assert "doctor: no broken link found" in doctor.output, report
    assert not any(r.ran for r in runs if r.condition == "failure()"), report
    assert all(r.ran and r.returncode == 0 for r in runs if r.condition == "always()"), report
    # A pull request from a fork: no ID token, the password grant logs in and verifies.
    fork = {r.id: r for r in replays["fork"]}
    assert fork["oidc"].outputs == {"available": ""}, report
    assert not fork["exchange"].ran, report
    assert fork["password"].returncode == 0 and VERIFIED in fork["password"].output, report
    # A job with a token service that refuses: the exchange step fails, and the password step
    # does not run to hide it.
    refused = {r.id: r for r in replays["refused"]}
    assert refused["exchange"].returncode != 0, report
    assert "answered HTTP 401" in refused["exchange"].output, report
    assert not refused["password"].ran, report
    # Deployed seconds after `kind create`: deploy waited for kube-proxy, so Dex's first start
    # reached the API server (before, it timed out, exited and was restarted: ~20 s lost).
    assert restarts == [0], f"Dex restarted {restarts} time(s) on the fresh cluster"
    # The runner's /etc/hosts got the one entry hosts.sh writes (in the run's own copy).
    assert b"127.0.0.1 dex.example.com" in runner.hosts.read_bytes()
    created = next(r for r in runs if r.script.lstrip().startswith("kind create cluster"))
    harness.timings[f"kind create {_minor(config_version)} on {_minor(image_version)}"] = \
        created.seconds
    for step in [*runs, *replays["fork"], *replays["refused"]]:
        if step.ran:
            harness.timings[f"step {step.name[:50]}"] = step.seconds
    assert engine.docker(harness.engine.layout, "ps", "-aq", *KIND_NODES).strip() == ""


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
    assert engine.docker(harness.engine.layout, "ps", "-aq", *KIND_NODES).strip() == ""


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


def _dex_restarts(harness: KindHarness, env: dict[str, str]) -> int:
    import json

    out = harness.run([str(harness.kubectl), "--context", CONTEXT, "-n", "dex", "get", "pods",
                       "-o", "json"], env)
    assert out.returncode == 0, out.stderr
    return sum(int(status.get("restartCount", 0)) for pod in json.loads(out.stdout)["items"]
               for status in pod.get("status", {}).get("containerStatuses", []))


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


def test_apiserver_patch_on_the_real_manifest_of_a_kind_node(harness: KindHarness,
                                                              tmp_path: Path) -> None:
    """A kind cluster created without dexkit's patches; `dexkit apiserver patch` edits the
    node's real /etc/kubernetes/manifests/kube-apiserver.yaml (through /proc/<node>/root), the
    kubelet restarts the API server with OIDC flags, and verify passes. Then the same cluster
    moves to an AuthenticationConfiguration, as an admin would: mode changed in dexkit.yaml,
    patch again (the --oidc-* flags go, --authentication-config comes: the two never meet),
    verify passes, and a new CA in the rewritten file is taken without restarting the API
    server. One cluster for both modes: a kind cluster is CI's most expensive fixture."""
    project = new_static_project(tmp_path / "project", mode="flags", port=32000,
                                 version=DEFAULT_VERSION)
    set_in_config(project, "image: ghcr.io/dexidp/dex:v2.45.1",
                  f"image: {harness.dex_archive.name}")
    env = harness.env(tmp_path / "home")
    _dexkit(env, "render", "--dir", str(project))
    manifests = tmp_path / "node-kubernetes" / "manifests"
    manifests.mkdir(parents=True)
    (tmp_path / "plain.yaml").write_text(PLAIN_CLUSTER.format(manifests=manifests))
    with harness.phase("patch: kind create (no patches)"):
        harness.create_cluster(tmp_path / "plain.yaml", harness.node_image(DEFAULT_VERSION),
                               env)
    try:
        harness.load_dex(env)
        root = Path(f"/proc/{harness.node_pid()}/root")
        manifest = manifests / "kube-apiserver.yaml"  # the node's /etc/kubernetes/manifests
        assert "oidc" not in manifest.read_text() and "authentication-config" not in \
            manifest.read_text()
        verify = ["verify", "--dir", str(project), "--context", CONTEXT, "--grant", "password"]
        # Flags: the CA where --oidc-ca-file names it.
        config = load_config(project).config
        ca_place = root / config.api_server.ca_file.lstrip("/")
        ca_place.write_bytes((project / "ssl" / "ca.pem").read_bytes())
        with harness.phase("patch: flags, until the API server runs them"):
            patched = _dexkit(env, "apiserver", "patch", str(manifest), "--dir", str(project))
            assert "patched" in patched or "configured" in patched, patched
            assert "--oidc-issuer-url=" in manifest.read_text()
            _wait_for_flag(harness, env, "--oidc-issuer-url=")
        with harness.phase("patch: deploy --wait"):
            _dexkit(env, "deploy", "--dir", str(project), "--context", CONTEXT, "--wait",
                    "--timeout", "300")
        with harness.phase("patch: verify (flags)"):
            assert "verified:" in _dexkit(env, *verify)
        # The move to an AuthenticationConfiguration on the same node.
        set_in_config(project, "\n  mode: flags\n", "\n  mode: authentication-config\n")
        _dexkit(env, "render", "--dir", str(project))
        config = load_config(project).config
        place = root / config.api_server.authentication_config_file.lstrip("/")
        place.parent.mkdir(parents=True, exist_ok=True)
        place.write_bytes((project / "out/apiserver/authentication-config.yaml").read_bytes())
        with harness.phase("patch: authentication-config, until the API server runs it"):
            patched = _dexkit(env, "apiserver", "patch", str(manifest), "--dir", str(project))
            assert "removed" in patched, patched
            text = manifest.read_text()
            assert "--authentication-config=" in text and "--oidc-" not in text, text
            _wait_for_flag(harness, env, "--authentication-config=")
        # Dex keeps its state in the API server it was just cut off from (the restart): its
        # first logins may answer 500 until its storage client reconnects, so verify is
        # retried for a bounded time and the failures are counted in the output.
        with harness.phase("patch: verify (authentication-config)"):
            _verify_within(env, verify, seconds=90)
        _new_ca_without_a_restart(harness, env, project, place, verify)
    finally:
        harness.delete_cluster(env)


def _verify_within(env: dict[str, str], verify: list[str], *, seconds: float) -> None:
    """verify, again every 5 s until it passes within ``seconds``; prints the failures seen."""
    import subprocess

    deadline = time.monotonic() + seconds
    failures: list[str] = []
    while True:
        done = subprocess.run([sys.executable, "-m", "dexkit", *verify], env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode == 0:
            print(f"[e2e] verify passed after {len(failures)} failed attempt(s): "
                  f"{sorted(set(failures))}")
            return
        failures.append(next((line for line in done.stderr.splitlines()
                              if line.startswith("error:")), "no error line"))
        assert time.monotonic() < deadline, done.stdout + done.stderr
        time.sleep(5)


def _new_ca_without_a_restart(harness: KindHarness, env: dict[str, str], project: Path,
                              place: Path, verify: list[str]) -> None:
    """`certs rotate --ca`, the rewritten AuthenticationConfiguration copied over the node's
    file, Dex redeployed: the API server trusts the new CA within its reload period (about a
    minute) in the same container, which --oidc-ca-file cannot do."""
    before = _apiserver_pod(harness, env)["status"]["containerStatuses"][0]  # type: ignore[index]
    _dexkit(env, "certs", "rotate", "--ca", "--dir", str(project))
    _dexkit(env, "render", "--dir", str(project))
    place.write_bytes((project / "out/apiserver/authentication-config.yaml").read_bytes())
    with harness.phase("patch: new CA, deploy --wait"):
        _dexkit(env, "deploy", "--dir", str(project), "--context", CONTEXT, "--wait",
                "--timeout", "300")
    with harness.phase("patch: new CA, until verify passes (no restart)"):
        _verify_within(env, verify, seconds=150)
    after = _apiserver_pod(harness, env)["status"]["containerStatuses"][0]  # type: ignore[index]
    assert after["containerID"] == before["containerID"]  # type: ignore[index]
    assert after["restartCount"] == before["restartCount"]  # type: ignore[index]
