"""``dexkit doctor``: run every check, show a table (or JSON) and a verdict; exit 1 on a failure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.options import (
    ContextOption,
    DirOption,
    Format,
    KubeconfigOption,
    OutputOption,
    cluster_target,
)
from dexkit.errors import UsageError

LOGINS = ("none", "password", "device")
_MARK = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def doctor(
    directory: DirOption = Path(),
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Do not contact the cluster (Dex itself is still checked).")] = False,
    login: Annotated[str, typer.Option(
        "--login", help="Also log in and check the token: password, device, or none.")]
        = "none",
    username: Annotated[str | None, typer.Option(
        "--username", "-u", help="User for --login password (default: the first static "
        "user); the password comes from DEXKIT_PASSWORD or .dexkit/passwords/.")] = None,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", help="With clusters in dexkit.yaml: check this one (its context by "
        "default).")] = None,
    output: OutputOption = Format.text,
) -> None:
    """Check every link between the browser, Dex and the API server, and name the broken one."""
    # Deferred until the command runs: every check group would add ~200 modules, ~250 ms to
    # 'dexkit doctor --help'; the console (with json) ~7 modules, ~5 ms.
    from dexkit import doctor as checks  # noqa: PLC0415
    from dexkit.console import Output  # noqa: PLC0415

    if login not in LOGINS:
        raise UsageError(f"unknown login '{login}'", f"use one of {', '.join(LOGINS)}")
    out = Output()
    if cluster is not None and kubeconfig is None and context is None:
        context = cluster  # the context 'dexkit kubeconfig' writes for it
    target = cluster_target(out, directory, kubeconfig, context)
    results = checks.run(checks.DoctorRequest(
        directory=directory, target=target, offline=offline,
        login=login,  # type: ignore[arg-type]
        username=username, cluster=cluster))
    summary = checks.summarise(results)
    if output.structured:
        out.structured(output, checks.as_json(results))
    else:
        out.table(["check", "result", "detail"],
                  [(r.id, _MARK[r.status], r.message) for r in results])
        for result in results:
            if result.status in ("fail", "warn") and result.hint:
                out.err.line(result.hint, lead=f"hint [{result.id}]: ", lead_style="dim")
        if summary.passed:
            out.success(f"doctor: {summary.sentence()}")
        else:
            out.err.line(summary.sentence(), lead="doctor: ", lead_style="red bold")
    if not summary.passed:
        raise typer.Exit(1)
