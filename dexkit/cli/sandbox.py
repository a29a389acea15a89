"""``dexkit sandbox build | peers | up | status | restart | down``: a real control plane,
locally."""

from __future__ import annotations

import os
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.options import DirOption, Format, OutputOption, project_config
from dexkit.console import Output
from dexkit.sandbox import controlplane, peers


class Mode(StrEnum):
    flags = "flags"
    authentication_config = "authentication-config"


class Storage(StrEnum):
    rendered = "rendered"
    memory = "memory"


app = typer.Typer(help="Build and run real peers (etcd, kube-apiserver, kubectl, Dex) locally.",
                  no_args_is_help=True)

KubernetesVersionOption = Annotated[str | None, typer.Option(
    "--kubernetes-version", "-k",
    help=f"Kubernetes release: {', '.join(peers.KUBERNETES_RELEASES)} or a patch "
         f"(default {peers.KUBERNETES_RELEASES[peers.DEFAULT_KUBERNETES]}).")]


@app.command()
def build(
    kubernetes_version: KubernetesVersionOption = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help=f"Build only this peer (repeatable): {', '.join(peers.PEER_NAMES)}.")]
        = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if already built.")] = False,
    dex: Annotated[str, typer.Option(
        "--dex", help="Which Dex: 'release' (v2.45.1) or 'main' (Dex's main branch at commit "
                      "ab64ed778070, not a release).")] = peers.DEFAULT_DEX,
) -> None:
    """Build the missing peers from their Go modules with the local Go toolchain (minutes cold)."""
    names = peers.select_peers(only)
    specs = [peers.peer_spec(name, kubernetes_version, dex=dex) for name in names]
    out = Output()
    started = time.monotonic()

    def progress(line: str) -> None:
        out.info(f"[{time.monotonic() - started:6.1f}s] {line}")

    manifests = peers.build_peers(specs, progress=progress, force=force)
    for manifest in manifests:
        out.step("built", f"{manifest.name} {manifest.version} "
                          f"({manifest.build_seconds:.0f}s, sha256 {manifest.sha256[:16]})")
    out.success(f"peers ready in {peers.cache_root()} ({time.monotonic() - started:.0f}s)")


@app.command("peers")
def list_peers(
    kubernetes_version: KubernetesVersionOption = None,
    output: OutputOption = Format.text,
) -> None:
    """Where each peer is, its version, and whether it is built."""
    found = peers.list_peers(kubernetes_version)
    out = Output()
    if output.structured:
        out.structured(output, {"cache": str(peers.cache_root()), "peers": [{
            "name": p.name, "version": p.version, "path": str(p.path), "source": p.source,
            "built": p.available,
            "manifest": None if p.manifest is None else {
                "module": p.manifest.module, "module_version": p.manifest.module_version,
                "go_version": p.manifest.go_version, "sha256": p.manifest.sha256,
                "built_at": p.manifest.built_at},
        } for p in found]})
        return
    out.table(["peer", "version", "status", "path"], [
        (p.name, p.version, {"env": "override", "cache": "built"}.get(p.source, "missing"),
         str(p.path)) for p in found])


@app.command()
def up(
    directory: DirOption = Path(),
    kubernetes_version: KubernetesVersionOption = None,
    mode: Annotated[Mode | None, typer.Option(
        "--mode", help="API-server mode (default: the config's apiServer.mode).")] = None,
    storage: Annotated[Storage, typer.Option(
        "--storage", help="Dex's storage: the rendered one (kubernetes, through the "
        "rendered ServiceAccount and RBAC), or memory.")] = Storage.rendered,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the API server.")]
        = 120.0,
    node: Annotated[bool, typer.Option(
        "--node", help="Add a real node (containerd, kubelet, kube-proxy, controller-manager, "
        "scheduler; needs root): Dex then runs from 'dexkit deploy'.")] = False,
) -> None:
    """Start etcd, kube-apiserver (configured only by dexkit's rendered OIDC flags or
    AuthenticationConfiguration) and Dex (the rendered config) on 127.0.0.1; ready once the API
    server accepts a Dex token. With --node, a real node instead of Dex as a process."""
    # The use case (~130 ms, ~70 modules) only for this command, not for every
    # 'dexkit sandbox ... --help'.
    from dexkit.sandbox import up as use_case  # noqa: PLC0415

    out = Output()
    config = project_config(out, directory)
    request = use_case.UpRequest(
        project=directory, config=config, kubernetes_version=kubernetes_version,
        mode=mode.value if mode else None, timeout=timeout, storage=storage.value,
        environ=dict(os.environ))
    running = (use_case.node if node else use_case.control_plane)(request, out)
    out.fields(running.fields, title=running.title)
    out.next_step(running.next_step)


@app.command()
def status(directory: DirOption = Path(), output: OutputOption = Format.text) -> None:
    """Which peers of the sandbox run, on which endpoints, and where their logs are."""
    target = controlplane.sandbox_dir(directory.resolve())
    state, report = controlplane.sandbox_status(target)
    out = Output()
    if output.structured:
        out.structured(output, {
            "dir": str(target), "running": any(p.running for p in report),
            "kubernetes_version": state.kubernetes_version if state else None,
            "kubeconfig": state.kubeconfig if state else None,
            "peers": [{"name": p.name, "pid": p.pid, "running": p.running,
                       "endpoint": p.endpoint, "log": p.log} for p in report]})
        return
    if state is None:
        out.info(f"no sandbox in {target}")
        return
    out.table(["peer", "pid", "state", "endpoint", "log"], [
        (p.name, str(p.pid), "running" if p.running else "STOPPED", p.endpoint, p.log)
        for p in report])
    if report and not all(p.running for p in report):
        out.warn("a peer is not running", f"read its log, then 'dexkit sandbox down --dir "
                 f"{directory}' to stop the rest")


@app.command()
def restart(
    peer: Annotated[str, typer.Argument(help="etcd or kube-apiserver.", show_default=False)],
    directory: DirOption = Path(),
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait until it serves.")]
        = 120.0,
) -> None:
    """Stop one peer of the running sandbox and start it again with the same arguments,
    ports and data (as an upgrade or a crash would): ready once the API server serves again."""
    # The use case (~1.3 ms: its peers are loaded already) only for this command, not for
    # every 'dexkit sandbox ... --help'.
    from dexkit.sandbox.restart import restart_peer  # noqa: PLC0415

    done = restart_peer(controlplane.sandbox_dir(directory.resolve()), peer, timeout=timeout)
    Output().success(f"{done.name} restarted (pid {done.process.pid}) and serving in "
                     f"{done.seconds:.1f}s")


@app.command()
def down(directory: DirOption = Path()) -> None:
    """Stop every peer of the sandbox (even after one crashed) and forget its state."""
    # The node's use case (~50 ms, ~50 modules) only for this command, not for every
    # 'dexkit sandbox ... --help'.
    from dexkit.sandbox import node  # noqa: PLC0415

    target = controlplane.sandbox_dir(directory.resolve())
    stopped = node.down(target)  # the level-1 peers, and a node's bridge, chains and cgroups
    out = Output()
    for name in stopped:
        out.step("stopped", name)
    out.success("sandbox stopped" if stopped else f"nothing was running in {target}")


@app.command("exec", context_settings={"allow_extra_args": True,
                                       "ignore_unknown_options": True})
def exec_(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after "
                                                 "'--'.", show_default=False)],
    directory: DirOption = Path(),
) -> None:
    """Run a command in the node sandbox's mount namespace, where its /etc/hosts maps the
    issuer's host to the NodePort on 127.0.0.1 (e.g. -- dexkit verify --grant password)."""
    # The node's use case (~50 ms, ~50 modules) only for this command, not for every
    # 'dexkit sandbox ... --help'.
    from dexkit.sandbox import node  # noqa: PLC0415

    target = controlplane.sandbox_dir(directory.resolve())
    node.exec_command(node.exec_argv(target, command, Path.cwd()), dict(os.environ))
