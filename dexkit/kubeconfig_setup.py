"""``dexkit kubeconfig``'s use case: a kubeconfig user that runs 'dexkit token' (and a context,
a cluster), merged into kubeconfig files or made into a complete, portable kubeconfig.

Rules, in the order they act:
- How kubectl starts dexkit is said first (by name from PATH, or this installation by absolute
  path), with what a kuberc policy would refuse.
- With clusters in dexkit.yaml: per cluster a user '<user>-<cluster>' whose token has that
  cluster's audience, its cluster entry and a context named after it; one login serves them all.
- Else one user from the project's token arguments and the 'dexkit token' options that follow;
  a secret among them is refused first (never echoed in another error), and a bad option, or
  what 'dexkit token' will warn about on every login, is said now rather than at kubectl's
  first call.
- The cluster entry: --server/--cluster, else the project's running sandbox (whose context
  then becomes current, as kind does), else none.
- ``--output``: a complete kubeconfig (it needs its cluster), printed or written as a new 0600
  file; else merged into the kubeconfig files (:mod:`dexkit.kubeconfig`'s rules), backups said.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dexkit import files
from dexkit import kubeconfig as kc
from dexkit.errors import UsageError
from dexkit.kubeconfig import ClusterSpec
from dexkit.kuberc import kuberc_advice
from dexkit.oidc.settings import build_settings, project_token_args
from dexkit.sandbox.target import running_sandbox, sandbox_cluster

if TYPE_CHECKING:
    from dexkit.config import ClusterSettings, Config
    from dexkit.console import Reporter


@dataclass(frozen=True)
class SetupRequest:
    directory: Path
    config: Config
    extra: tuple[str, ...] = ()  # 'dexkit token' options
    kubeconfig_path: Path | None = None
    output: str | None = None  # a new file, or '-' for stdout: a complete kubeconfig
    user: str = "dexkit"
    context: str | None = None
    cluster: str | None = None
    server: str | None = None
    server_ca: Path | None = None
    embed_ca: bool | None = None
    absolute_command: bool = False
    grant: str = "authcode"
    username: str | None = None
    use_context: bool = False


@dataclass(frozen=True)
class SetupResult:
    text: str | None = None  # the complete kubeconfig, for stdout
    next_step: str | None = None


def setup(req: SetupRequest, out: Reporter) -> SetupResult:
    """Write (or print) the kubeconfig entries ``req`` asks for; see the module's rules."""

    config, directory = req.config, req.directory
    portable = req.output is not None
    command, warning = kc.plugin_command(req.absolute_command)
    if warning and not portable:
        out.warn(warning)
    for line in kuberc_advice(command):
        out.warn(*line)
    if config.clusters:
        return _fleet(out, req, command)
    args = project_token_args(directory, config, grant=req.grant, username=req.username,
                              embed_ca=portable if req.embed_ca is None else req.embed_ca,
                              password_file=not portable)
    args += list(req.extra)
    kc.refuse_secrets(args)  # first: a refused secret is never echoed in another error
    # a bad extra option is refused now, not at kubectl's first call; what 'dexkit token' will
    # warn about on every login (a plain-http issuer...) is said now too
    for said in build_settings(args).warnings:
        out.warn(said)
    spec, sandbox = _cluster(out, directory, req.cluster, req.server, req.server_ca)
    context, use_context = req.context, req.use_context
    if sandbox and spec is not None:
        context, use_context = context or spec.name, True  # current, as kind does
    if use_context and context is None:
        raise UsageError("--use-context needs --context", "name the context")
    request = kc.UserRequest(user=req.user, token_args=tuple(args), command=command,
                             cluster=spec, cluster_name=req.cluster, context=context)
    entries = kc.entries_for(request)
    if portable:
        return _print_or_create(out, req.output or "-",
                                kc.render(entries, context if spec else None),
                                has_cluster=spec is not None)
    _merge(out, req.kubeconfig_path, entries, context if use_context else None)
    if context is None:
        return SetupResult(next_step=f"kubectl --user {req.user} auth whoami")
    return SetupResult(next_step="kubectl auth whoami" if use_context
                       else f"kubectl --context {context} auth whoami")


def _merge(out: Reporter, kubeconfig_path: Path | None, entries: list[kc.Entry],
           current: str | None) -> None:
    plan = kc.plan(kc.kubeconfig_paths(kubeconfig_path), entries, use_context=current)
    backups = kc.write(plan)
    for change in plan.changes or ["already up to date: nothing changed"]:
        out.info(change)
    for backup in backups:
        out.step("backed up", str(backup))


def _fleet(out: Reporter, req: SetupRequest, command: str) -> SetupResult:
    """Several clusters: per cluster a user '<user>-<cluster>' whose token has that cluster's
    audience, its cluster entry (from clusters[].server and certificateAuthority) and a
    context named after it; one login serves them all."""

    config, directory = req.config, req.directory
    portable = req.output is not None
    chosen = [config.cluster_named(req.cluster)] if req.cluster else config.clusters
    entries: list[kc.Entry] = []
    for cluster in chosen:
        args = [*project_token_args(directory, config, grant=req.grant, username=req.username,
                                    embed_ca=portable if req.embed_ca is None else req.embed_ca,
                                    password_file=not portable, cluster=cluster.name),
                *req.extra]
        kc.refuse_secrets(args)  # first: a refused secret is never echoed in another error
        for said in build_settings(args).warnings:
            out.warn(said)
        spec = _fleet_cluster(directory, cluster)
        if spec is None:
            out.warn(f"cluster '{cluster.name}': no server in dexkit.yaml, so no cluster entry "
                     "is written; its context points at a cluster entry of that name",
                     f"set clusters[{cluster.name}].server (and certificateAuthority)")
        entries += kc.entries_for(kc.UserRequest(
            user=f"{req.user}-{cluster.name}", token_args=tuple(args), command=command,
            cluster=spec, cluster_name=cluster.name, context=cluster.name))
    first = chosen[0].name
    if portable:
        return _print_or_create(out, req.output or "-", kc.render(entries, first),
                                has_cluster=True)
    _merge(out, req.kubeconfig_path, entries, first if req.use_context else None)
    return SetupResult(next_step=" ; ".join(f"kubectl --context {c.name} auth whoami"
                                            for c in chosen)
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


def _cluster(out: Reporter, directory: Path, cluster: str | None, server: str | None,
             server_ca: Path | None) -> tuple[ClusterSpec | None, bool]:
    """The cluster entry to write (--server/--cluster, else the project's running sandbox),
    and whether it is the sandbox."""

    if server is not None:
        if cluster is None:
            raise UsageError("--server needs --cluster", "name the cluster entry to write")
        data = None
        if server_ca is not None:
            try:
                data = base64.b64encode(files.read_limited(server_ca, trust=True)).decode()
            except OSError as exc:
                raise UsageError(f"cannot read --server-ca {server_ca}: {exc.strerror}",
                                 "pass the API server's CA file") from None
        return ClusterSpec(cluster, server, data), False
    if cluster is not None:
        return None, False

    state = running_sandbox(directory.resolve())
    if state is None:
        return None, False
    found = sandbox_cluster(state)
    out.info(f"wiring the project's running sandbox ({found.server}) as cluster and context "
             f"'{found.name}'")
    return ClusterSpec(found.name, found.server, found.ca_data), True


def _print_or_create(out: Reporter, target: str, text: str, *,
                     has_cluster: bool) -> SetupResult:
    """A complete kubeconfig: returned for stdout (``-``), or written as a new 0600 file."""
    if not has_cluster:
        raise UsageError("a complete kubeconfig needs its cluster",
                         "pass --server URL --cluster NAME (and --server-ca), or start "
                         "'dexkit sandbox up' in this project")
    if target == "-":
        return SetupResult(text=text)
    path = Path(target)
    if path.exists():
        raise UsageError(f"{path} exists; --output writes only a new file",
                         "choose a new name, or merge with --kubeconfig")
    files.atomic_write(path, text, files.PRIVATE)
    out.info(f"wrote {path} (0600): a complete kubeconfig; hand it over as it is")
    return SetupResult()
