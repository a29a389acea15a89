"""``dexkit verify``: the whole login, and what the API server makes of the token."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.login_options import (
    GrantOption,
    InsecureOption,
    UsernameOption,
    check_grant,
    warn_insecure,
)
from dexkit.cli.options import (
    ContextOption,
    DirOption,
    Format,
    KubeconfigOption,
    OutputOption,
    cluster_target,
    project_config,
)
from dexkit.console import Output
from dexkit.errors import UsageError
from dexkit.oidc.settings import project_settings


def verify(
    directory: DirOption = Path(),
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    grant: GrantOption = "password",
    username: UsernameOption = None,
    expect_user: Annotated[str | None, typer.Option(
        help="Username the API server must report.")] = None,
    expect_group: Annotated[list[str] | None, typer.Option(
        help="Group the API server must report (repeatable).")] = None,
    can: Annotated[list[str] | None, typer.Option(
        help="'VERB RESOURCE [NAMESPACE]' that must be allowed (repeatable).")] = None,
    cannot: Annotated[list[str] | None, typer.Option(
        help="'VERB RESOURCE [NAMESPACE]' that must be denied (repeatable).")] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser")] = False,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", help="With clusters in dexkit.yaml: which one (its context by default).")]
        = None,
    insecure: InsecureOption = False,
    output: OutputOption = Format.text,
) -> None:
    """Run the whole login and prove what the API server makes of the token."""
    # Deferred until the command runs: ~11 modules, ~13 ms of 'dexkit verify --help'.
    from dexkit import verify as chain  # noqa: PLC0415

    check_grant(grant)
    out = Output()
    config = project_config(out, directory)
    if config.clusters and cluster is None:
        raise UsageError("dexkit.yaml lists several clusters: name the one to verify",
                         f"pass --cluster, one of {', '.join(c.name for c in config.clusters)}")
    if cluster is not None:
        config = config.for_cluster(cluster)
        if kubeconfig is None and context is None:
            context = cluster  # the context 'dexkit kubeconfig' writes for it
    warn_insecure(out, insecure)
    target = cluster_target(out, directory, kubeconfig, context)
    probes = tuple(chain.Probe.parse(t) for t in can or []) + tuple(
        chain.Probe.parse(t, expect_allowed=False) for t in cannot or [])
    extra = (["--skip-open-browser"] if no_browser else []) + (
        ["--insecure"] if insecure else [])
    login = project_settings(directory, config, grant=grant, username=username, extra=extra)
    results = chain.run(chain.VerifyRequest(
        config=config, project_dir=directory, target=target,
        login=login.with_password(os.environ, may_prompt=True), expect_user=expect_user,
        expect_groups=tuple(expect_group or ()), probes=probes))
    ok = chain.passed(results)
    if output.structured:
        out.structured(output, {"passed": ok, "steps": [dataclasses.asdict(r) for r in results]})
    else:
        out.table(["step", "result", "ms", "detail"],
                  [(r.name, r.status, f"{r.seconds * 1000:.0f}", r.detail) for r in results])
        failed = next((r for r in results if r.status == "fail"), None)
        if failed is None:
            out.success("verified: Dex login -> ID token -> API server identity, as configured")
        else:
            out.err.line(f"{failed.name}: {failed.detail}", lead="error: ", lead_style="red")
            if failed.hint:
                out.err.line(failed.hint, lead="hint: ", lead_style="dim")
    if not ok:
        raise typer.Exit(1)
