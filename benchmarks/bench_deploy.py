"""Issue 5's target: deploy's apply phase against a sandbox API server at most 1.0x the time of
``kubectl apply --server-side -f`` of the same objects, measured side by side in one run.

Both apply exactly the same objects: the rendered manifests plus the TLS and github-client
Secrets and the pod-template checksums deploy adds (dumped to a file for kubectl). Two cases:

- fresh: every run into a new namespace, so every object is created;
- unchanged: the same objects again into a namespace that already holds them.

dexkit's apply phase is timed in this (warm) process: connect (kubeconfig) and
``dexkit.deploy.deploy`` (reads, server-side dry run, apply by steps). kubectl's figure is its
whole process (start, kubeconfig, cached discovery, one PATCH per object). The whole
``dexkit deploy --no-wait`` command is shown too, for the record: it adds Python's start and
the kubernetes client's import, which the target does not cover.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import yaml

from benchmarks.harness import Timing, table, time_command
from dexkit import credentials, deploy, kube
from dexkit.project import InitRequest, init_project
from dexkit.render.dex import render_manifests
from dexkit.sandbox import controlplane, peers

RUNS = 15
ENV = {"GITHUB_CLIENT_ID": "bench-client-id", "GITHUB_CLIENT_SECRET": "bench-client-secret"}


class _Quiet:
    def change(self, change: deploy.Change) -> None:
        pass

    def step(self, verb: str, what: str) -> None:
        pass

    def warn(self, message: str, hint: str = "") -> None:
        pass


def _project(directory: Path) -> deploy.Project:
    init_project(InitRequest(directory=directory))
    config_file = directory / "dexkit.yaml"
    data = yaml.safe_load(config_file.read_text())
    # ClusterIP: a NodePort is cluster-wide and would clash between the runs' namespaces.
    data["dex"]["service"]["type"] = "ClusterIP"
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return deploy.load_project(directory)


def _in(project: deploy.Project, namespace: str) -> deploy.Project:
    config = msgspec.structs.replace(project.config, namespace=namespace)
    objects = [yaml.safe_load(m.text) for m in render_manifests(config)]
    return deploy.Project(config, objects, project.tls)


def _objects(project: deploy.Project) -> list[dict[str, Any]]:
    resolved = credentials.resolve_credentials(
        credentials.credential_secrets(project.config), ENV, {})
    return deploy.build_objects(project, resolved)


def _write_stream(objects: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(f"---\n{yaml.safe_dump(o, sort_keys=False)}" for o in objects))
    return path


def _time_apply(name: str, project_of: Callable[[int], deploy.Project], kubeconfig: Path,
                runs: int) -> Timing:
    """dexkit's apply phase, in process: connect + deploy (no rollout wait)."""
    samples = []
    for i in range(-1, runs):
        project = project_of(i + 1)
        start = time.perf_counter()
        cluster = kube.connect(kube.Target(kubeconfig))
        deploy.deploy(deploy.DeployRequest(project, ENV), cluster, _Quiet())
        elapsed = (time.perf_counter() - start) * 1000
        if i >= 0:
            samples.append(elapsed)
    return Timing(name, runs, statistics.median(samples), min(samples), max(samples))


def _start_plane(work: Path) -> controlplane.ControlPlane:
    version = peers.resolve_kubernetes_version(None)
    binaries = controlplane.ControlPlaneBinaries(etcd=peers.require_peer("etcd", version),
                                                 kube_apiserver=peers.require_peer(
                                                     "kube-apiserver", version))
    return controlplane.start_control_plane(work / "sandbox", binaries)


def run() -> tuple[str, dict[str, float]]:
    work = Path(tempfile.mkdtemp(prefix="dexkit-bench-deploy-"))
    kubectl = str(peers.require_peer("kubectl"))
    dexkit = str(Path(sys.executable).with_name("dexkit"))
    plane = _start_plane(work)
    try:
        base = _project(work / "project")
        kc = plane.kubeconfig
        # kubectl's discovery cache lives here, warmed by the untimed first run as it would
        # be on an operator's machine.
        kubectl_args = [kubectl, "--kubeconfig", kc, "--cache-dir", work / "kube-cache",
                        "apply", "--server-side", "--field-manager=dexkit", "-f"]
        streams = {i: _write_stream(_objects(_in(base, f"bench-k-{i}")), work / f"k-{i}.yaml")
                   for i in range(RUNS + 1)}
        fresh = [
            time_command("kubectl apply --server-side -f (fresh namespace)",
                         lambda i: [*kubectl_args, streams[i]], RUNS),
            _time_apply("dexkit apply phase (fresh namespace)",
                        lambda i: _in(base, f"bench-d-{i}"), kc, RUNS),
        ]
        steady = _write_stream(_objects(_in(base, "bench-k-0")), work / "steady.yaml")
        unchanged = [
            time_command("kubectl apply --server-side -f (unchanged)",
                         lambda i: [*kubectl_args, steady], RUNS),
            _time_apply("dexkit apply phase (unchanged)", lambda i: _in(base, "bench-d-0"), kc,
                        RUNS),
            _whole_command(dexkit, work, base, kc),
        ]
    finally:
        plane.stop()
        shutil.rmtree(work, ignore_errors=True)
    return _report(fresh, unchanged)


def _whole_command(dexkit: str, work: Path, base: deploy.Project, kubeconfig: Path) -> Timing:
    """``dexkit deploy --no-wait`` as a user runs it, into the namespace of the unchanged case."""
    project_dir = work / "project"
    config_file = project_dir / "dexkit.yaml"
    data = yaml.safe_load(config_file.read_text())
    data["namespace"] = "bench-d-0"
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    os.environ.update(ENV)
    return time_command("dexkit deploy --no-wait, whole command (unchanged)",
                        lambda i: [dexkit, "deploy", "--dir", project_dir, "--kubeconfig",
                                   kubeconfig, "--no-wait"], RUNS)


def _report(fresh: list[Timing], unchanged: list[Timing]) -> tuple[str, dict[str, float]]:
    fresh_ratio = fresh[1].median_ms / fresh[0].median_ms
    same_ratio = unchanged[1].median_ms / unchanged[0].median_ms
    whole_ratio = unchanged[2].median_ms / unchanged[0].median_ms
    objects = "the rendered objects plus the TLS and github-client Secrets (12 objects)"
    verdicts = [
        f"- apply phase, fresh namespace: dexkit / kubectl = {fresh_ratio:.2f} (target <= 1.00):"
        f" {'met' if fresh_ratio <= 1.0 else 'MISSED'}",
        f"- apply phase, unchanged: dexkit / kubectl = {same_ratio:.2f} (target <= 1.00): "
        f"{'met' if same_ratio <= 1.0 else 'MISSED'}",
        f"- whole `dexkit deploy --no-wait` / kubectl = {whole_ratio:.2f} (no target: Python's "
        "start, the kubernetes client's import and loading the project come on top)",
        "- dexkit does more per run than kubectl: it reads every object first (to report "
        "created/updated/unchanged honestly), dry-runs all of them (conflicts before any "
        "change), then applies them by dependency step, each step's objects concurrently.",
    ]
    text = ("## `dexkit deploy` apply phase against `kubectl apply --server-side`\n\n"
            f"Both apply {objects} to a sandbox kube-apiserver.\n\n"
            + table(fresh, baseline=fresh[0].name) + "\n\n"
            + table(unchanged, baseline=unchanged[0].name) + "\n\n" + "\n".join(verdicts))
    return text, {"deploy_fresh_ratio": fresh_ratio, "deploy_unchanged_ratio": same_ratio,
                  "deploy_whole_command_ratio": whole_ratio}


if __name__ == "__main__":
    print(run()[0])
