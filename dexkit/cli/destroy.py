"""``dexkit destroy``: what ``dexkit deploy`` made, out of the cluster again."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.options import (
    WIDTH,
    ContextOption,
    DirOption,
    KubeconfigOption,
    cluster_line,
    project_config,
    resolve_cluster,
)
from dexkit.console import Output


def destroy(
    directory: DirOption = Path(),
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    purge: Annotated[bool, typer.Option(
        "--purge", help="Also delete the TLS and credential Secrets, and the namespace if "
                        "deploy created it.")] = False,
    purge_crds: Annotated[bool, typer.Option(
        "--purge-crds", help="Also delete Dex's CRDs (dex.coreos.com) and all it stored in "
                             "them: keys, refresh tokens, passwords.")] = False,
) -> None:
    """Remove what 'dexkit deploy' made (found by its labels); Secrets and CRDs stay unless
    asked."""
    # Deferred until the command runs: ~160 modules, ~200 ms of 'dexkit destroy --help'.
    from dexkit import destroy as core  # noqa: PLC0415
    from dexkit.kube import connect  # noqa: PLC0415

    out = Output()
    config = project_config(out, directory)
    resolved = resolve_cluster(out, directory, kubeconfig, context)
    cluster = connect(resolved.target)
    cluster_line(out, cluster)
    if resolved.sandbox is not None and resolved.sandbox.dex_storage == "kubernetes":
        out.warn("the sandbox's Dex reads its kubernetes storage through the ServiceAccount "
                 "and RBAC this removes: it fails from now on",
                 "'dexkit sandbox down' and 'up' again bring them back")
    removals = core.destroy(cluster, config, purge=purge, purge_crds=purge_crds)
    for removal in removals:
        note = f" ({removal.note})" if removal.note else ""
        out.step(removal.action, removal.ref.describe() + note, width=WIDTH)
    deleted = sum(1 for r in removals if r.action == "deleted")
    kept = sum(1 for r in removals if r.action == "kept")
    out.success(f"destroyed: {deleted} deleted, {kept} kept" if removals
                else f"nothing of dexkit's found in namespace {config.namespace}")
