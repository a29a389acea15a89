"""Faults on the real node, kept as tests: Dex on kubernetes storage with two replicas, and
kubectl logging in through ``dexkit token`` while its Pods, the API server and etcd go away.

One node for the module; the tests run in file order and each leaves Dex with two ready
replicas behind. The users' kubeconfigs come from ``dexkit kubeconfig --grant password``; the
``refresh-only`` user is the same login without its password file, as a browser user is to a
plugin that kubectl runs without a terminal: when its cached refresh token does not refresh,
it fails instead of logging in again. Calls that must reach Dex find an expired cache entry
(its expiry set to now) or pass ``--force-refresh``; Dex's own request counters (its
telemetry ``/metrics`` on each Pod) count what reached it.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit import kube
from dexkit.sandbox.restart import restart_peer
from tests.e2e.conftest import KUBERNETES_VERSION, say
from tests.e2e.node_sandbox import (
    NAMESPACE,
    USER,
    Guide,
    node_binaries,
    require_node_machine,
    running_guide,
    set_in_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.machine, pytest.mark.needs_dex,
              pytest.mark.usefixtures("machine_exclusive")]

CALLS = 20
WHOAMI = ("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
TELEMETRY = 5558
# doctor's checks of what the guide's project has none of: skipped, the rest must pass
NOT_HERE = frozenset({"local.robots", "local.clusters", "local.kuberc", "network.grants"})


def _two_replicas_and_a_view_binding(project: Path) -> None:
    set_in_config(project, "  replicas: 1\n", "  replicas: 2\n")
    set_in_config(project, "\nrbac: []\n",
                  "\nrbac:\n  - group: team-a/admins\n    clusterRole: view\n")


class Faults:
    """The node, its project and the users' kubeconfigs."""

    def __init__(self, guide: Guide) -> None:
        self.guide = guide
        self.user = guide.user_kubeconfig("user")
        self.refresh_only = _without_password(guide.user_kubeconfig("refresh-only"))
        self.forced = _without_password(guide.user_kubeconfig("forced", "--force-refresh"))

    def kubectl(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.guide.as_user(kubeconfig, *args)

    def whoami(self, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
        return self.kubectl(kubeconfig, *WHOAMI)

    # the token cache -----------------------------------------------------------------------
    def entry_path(self) -> Path:
        (path,) = self.guide.token_cache.glob("*.token")
        return path

    def entry(self) -> dict[str, str]:
        lines = self.entry_path().read_text().splitlines()
        return dict(line.split(" ", 1) for line in lines)

    def expire(self) -> dict[str, str]:
        """Set the cached entry's expiry to now (the ID token itself is still good): the next
        ``dexkit token`` must refresh. The entry as it was is returned."""
        path = self.entry_path()
        before = self.entry()
        text = "".join(f"{k} {int(time.time()) if k == 'expiry' else v}\n"
                       for k, v in before.items())
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".expire.")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        Path(tmp).replace(path)
        return before

    # Dex -----------------------------------------------------------------------------------
    def ready_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.guide.dex_pods() if not p["metadata"].get("deletionTimestamp")
                and all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}])]

    def wait_for_two_ready(self, timeout: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            ready = self.ready_pods()
            if len(ready) == 2 and len(self.guide.dex_pods()) == 2:
                return ready
            assert time.monotonic() < deadline, [p["metadata"]["name"] for p in ready]
            time.sleep(0.5)


def _without_password(kubeconfig: Path) -> Path:
    """The kubeconfig's dexkit user without ``--password-file``: a refresh that fails cannot
    fall back to a login."""
    data = yaml.safe_load(kubeconfig.read_text())
    for user in data["users"]:
        args = user["user"].get("exec", {}).get("args", [])
        if "--password-file" in args:
            at = args.index("--password-file")
            del args[at:at + 2]
    kubeconfig.write_text(yaml.safe_dump(data, sort_keys=False))
    return kubeconfig


def token_posts(pod_ip: str) -> int:
    """Dex's count of answered token requests (logins and refreshes) on one Pod."""
    with urllib.request.urlopen(f"http://{pod_ip}:{TELEMETRY}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    total = 0
    for line in text.splitlines():
        # promhttp writes the method in lower case
        if line.startswith("http_requests_total{") and 'handler="/token"' in line \
                and 'code="200"' in line and 'method="post"' in line.lower():
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def all_token_posts(faults: Faults) -> dict[str, int]:
    return {p["metadata"]["name"]: token_posts(p["status"]["podIP"])
            for p in faults.ready_pods()}


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory, peer: Callable[[str], Path],
           kubectl: Path) -> Iterator[Faults]:
    require_node_machine()
    binaries = node_binaries(peer, KUBERNETES_VERSION)
    with running_guide(tmp_path_factory.mktemp("faults"), binaries, kubectl,
                       prepare=_two_replicas_and_a_view_binding) as guide:
        made = Faults(guide)
        began = time.monotonic()
        deployed = guide.dexkit("deploy", "--wait")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        say(f"faults: deploy --wait with 2 replicas in {time.monotonic() - began:.1f}s")
        yield made


def test_two_replicas_serve_kubectl_right_after_deploy_wait(faults: Faults) -> None:
    assert len(faults.wait_for_two_ready(timeout=1)) == 2
    whoami = faults.whoami(faults.user)
    assert (whoami.returncode, whoami.stdout) == (0, USER), whoami.stderr
    # The view binding: a read that goes through the API server to etcd.
    pods = faults.kubectl(faults.user, "-n", NAMESPACE, "get", "pods", "-o", "name")
    assert pods.returncode == 0 and pods.stdout.count("pod/") == 2, pods.stderr


def test_a_dex_pod_killed_while_kubectl_calls_refresh(faults: Faults) -> None:
    """20 kubectl calls, four at a time, each forcing a refresh (no password to fall back
    on); after the third, one Dex Pod's container is killed (SIGKILL, as a crash)."""
    ready = faults.wait_for_two_ready()
    before = all_token_posts(faults)
    victim = ready[0]
    done = threading.Semaphore(0)
    killed: dict[str, int] = {}

    def call(_: int) -> subprocess.CompletedProcess[str]:
        try:
            return faults.whoami(faults.forced)
        finally:
            done.release()

    refusals: list[float] = []

    def kill_after_three() -> None:
        for _ in range(3):
            done.acquire()
        killed["posts"] = token_posts(victim["status"]["podIP"])
        _kill_container(faults.guide, victim)
        refusals.extend(_refused_after(time.monotonic(), seconds=8))

    began = time.monotonic()
    killer = threading.Thread(target=kill_after_three)
    killer.start()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(CALLS)))
    killer.join()
    seconds = time.monotonic() - began
    failed = [r.stderr.strip() for r in results if r.returncode != 0 or r.stdout != USER]
    assert not failed, f"{len(failed)} of {CALLS} calls failed: {failed[:3]}"
    # The victim was really killed and came back in the same Pod.
    ready = faults.wait_for_two_ready()
    restarted = {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"]
                 for p in ready}
    name = victim["metadata"]["name"]
    assert restarted[name] == victim["status"]["containerStatuses"][0]["restartCount"] + 1
    # Every call reached Dex: the refreshes it answered (the killed container's count up to
    # the kill, its new container's, the other Pod's). A refresh runs under the cache's lock,
    # one at a time: at most one answer can be lost with the killed container.
    after = all_token_posts(faults)
    answered = sum(after[n] - before[n] for n in after if n != name)
    answered += killed["posts"] - before[name] + after[name]
    window = f"{min(refusals):.1f} to {max(refusals):.1f} s" if refusals else "none"
    say(f"faults: {CALLS} forced refreshes around a killed Dex container in {seconds:.1f}s; "
        f"Dex answered {answered} token requests; connections to the NodePort refused "
        f"{len(refusals)} times, {window} after the kill")
    assert answered >= CALLS - 1, (before, killed, after)


def _refused_after(kill: float, *, seconds: float) -> list[float]:
    """When, after ``kill``, TCP connections to the NodePort were refused (or went nowhere):
    how long kube-proxy keeps a dead Pod among the Service's endpoints."""
    found = []
    while time.monotonic() - kill < seconds:
        at = time.monotonic() - kill
        try:
            socket.create_connection(("127.0.0.1", 32000), timeout=1).close()
        except OSError:
            found.append(at)
        time.sleep(0.05)
    return found


def _kill_container(guide: Guide, pod: dict[str, Any]) -> None:
    container = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    subprocess.run(["ctr", f"--address={guide.node.layout.containerd_socket}",
                    "--namespace=k8s.io", "tasks", "kill", "--signal", "SIGKILL", container],
                   capture_output=True, text=True, check=True)


def test_every_dex_pod_replaced_keeps_tokens_and_sessions(faults: Faults) -> None:
    """Dex's signing keys and refresh tokens live in its CRDs: new Pods know them."""
    fill = faults.whoami(faults.user)
    assert fill.returncode == 0, fill.stderr
    issued = faults.entry()
    old = {p["metadata"]["name"] for p in faults.wait_for_two_ready()}
    began = time.monotonic()
    faults.guide.kubectl_run("-n", NAMESPACE, "rollout", "restart", "deployment/dex")
    faults.guide.kubectl_run("-n", NAMESPACE, "rollout", "status", "deployment/dex",
                             "--timeout=120s")
    new = {p["metadata"]["name"] for p in faults.wait_for_two_ready()}
    replaced = time.monotonic() - began
    assert not new & old, (old, new)
    # The ID token issued before: the API server still takes it (Dex's keys did not change).
    review = kube.who_am_i(kube.connect(kube.Target(faults.guide.kubeconfig),
                                        bearer_token=issued["id_token"]))
    assert review.username == USER
    # The cached refresh token still refreshes (no password to log in with instead).
    faults.expire()
    refreshed = faults.whoami(faults.refresh_only)
    assert (refreshed.returncode, refreshed.stdout) == (0, USER), refreshed.stderr
    assert faults.entry()["id_token"] != issued["id_token"]
    say(f"faults: both Dex Pods replaced in {replaced:.1f}s; the old ID token passed a "
        "SelfSubjectReview, the cached refresh token refreshed")


def test_verify_and_doctor_leave_kubectls_session_alone(faults: Faults) -> None:
    """Dex keeps one refresh token per user and client and deletes the older one when it
    issues another: verify's and doctor's logins must not ask for one."""
    faults.wait_for_two_ready()
    fill = faults.whoami(faults.user)
    assert fill.returncode == 0, fill.stderr
    verified = faults.guide.dexkit("verify", "--grant", "password")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    _doctor_is_healthy(faults)
    faults.expire()
    refreshed = faults.whoami(faults.refresh_only)
    assert (refreshed.returncode, refreshed.stdout) == (0, USER), refreshed.stderr


def _restart(faults: Faults, name: str) -> float:
    running = faults.guide.node
    done = restart_peer(running.plane.layout.dir, name, die_with_parent=True)
    for process in running.plane.processes:  # reap the one the restart stopped
        if process.name == name:
            process.popen.poll()
    return done.seconds


@pytest.mark.parametrize("peer_name", ["kube-apiserver", "etcd"])
def test_control_plane_restarted_with_a_login_cached(faults: Faults, peer_name: str) -> None:
    fill = faults.whoami(faults.user)
    assert fill.returncode == 0, fill.stderr
    cached = faults.entry()
    seconds = _restart(faults, peer_name)
    say(f"faults: {peer_name} restarted in {seconds:.1f}s")
    # The next call, from the cache: the API server judges the same token again.
    whoami = faults.whoami(faults.user)
    assert (whoami.returncode, whoami.stdout) == (0, USER), whoami.stderr
    assert faults.entry() == cached
    # A read through the API server to etcd, and a refresh that Dex writes to its CRDs.
    pods = faults.kubectl(faults.user, "-n", NAMESPACE, "get", "pods", "-o", "name")
    assert pods.returncode == 0, pods.stderr
    faults.expire()
    refreshed = faults.whoami(faults.refresh_only)
    assert (refreshed.returncode, refreshed.stdout) == (0, USER), refreshed.stderr
    _doctor_is_healthy(faults)


def _doctor_is_healthy(faults: Faults) -> None:
    result = faults.guide.dexkit("doctor", "--login", "password", "--username", USER,
                                 "--kubeconfig", str(faults.user), "--context",
                                 "dexkit-sandbox", "--output", "json",
                                 env={"DEXKIT_PASSWORD": faults.guide.password()})
    rows = json.loads(result.stdout)
    rows = rows["results"] if isinstance(rows, dict) else rows
    # Skipped: only what this project has none of (robots, other clusters, a kuberc).
    not_ok = {r["id"]: (r["status"], r["message"]) for r in rows
              if r["status"] != "ok" and not (r["status"] == "skip" and r["id"] in NOT_HERE)}
    assert result.returncode == 0 and not not_ok, not_ok or result.stderr


def test_parallel_kubectl_calls_on_an_expired_cache_refresh_once(faults: Faults) -> None:
    faults.wait_for_two_ready()
    fill = faults.whoami(faults.user)
    assert fill.returncode == 0, fill.stderr
    before_posts = all_token_posts(faults)
    stale = faults.expire()
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CALLS) as pool:
        results = list(pool.map(lambda _: faults.kubectl(
            faults.refresh_only, "auth", "whoami", "-o", "json"), range(CALLS)))
    failed = [r.stderr.strip() for r in results if r.returncode != 0]
    assert not failed, f"{len(failed)} of {CALLS} calls failed: {failed[:3]}"
    seconds = time.monotonic() - began
    after_posts = all_token_posts(faults)
    answered = sum(after_posts[n] - before_posts[n] for n in after_posts)
    say(f"faults: {CALLS} parallel kubectl calls on an expired cache in {seconds:.1f}s; "
        f"Dex answered {answered} token request(s)")
    assert answered == 1, (before_posts, after_posts)
    now = faults.entry()
    assert now["id_token"] != stale["id_token"]
    assert now["refresh_token"] != stale["refresh_token"]


def test_dex_scaled_to_zero_is_named_and_nothing_is_cached(faults: Faults) -> None:
    guide = faults.guide
    fill = faults.whoami(faults.user)
    assert fill.returncode == 0, fill.stderr
    guide.kubectl_run("-n", NAMESPACE, "scale", "deployment/dex", "--replicas=0")
    try:
        deadline = time.monotonic() + 60
        while guide.dex_pods():
            assert time.monotonic() < deadline, "Dex's Pods did not go away"
            time.sleep(0.5)
        faults.expire()
        cache_before = _snapshot(guide.token_cache)
        verified = guide.dexkit("verify", "--grant", "password")
        errors = _failed_without_traceback(verified, "verify")
        assert errors == ["error: TLS trust: cannot connect to dex.example.com:32000: Dex's "
                          "Deployment dex/dex is scaled to 0 replicas"], verified.stderr
        doctor = guide.dexkit("doctor")
        _failed_without_traceback(doctor, "doctor")
        named = [line for line in doctor.stdout.splitlines()
                 if "Deployment dex/dex is scaled to 0 replicas" in line]
        assert len(named) == 1, doctor.stdout
        began = time.monotonic()
        call = faults.whoami(faults.user)
        say(f"faults: kubectl with Dex at 0 replicas failed in {time.monotonic() - began:.1f}s:"
            f"\n{call.stderr.strip()}")
        assert call.returncode != 0
        assert "Traceback" not in call.stderr, call.stderr
        assert _snapshot(guide.token_cache) == cache_before
    finally:
        guide.kubectl_run("-n", NAMESPACE, "scale", "deployment/dex", "--replicas=2")
        faults.wait_for_two_ready()


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())
            if not p.name.endswith((".lock", ".login"))}


def _failed_without_traceback(result: subprocess.CompletedProcess[str], what: str) -> list[str]:
    """Exit code 1 and no traceback; the ``error:`` lines."""
    output = result.stdout + result.stderr
    say(f"faults: {what} with Dex at 0 replicas:\n{output}")
    assert result.returncode == 1, output
    assert "Traceback" not in output
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]
