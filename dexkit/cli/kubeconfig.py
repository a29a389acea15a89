"""``dexkit kubeconfig``: a kubeconfig user that runs 'dexkit token' (and a context, a cluster),
merged into kubeconfig files or printed as a complete, portable kubeconfig
(:mod:`dexkit.kubeconfig_setup` does it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.login_options import PASS_THROUGH, GrantOption, UsernameOption, check_grant
from dexkit.cli.options import DirOption, KubeconfigOption, project_config
from dexkit.console import Output


def kubeconfig(
    ctx: typer.Context,
    directory: DirOption = Path(),
    kubeconfig_path: KubeconfigOption = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Write a complete kubeconfig (cluster, context, user) to this "
        "new file, or '-' for stdout, instead of merging into KUBECONFIG.")] = None,
    user: Annotated[str, typer.Option("--user", help="Name of the user entry.")] = "dexkit",
    context: Annotated[str | None, typer.Option(
        "--context", help="Also add or update this context.")] = None,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", help="Cluster entry the context points at; with clusters in dexkit.yaml, "
        "only that one of them (default: a context for each).")] = None,
    server: Annotated[str | None, typer.Option(
        "--server", help="Create or update the cluster entry with this API server URL.")] = None,
    server_ca: Annotated[Path | None, typer.Option(
        "--server-ca", help="CA file of the API server, for the cluster entry.")] = None,
    embed_ca: Annotated[bool | None, typer.Option(
        "--embed-ca/--no-embed-ca", help="Put Dex's CA inline instead of its path (default: "
        "inline with --output).")] = None,
    absolute_command: Annotated[bool, typer.Option(
        "--absolute-command", help="Run this installation's dexkit by absolute path instead "
        "of 'dexkit' from PATH.")] = False,
    grant: GrantOption = "authcode",
    username: UsernameOption = None,
    use_context: Annotated[bool, typer.Option(help="Make the context current.")] = False,
) -> None:
    """Add a kubeconfig user that runs 'dexkit token' (and a context), or print a kubeconfig.

    Any 'dexkit token' option may follow (e.g. --listen-address, --token-cache-storage)."""
    # Deferred until the command runs: ~36 modules, ~45 ms of 'dexkit kubeconfig --help'.
    from dexkit.kubeconfig_setup import SetupRequest, setup  # noqa: PLC0415

    check_grant(grant)
    out = Output()
    config = project_config(out, directory)
    result = setup(SetupRequest(
        directory=directory, config=config, extra=tuple(ctx.args),
        kubeconfig_path=kubeconfig_path, output=output, user=user, context=context,
        cluster=cluster, server=server, server_ca=server_ca, embed_ca=embed_ca,
        absolute_command=absolute_command, grant=grant, username=username,
        use_context=use_context), out)
    if result.text is not None:
        out.data(result.text)
    if result.next_step is not None:
        out.next_step(result.next_step)


kubeconfig.context_settings = PASS_THROUGH  # type: ignore[attr-defined]
