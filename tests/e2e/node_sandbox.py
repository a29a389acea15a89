"""Shared pieces of the node-sandbox tests: the guide's project, the CLI run as a user runs
it (in the sandbox's mount namespace), a running node with its project (:class:`Guide`,
:func:`running_guide`), and the machine state that ``down`` must restore."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dexkit.config import load_config
from dexkit.sandbox import cgroups, images, network, node, peers
from tests.e2e.conftest import KUBERNETES_VERSION, peer_unavailable, say

DEX_IMAGE = images.dex_image_name()
USER = "admin@example.com"
NAMESPACE = "dex"


def require_node_machine() -> None:
    """Root and the node's Debian packages, or skip loudly (fail in CI)."""
    if os.geteuid() != 0:
        peer_unavailable("the node sandbox needs root")
    missing = [c for c in node.REQUIRED_COMMANDS if not _which(c)]
    if missing:
        peer_unavailable(f"the node sandbox needs {', '.join(missing)} ({node.PACKAGES_HINT})")


def _which(command: str) -> bool:
    import shutil

    return shutil.which(command) is not None


def node_binaries(peer: Callable[[str], Path], version: str) -> node.NodeBinaries:
    missing = [n for n in peers.NODE_PEERS if not peers.locate(peers.peer_spec(n, version))
               .available]
    if missing:  # one group build: one `go get`, one build cache for all four
        peers.build_peers([peers.peer_spec(n, version) for n in missing],
                          progress=lambda line: None)
    for name in ("etcd", "kube-apiserver", "dex", *peers.NODE_PEERS):
        peer(name)
    return node.NodeBinaries.require(version)


def init_guide_project(project: Path) -> None:
    """The guide's project (issuer https://dex.example.com:32000, static users, kubernetes
    storage) with the one change the node needs: the locally built Dex image."""
    result = subprocess.run([sys.executable, "-m", "dexkit", "init", "--dir", str(project),
                             "--connector", "static"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    set_in_config(project, "image: ghcr.io/dexidp/dex:v2.45.1", f"image: {DEX_IMAGE}")


def set_in_config(project: Path, old: str, new: str) -> None:
    path = project / "dexkit.yaml"
    text = path.read_text()
    assert old in text, f"{old!r} not in dexkit.yaml"
    path.write_text(text.replace(old, new, 1))


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's environment: a fresh HOME and no KUBECONFIG, so project commands find the
    project's running sandbox by themselves (dexkit.sandbox.target)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DEXKIT_DIR")}
    # The kubeconfig user runs `dexkit token` from PATH, as kubectl does for a user.
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update({"HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", "PATH": path,
                **extra})
    return env


def in_sandbox(project: Path, *argv: str) -> list[str]:
    """``dexkit sandbox exec -- argv``: what the README tells a user to run."""
    return [sys.executable, "-m", "dexkit", "sandbox", "exec", "--dir", str(project), "--",
            *argv]


def dexkit_cli(project: Path, *args: str) -> list[str]:
    return in_sandbox(project, sys.executable, "-m", "dexkit", *args)


def run(argv: list[str], env: dict[str, str], *, timeout: float = 300,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False, cwd=cwd)


# --- a running node and its project -------------------------------------------------------


class Guide:
    """The running node and the project, with the CLI as a user runs it."""

    def __init__(self, project: Path, running: node.Node, home: Path, kubectl: Path) -> None:
        self.project = project
        self.node = running
        self.home = home
        self.kubectl = kubectl
        self.env = cli_env(home, DEXKIT_TOKEN_CACHE=str(self.token_cache))

    @property
    def kubeconfig(self) -> Path:
        return self.node.kubeconfig

    @property
    def token_cache(self) -> Path:
        return self.home / "token-cache"

    def dexkit(self, *args: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run(dexkit_cli(self.project, *args, "--dir", str(self.project)),
                   {**self.env, **(env or {})}, timeout=timeout, cwd=self.project)

    def kubectl_json(self, *args: str) -> Any:
        out = subprocess.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args,
                              "-o", "json"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def kubectl_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, check=check)

    def as_user(self, kubeconfig: Path, *args: str,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """kubectl with a user's kubeconfig (its user runs ``dexkit token``), in the node's
        mount namespace, where the issuer's host resolves."""
        return run(in_sandbox(self.project, str(self.kubectl), "--kubeconfig", str(kubeconfig),
                              *args), self.env, timeout=timeout)

    def user_kubeconfig(self, name: str, *token_args: str) -> Path:
        """A copy of the admin kubeconfig with dexkit's password-grant user as its current
        context (``dexkit kubeconfig --grant password``, then ``token_args``)."""
        path = self.home / f"{name}.kubeconfig"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.kubeconfig.read_bytes())
        made = self.dexkit("kubeconfig", "--kubeconfig", str(path), "--grant", "password",
                           "--context", "oidc", "--cluster", "dexkit-sandbox", "--use-context",
                           *token_args)
        assert made.returncode == 0, made.stdout + made.stderr
        return path

    def dex_pods(self) -> list[dict[str, Any]]:
        return pods(self.kubectl, self.kubeconfig, NAMESPACE)

    def password(self) -> str:
        return (self.project / ".dexkit/passwords" / USER).read_text().strip()


@contextlib.contextmanager
def running_guide(root: Path, binaries: node.NodeBinaries, kubectl: Path,
                  prepare: Callable[[Path], None] = lambda _project: None) -> Iterator[Guide]:
    """A fresh guide project under ``root`` (``prepare`` may edit it) on a fresh node sandbox;
    on the way out the node is stopped and the machine must be as it was before."""
    project = root / "project"
    init_guide_project(project)
    prepare(project)
    before = machine_state()
    started = time.monotonic()
    running = node.start(node.NodeRequest(
        project=project, config=load_config(project).config, binaries=binaries,
        kubernetes_version=KUBERNETES_VERSION))
    say(f"node sandbox ready in {time.monotonic() - started:.1f}s: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in running.timings.items()))
    sandbox = running.plane.layout.dir
    try:
        yield Guide(project, running, root / "home", kubectl)
    finally:
        running.stop()
    after = machine_state(sandbox)
    assert after == {**before, "processes": []}, "the node sandbox left something behind"


# --- what the machine looked like -----------------------------------------------------------


def machine_state(sandbox: Path | None = None) -> dict[str, object]:
    """The machine-wide things a node sandbox touches, as comparable values."""
    links = sorted(p.name for p in Path("/sys/class/net").iterdir())
    mounts = sorted(line.split()[4] for line in
                    Path("/proc/self/mountinfo").read_text().splitlines())
    netns = sorted(p.name for p in Path("/run/netns").iterdir()) \
        if Path("/run/netns").is_dir() else []
    saves = {}
    for binary in network.IPTABLES:
        for table in network.TABLES:
            out = subprocess.run([f"{binary}-save", "-t", table], capture_output=True,
                                 text=True, check=False).stdout
            saves[f"{binary} {table}"] = sorted(
                re.sub(r"\[\d+:\d+\]", "", line) for line in out.splitlines()
                if line and not line.startswith("#"))
    return {
        "links": links,
        "mounts": mounts,
        "netns": netns,
        "iptables": saves,
        "chains": network.kube_chains(),
        "cgroups": [str(p) for p in cgroups.existing(node.CGROUP)],
        "sysctls": network.read_sysctls(),
        "host paths": {p: Path(p).exists() for p in (*node.HOST_PATHS, str(node.RUN_DIR))},
        "processes": node_processes(sandbox),
    }


def node_processes(sandbox: Path | None = None) -> list[str]:
    """Processes of a node: a node-only binary, anything in the node's cgroup tree (pods), or
    one whose command line names ``sandbox`` (etcd, kube-apiserver, the namespace holder; by
    name they would be confused with other sandboxes of the test session)."""
    names = {"containerd", "containerd-shim-runc-v2", "runc", "kubelet", "kube-proxy",
             "kube-controller-manager", "kube-scheduler"}
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = (entry / "exe").readlink().name
            groups = (entry / "cgroup").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if exe in names or f":/{node.CGROUP}/" in groups or \
                (sandbox is not None and str(sandbox) in cmdline):
            found.append(f"{entry.name} {exe}")
    return sorted(found)


def pods(kubectl: Path, kubeconfig: Path, namespace: str) -> list[dict[str, object]]:
    out = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "-n", namespace,
                          "get", "pods", "-o", "json"], capture_output=True, text=True,
                         check=True).stdout
    items: list[dict[str, object]] = json.loads(out)["items"]
    return items
