"""``dexkit login``, ``dexkit verify``, ``dexkit kubeconfig`` and the ``token`` plugin's help."""

from __future__ import annotations

import dataclasses
import os
import sys
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
from dexkit.config import Config, load_config
from dexkit.console import Output
from dexkit.errors import UsageError

GrantOption = Annotated[str, typer.Option(
    "--grant", help="authcode (browser), device (no browser here), or password (CI).")]
UsernameOption = Annotated[str | None, typer.Option(
    "--username", "-u", help="User for the password grant (default: the first static user).")]
InsecureOption = Annotated[bool, typer.Option(
    "--insecure", help="Do NOT verify Dex's TLS certificate. Never use this in production.")]
GRANTS = ("authcode", "authcode-keyboard", "device", "password")


def _check_grant(grant: str) -> None:
    if grant not in GRANTS:
        raise UsageError(f"unknown grant '{grant}'", f"use one of {', '.join(GRANTS)}")


def _warn_insecure(out: Output, insecure: bool) -> None:
    if insecure:
        out.warn("TLS VERIFICATION IS OFF (--insecure): anyone on the path can impersonate Dex "
                 "and read the password and tokens", "trust dexkit's ssl/ca.pem instead")


def _prepare(directory: Path, grant: str, username: str | None,
             insecure: bool) -> tuple[Config, Output]:
    """What login and verify share: check the grant, load the project, warn about --insecure."""
    _check_grant(grant)
    config = load_config(directory).config
    out = Output()
    _warn_insecure(out, insecure)
    return config, out


def login(
    ctx: typer.Context,
    directory: DirOption = Path(),
    grant: GrantOption = "authcode",
    username: UsernameOption = None,
    no_browser: Annotated[bool, typer.Option("--no-browser",
                                             help="Print the URL instead of opening it.")] = False,
    print_token: Annotated[bool, typer.Option("--print-token",
                                              help="Also print the raw ID token.")] = False,
    insecure: InsecureOption = False,
    output: OutputOption = Format.text,
) -> None:
    """Log in to Dex, show the verified ID token's claims, and fill the token cache that
    kubectl's 'dexkit token' reads. Any 'dexkit token' option may follow (e.g. --issuer ...
    --client-id ... to log in without a project)."""
    from dexkit.oidc.session import login as do_login
    from dexkit.oidc.settings import build_settings, project_settings

    _check_grant(grant)
    extra = list(ctx.args)
    if no_browser:
        extra.append("--skip-open-browser")
    if insecure:
        extra.append("--insecure")
    out = Output()
    _warn_insecure(out, insecure)
    if any(a.partition("=")[0] in ("--issuer", "--oidc-issuer-url") for a in extra):
        settings = build_settings([*extra, *(["--grant", grant] if grant != "authcode" else []),
                                   *(["--username", username] if username else [])])
    else:
        config = load_config(directory).config
        settings = project_settings(directory, config, grant=grant, username=username,
                                    extra=extra)
    settings = settings.with_password(os.environ, may_prompt=True)
    result = do_login(settings, interactive=True)  # a person ran it: stdin is theirs
    claims = {k: v for k, v in result.claims.items() if k not in ("at_hash", "c_hash")}
    if output is Format.json:
        out.json({"claims": claims, **({"id_token": result.tokens.id_token}
                                       if print_token else {})})
        return
    out.fields({k: str(v) for k, v in sorted(claims.items())}, title="ID token claims")
    if print_token:
        out.data(result.tokens.id_token + "\n")
    out.success("logged in; the token verified against Dex's keys and is cached for kubectl")


# Everything after the known options is a 'dexkit token' option (kubelogin's names included).
login.context_settings = {  # type: ignore[attr-defined]
    "allow_extra_args": True, "ignore_unknown_options": True}


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
    insecure: InsecureOption = False,
    output: OutputOption = Format.text,
) -> None:
    """Run the whole login and prove what the API server makes of the token."""
    from dexkit import verify as chain

    from dexkit.oidc.settings import project_settings

    config, out = _prepare(directory, grant, username, insecure)
    target = cluster_target(out, directory, kubeconfig, context)
    probes = tuple(chain.Probe.parse(t) for t in can or []) + tuple(
        chain.Probe.parse(t, expect_allowed=False) for t in cannot or [])
    extra = (["--skip-open-browser"] if no_browser else []) + (
        ["--insecure"] if insecure else [])
    login_settings = project_settings(directory, config, grant=grant, username=username,
                                      extra=extra).with_password(os.environ,
                                                                 may_prompt=True)
    results = chain.run(chain.VerifyRequest(
        config=config, project_dir=directory, target=target,
        login=login_settings, expect_user=expect_user,
        expect_groups=tuple(expect_group or ()), probes=probes))
    ok = chain.passed(results)
    if output is Format.json:
        out.json({"passed": ok, "steps": [dataclasses.asdict(r) for r in results]})
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


def kubeconfig(
    ctx: typer.Context,
    directory: DirOption = Path(),
    kubeconfig_path: KubeconfigOption = None,
    user: Annotated[str, typer.Option("--user", help="Name of the user entry.")] = "dexkit",
    context: Annotated[str | None, typer.Option(
        "--context", help="Also add or update this context.")] = None,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", help="Cluster entry the context points at.")] = None,
    server: Annotated[str | None, typer.Option(
        "--server", help="Create or update the cluster entry with this API server URL.")] = None,
    server_ca: Annotated[Path | None, typer.Option(
        "--server-ca", help="CA file of the API server, for the cluster entry.")] = None,
    grant: GrantOption = "authcode",
    username: UsernameOption = None,
    use_context: Annotated[bool, typer.Option(help="Make the context current.")] = False,
) -> None:
    """Add or update a kubeconfig user that runs 'dexkit token' (and a context)."""
    from dexkit import kubeconfig as kc
    from dexkit.oidc.settings import project_token_args

    _check_grant(grant)
    config = load_config(directory).config
    project = directory.resolve()
    args = project_token_args(directory, config, grant=grant, username=username)
    args += list(ctx.args)
    from dexkit.oidc.settings import build_settings

    build_settings(args)  # a bad extra option is refused now, not at kubectl's first call
    out = Output()
    sandbox_ca: str | None = None
    if server is None and cluster is None:
        # In a project whose sandbox runs, wire that cluster (and make it current, as kind
        # does), so that 'kubectl auth whoami' right after works without a flag.
        from dexkit.sandbox.target import running_sandbox, sandbox_cluster

        state = running_sandbox(project)
        if state is not None:
            found = sandbox_cluster(state)
            cluster, server, sandbox_ca = found.name, found.server, found.ca_data
            context = context or found.name
            use_context = True
            out.info(f"wiring the project's running sandbox ({server}) as cluster and "
                     f"context '{found.name}'")
    entries = [kc.Entry("users", user, kc.exec_user(args, command=_command()))]
    if server is not None:
        if cluster is None:
            raise UsageError("--server needs --cluster", "name the cluster entry to write")
        body: dict[str, object] = {"server": server}
        if sandbox_ca:
            body["certificate-authority-data"] = sandbox_ca
        elif server_ca is not None:
            import base64

            body["certificate-authority-data"] = base64.b64encode(
                server_ca.read_bytes()).decode()
        entries.append(kc.Entry("clusters", cluster, body))
    if context is not None:
        if cluster is None:
            raise UsageError("--context needs --cluster", "name the cluster the context uses")
        entries.append(kc.Entry("contexts", context, {"cluster": cluster, "user": user}))
    elif use_context:
        raise UsageError("--use-context needs --context", "name the context")
    paths = kc.kubeconfig_paths(kubeconfig_path)
    plan = kc.plan(paths, entries, use_context=context if use_context else None)
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


kubeconfig.context_settings = login.context_settings  # type: ignore[attr-defined]


def _command() -> str:
    """How kubectl should start dexkit: this installation's script, by absolute path."""
    import shutil

    here = Path(sys.argv[0])
    if here.name == "dexkit" and here.exists():
        return str(here.resolve())
    return shutil.which("dexkit") or "dexkit"


def token(ctx: typer.Context) -> None:
    """kubectl's exec credential plugin (written into kubeconfig by 'dexkit kubeconfig')."""
    from dexkit.oidc.plugin import main as plugin

    raise typer.Exit(plugin(list(ctx.args)))
