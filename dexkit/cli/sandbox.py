"""``dexkit sandbox build | peers | up | status | down``: a real control plane, locally."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.options import DirOption, Format, OutputOption
from dexkit.config import Config
from dexkit.console import Output
from dexkit.sandbox import controlplane, peers

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
) -> None:
    """Build the missing peers from their Go modules with the local Go toolchain (minutes cold)."""
    names = peers.select_peers(only)
    specs = [peers.peer_spec(name, kubernetes_version) for name in names]
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
    if output is Format.json:
        out.json({"cache": str(peers.cache_root()), "peers": [{
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
    mode: Annotated[str | None, typer.Option(
        "--mode", help="API-server mode: flags or authentication-config (default: the "
        "config's apiServer.mode).")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the API server.")]
        = 120.0,
    node: Annotated[bool, typer.Option(
        "--node", help="Add a real node (containerd, kubelet, kube-proxy, controller-manager, "
        "scheduler; needs root): Dex then runs from 'dexkit deploy'.")] = False,
) -> None:
    """Start etcd and kube-apiserver on 127.0.0.1, configured by dexkit's rendered OIDC flags
    or AuthenticationConfiguration, and write an admin kubeconfig."""
    if node:
        from dexkit.cli.sandbox_node import up_node

        up_node(directory, kubernetes_version, mode, timeout)  # type: ignore[arg-type]
        return
    from dexkit.config import load_config
    from dexkit.errors import UsageError
    from dexkit.sandbox import wiring

    if mode not in (None, "flags", "authentication-config"):
        raise UsageError(f"unknown mode '{mode}'", "use flags or authentication-config")
    config = load_config(directory).config
    version = peers.resolve_kubernetes_version(kubernetes_version)
    binaries = controlplane.ControlPlaneBinaries(
        etcd=peers.require_peer("etcd"),
        kube_apiserver=peers.require_peer("kube-apiserver", version))
    target = controlplane.sandbox_dir(directory.resolve())
    wired = wiring.apiserver_wiring(config, directory.resolve(),
                                    controlplane.SandboxLayout(target).files,
                                    mode)  # type: ignore[arg-type]
    out = Output()
    if not wiring.issuer_is_local(config):
        out.warn(f"the issuer host '{config.issuer_host}' is not this machine: the sandbox's "
                 "API server will look for Dex there",
                 "for a self-contained sandbox use 'dexkit init --issuer https://127.0.0.1:32000'")
    out.info(f"starting etcd and kube-apiserver {version} in {target} "
             f"({wired.config.api_server.mode} mode) ...")
    started = time.monotonic()
    plane = controlplane.start_control_plane(target, binaries, controlplane.ControlPlaneOptions(
        extra_args=wired.args, extra_files=wired.files, apiserver_timeout=timeout,
        kubernetes_version=version, die_with_parent=False))
    for name, seconds in plane.timings.items():
        out.step("ready", f"{name} ({seconds:.1f}s)")
    for arg in wired.args:
        out.step("oidc", arg)
    try:
        _start_dex(out, plane, config, directory.resolve())
    except BaseException:
        plane.stop()
        raise
    out.fields({
        "API server": plane.apiserver_url,
        "etcd": plane.etcd_url,
        "kubeconfig": str(plane.kubeconfig),
        "logs": str(plane.layout.logs),
    }, title=f"sandbox ready in {time.monotonic() - started:.1f}s")
    out.next_step(f"KUBECONFIG={plane.kubeconfig} kubectl auth whoami; "
                  f"stop it with 'dexkit sandbox down --dir {directory}'")


def _start_dex(out: Output, plane: controlplane.ControlPlane, config: Config,
               project: Path) -> None:
    """Dex next to the API server, running the rendered config (see sandbox.dexlocal), when
    its peer is built and the issuer is this machine; otherwise say why not."""
    import os

    from dexkit import files
    from dexkit.sandbox import dexlocal, wiring

    dex = peers.locate(peers.peer_spec("dex"))
    if not dex.available:
        out.warn("Dex is not started: its peer is not built "
                 f"({dex.path}); the API server is configured and waits for the issuer",
                 "build it with 'dexkit sandbox build --only dex'")
        return
    if not wiring.issuer_is_local(config):
        out.warn("Dex is not started: the issuer is not on this machine")
        return
    missing = dexlocal.missing_credentials(config, dict(os.environ))
    if missing:
        out.warn(f"Dex is not started: it needs {', '.join(missing)} in the environment",
                 "export them and run 'dexkit sandbox down' and 'up' again")
        return
    (telemetry,) = controlplane.free_ports(1)
    path = plane.layout.files / "dex.yaml"
    files.atomic_write(path, dexlocal.local_dex_config(config, project, telemetry_port=telemetry),
                       files.PRIVATE)
    started = time.monotonic()
    controlplane.start_dex(plane, dex.path, path, telemetry_addr=f"127.0.0.1:{telemetry}",
                           env=dict(os.environ), die_with_parent=False)
    out.step("ready", f"dex at {config.issuer} ({time.monotonic() - started:.1f}s)")


@app.command()
def status(directory: DirOption = Path(), output: OutputOption = Format.text) -> None:
    """Which peers of the sandbox run, on which endpoints, and where their logs are."""
    target = controlplane.sandbox_dir(directory.resolve())
    state, report = controlplane.sandbox_status(target)
    out = Output()
    if output is Format.json:
        out.json({"dir": str(target), "running": any(p.running for p in report),
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
def down(directory: DirOption = Path()) -> None:
    """Stop every peer of the sandbox (even after one crashed) and forget its state."""
    from dexkit.sandbox import node

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
    from dexkit.cli.sandbox_node import exec_in_node

    exec_in_node(directory, command)
