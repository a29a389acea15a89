"""``dexkit kubeconfig``: a kubeconfig user that runs 'dexkit token' (and a context, a cluster),
merged into kubeconfig files or printed as a complete, portable kubeconfig."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.login_options import PASS_THROUGH, GrantOption, UsernameOption, check_grant
from dexkit.cli.options import DirOption, KubeconfigOption
from dexkit.console import Output
from dexkit.errors import UsageError
from dexkit.kubeconfig import ClusterSpec


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
        "--cluster", help="Cluster entry the context points at.")] = None,
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
    from dexkit import kubeconfig as kc
    from dexkit.config import load_config
    from dexkit.oidc.settings import build_settings, project_token_args

    check_grant(grant)
    config = load_config(directory).config
    out = Output()
    portable = output is not None
    args = project_token_args(directory, config, grant=grant, username=username,
                              embed_ca=portable if embed_ca is None else embed_ca,
                              password_file=not portable)
    args += list(ctx.args)
    kc.refuse_secrets(args)  # first: a refused secret is never echoed in another error
    # a bad extra option is refused now, not at kubectl's first call; what 'dexkit token' will
    # warn about on every login (a plain-http issuer...) is said now too
    for said in build_settings(args).warnings:
        out.warn(said)
    command, warning = kc.plugin_command(absolute_command)
    if warning and not portable:
        out.warn(warning)
    spec, sandbox = _cluster(out, directory, cluster, server, server_ca)
    if sandbox and spec is not None:
        context, use_context = context or spec.name, True  # current, as kind does
    if use_context and context is None:
        raise UsageError("--use-context needs --context", "name the context")
    request = kc.UserRequest(user=user, token_args=tuple(args), command=command, cluster=spec,
                             cluster_name=cluster, context=context)
    entries = kc.entries_for(request)
    if portable:
        _print_or_create(out, output or "-", kc.render(entries, context if spec else None),
                         has_cluster=spec is not None)
        return
    plan = kc.plan(kc.kubeconfig_paths(kubeconfig_path), entries,
                   use_context=context if use_context else None)
    backups = kc.write(plan)
    for change in plan.changes or ["already up to date: nothing changed"]:
        out.info(change)
    for backup in backups:
        out.step("backed up", str(backup))
    if context is None:
        out.next_step(f"kubectl --user {user} auth whoami")
    else:
        out.next_step("kubectl auth whoami" if use_context
                      else f"kubectl --context {context} auth whoami")


kubeconfig.context_settings = PASS_THROUGH  # type: ignore[attr-defined]


def _cluster(out: Output, directory: Path, cluster: str | None, server: str | None,
             server_ca: Path | None) -> tuple[ClusterSpec | None, bool]:
    """The cluster entry to write (--server/--cluster, else the project's running sandbox),
    and whether it is the sandbox."""

    if server is not None:
        if cluster is None:
            raise UsageError("--server needs --cluster", "name the cluster entry to write")
        data = None
        if server_ca is not None:
            from dexkit.files import read_limited

            try:
                data = base64.b64encode(read_limited(server_ca, trust=True)).decode()
            except OSError as exc:
                raise UsageError(f"cannot read --server-ca {server_ca}: {exc.strerror}",
                                 "pass the API server's CA file") from None
        return ClusterSpec(cluster, server, data), False
    if cluster is not None:
        return None, False
    from dexkit.sandbox.target import running_sandbox, sandbox_cluster

    state = running_sandbox(directory.resolve())
    if state is None:
        return None, False
    found = sandbox_cluster(state)
    out.info(f"wiring the project's running sandbox ({found.server}) as cluster and context "
             f"'{found.name}'")
    return ClusterSpec(found.name, found.server, found.ca_data), True


def _print_or_create(out: Output, target: str, text: str, *, has_cluster: bool) -> None:
    from dexkit import files

    if not has_cluster:
        raise UsageError("a complete kubeconfig needs its cluster",
                         "pass --server URL --cluster NAME (and --server-ca), or start "
                         "'dexkit sandbox up' in this project")
    if target == "-":
        out.data(text)
        return
    path = Path(target)
    if path.exists():
        raise UsageError(f"{path} exists; --output writes only a new file",
                         "choose a new name, or merge with --kubeconfig")
    files.atomic_write(path, text, files.PRIVATE)
    out.info(f"wrote {path} (0600): a complete kubeconfig; hand it over as it is")
