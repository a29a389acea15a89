"""``dexkit kubeconfig``: a kubeconfig user that runs 'dexkit token' (and a context, a cluster),
merged into kubeconfig files or printed as a complete, portable kubeconfig."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dexkit import files
from dexkit.cli.login_options import PASS_THROUGH, GrantOption, UsernameOption, check_grant
from dexkit.cli.options import DirOption, KubeconfigOption, project_config
from dexkit.console import Output
from dexkit.errors import UsageError
from dexkit.kubeconfig import ClusterSpec
from dexkit.kuberc import kuberc_advice

if TYPE_CHECKING:
    from dexkit import kubeconfig as kc_types
    from dexkit.config import ClusterSettings, Config


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
    from dexkit import kubeconfig as kc
    from dexkit.oidc.settings import build_settings, project_token_args

    check_grant(grant)
    out = Output()
    config = project_config(out, directory)
    portable = output is not None
    command, warning = kc.plugin_command(absolute_command)
    if warning and not portable:
        out.warn(warning)
    for line in kuberc_advice(command):
        out.warn(*line)
    if config.clusters:
        _fleet(out, directory, config, ctx.args, grant=grant, username=username, user=user,
               only=cluster, output=output, command=command, embed_ca=embed_ca,
               kubeconfig_path=kubeconfig_path, use_context=use_context)
        return
    args = project_token_args(directory, config, grant=grant, username=username,
                              embed_ca=portable if embed_ca is None else embed_ca,
                              password_file=not portable)
    args += list(ctx.args)
    kc.refuse_secrets(args)  # first: a refused secret is never echoed in another error
    # a bad extra option is refused now, not at kubectl's first call; what 'dexkit token' will
    # warn about on every login (a plain-http issuer...) is said now too
    for said in build_settings(args).warnings:
        out.warn(said)
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
    _merge(out, kubeconfig_path, entries, context if use_context else None)
    if context is None:
        out.next_step(f"kubectl --user {user} auth whoami")
    else:
        out.next_step("kubectl auth whoami" if use_context
                      else f"kubectl --context {context} auth whoami")


def _merge(out: Output, kubeconfig_path: Path | None, entries: list[kc_types.Entry],
           current: str | None) -> None:
    from dexkit import kubeconfig as kc

    plan = kc.plan(kc.kubeconfig_paths(kubeconfig_path), entries, use_context=current)
    backups = kc.write(plan)
    for change in plan.changes or ["already up to date: nothing changed"]:
        out.info(change)
    for backup in backups:
        out.step("backed up", str(backup))


def _fleet(out: Output, directory: Path, config: Config, extra: list[str], *, grant: str,
           username: str | None, user: str, only: str | None, output: str | None,
           command: str, embed_ca: bool | None, kubeconfig_path: Path | None,
           use_context: bool) -> None:
    """Several clusters: per cluster a user '<user>-<cluster>' whose token has that cluster's
    audience, its cluster entry (from clusters[].server and certificateAuthority) and a
    context named after it; one login serves them all."""
    from dexkit import kubeconfig as kc
    from dexkit.oidc.settings import build_settings, project_token_args

    portable = output is not None
    chosen = [config.cluster_named(only)] if only else config.clusters
    entries: list[kc_types.Entry] = []
    for cluster in chosen:
        args = [*project_token_args(directory, config, grant=grant, username=username,
                                    embed_ca=portable if embed_ca is None else embed_ca,
                                    password_file=not portable, cluster=cluster.name),
                *extra]
        kc.refuse_secrets(args)  # first: a refused secret is never echoed in another error
        for said in build_settings(args).warnings:
            out.warn(said)
        spec = _fleet_cluster(directory, cluster)
        if spec is None:
            out.warn(f"cluster '{cluster.name}': no server in dexkit.yaml, so no cluster entry "
                     "is written; its context points at a cluster entry of that name",
                     f"set clusters[{cluster.name}].server (and certificateAuthority)")
        entries += kc.entries_for(kc.UserRequest(
            user=f"{user}-{cluster.name}", token_args=tuple(args), command=command,
            cluster=spec, cluster_name=cluster.name, context=cluster.name))
    first = chosen[0].name
    if portable:
        _print_or_create(out, output or "-", kc.render(entries, first), has_cluster=True)
        return
    _merge(out, kubeconfig_path, entries, first if use_context else None)
    out.next_step(" ; ".join(f"kubectl --context {c.name} auth whoami" for c in chosen)
                  + "  (one login serves every context)")


def _fleet_cluster(directory: Path, cluster: ClusterSettings) -> ClusterSpec | None:
    if cluster.server is None:
        return None
    data = None
    if cluster.certificate_authority:
        path = directory / cluster.certificate_authority
        try:
            data = base64.b64encode(files.read_limited(path, trust=True)).decode()
        except OSError as exc:
            raise UsageError(f"cannot read cluster '{cluster.name}'s certificateAuthority "
                             f"{path}: {exc.strerror or exc}", "fix the path in dexkit.yaml") \
                from None
    return ClusterSpec(cluster.name, cluster.server, data)


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
