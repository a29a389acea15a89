"""``dexkit deploy``: Dex into a cluster (``dexkit destroy`` takes it out again)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dexkit.cli.options import (
    WIDTH,
    ContextOption,
    DirOption,
    KubeconfigOption,
    cluster_line,
    resolve_cluster,
)
from dexkit.console import Output

if TYPE_CHECKING:
    from dexkit.deploy import Change, DeployResult, Project
    from dexkit.kube import Cluster, ObjectRef
    from dexkit.sandbox.target import Resolved

MAX_FIELDS = 4


class _Printer:
    """deploy's Reporter: one line per object, values never shown (there are none to show)."""

    def __init__(self, out: Output, dry_run: bool) -> None:
        self.out = out
        self.dry_run = dry_run

    def change(self, change: Change) -> None:
        verb = change.action
        if self.dry_run and verb in ("created", "updated"):
            verb = "would " + verb.removesuffix("d")
        what = change.ref.describe()
        if change.fields:
            shown = ", ".join(change.fields[:MAX_FIELDS])
            more = len(change.fields) - MAX_FIELDS
            what += f": {shown}" + (f" and {more} more" if more > 0 else "")
        if change.note:
            what += f" ({change.note})"
        self.out.step(verb, what, width=WIDTH)

    def step(self, verb: str, what: str) -> None:
        self.out.step(verb, what, width=WIDTH)

    def warn(self, message: str, hint: str = "") -> None:
        self.out.warn(message, hint)


def _summary(result: DeployResult) -> str:
    counts = result.counts()
    parts = [f"{n} {action}" for action, n in counts.items()]
    if result.dry_run:
        return f"dry run: {', '.join(parts)}; nothing was changed"
    return f"deployed: {', '.join(parts)}"


def deploy(
    directory: DirOption = Path(),
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Send everything as a server-side dry run; print what would "
                          "change.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait for the Deployment to roll out.")] = True,
    timeout: Annotated[float, typer.Option(
        min=0, help="Seconds to wait for the rollout.")] = 300.0,
    force_conflicts: Annotated[bool, typer.Option(
        "--force-conflicts", help="Take over fields another field manager owns.")] = False,
    env_file: Annotated[Path | None, typer.Option(
        "--env-file", dir_okay=False,
        help="KEY=VALUE file with credentials (GITHUB_CLIENT_ID, GITHUB_CLIENT_SECRET, "
             "LDAP_BIND_PASSWORD, ...); the environment wins.")] = None,
) -> None:
    """Create or update Dex in the cluster (server-side apply), then wait for it to roll out.

    Secrets come from ssl/ (the TLS secret) and from the environment variables Dex reads
    (GITHUB_CLIENT_ID, ...); a credential that is missing everywhere stops the deploy before
    anything is changed. Running it again with nothing changed changes nothing.
    """
    # Deferred until the command runs (python -X importtime): the core and its peers would add
    # ~160 modules, ~150 ms to 'dexkit deploy --help'.
    from dexkit import deploy as core  # noqa: PLC0415
    from dexkit.credentials import merged_environment, read_env_file  # noqa: PLC0415
    from dexkit.kube import connect  # noqa: PLC0415

    project = core.load_project(directory)
    env = merged_environment(os.environ, read_env_file(env_file) if env_file else None)
    out = Output()
    for warning in project.warnings:
        out.warn(warning)
    resolved = resolve_cluster(out, directory, kubeconfig, context)
    cluster = connect(resolved.target)
    cluster_line(out, cluster, ": dry run, nothing will be changed" if dry_run else "")
    result = core.deploy(core.DeployRequest(
        project, env, dry_run=dry_run, force_conflicts=force_conflicts, wait=wait,
        pods_run=resolved.sandbox is None or resolved.sandbox_has_node),
        cluster, _Printer(out, dry_run))
    if result.wait and result.deployment is not None:
        started = time.monotonic()
        _wait(out, cluster, result.deployment, timeout)
        _wait_serving(out, cluster, project, resolved,
                      max(1.0, timeout - (time.monotonic() - started)))
        if core.needs_cluster_dns(project.config):
            core.wait_for_cluster_network(cluster, _Printer(out, dry_run), needs=(core.DNS,))
    out.success(_summary(result))


def _wait(out: Output, cluster: Cluster, ref: ObjectRef, timeout: float) -> None:
    # Deferred until --wait: ~17 modules, ~27 ms.
    from dexkit import rollout  # noqa: PLC0415

    failure: rollout.RolloutError | None = None
    with out.progress("rollout", ref.describe(), width=WIDTH) as update:
        try:
            rollout.wait_for_rollout(
                cluster, ref, timeout=timeout,
                on_status=lambda s: update(s.available, s.desired, s.message))
        except rollout.RolloutError as exc:
            failure = exc
    if failure is not None:
        for line in failure.details:
            out.info(line)
        raise failure


def _wait_serving(out: Output, cluster: Cluster, project: Project, resolved: Resolved,
                  timeout: float) -> None:
    """Until a login through the new Pods works (dexkit.ready's rules)."""
    # Deferred until --wait: ~80 modules, ~85 ms.
    from dexkit import ready  # noqa: PLC0415
    from dexkit.sandbox.state import SandboxLayout  # noqa: PLC0415

    log = SandboxLayout(resolved.sandbox.dir).log("kube-apiserver") \
        if resolved.sandbox is not None else None
    target = ready.Target(project.config, resolved.target, project.tls.cert, project.tls.ca,
                          apiserver_log=log)
    notes = ready.wait_until_serving(
        cluster, target, timeout=timeout,
        on_step=lambda step, detail: out.step(step, detail, width=WIDTH))
    for note in notes:
        out.info(note)
