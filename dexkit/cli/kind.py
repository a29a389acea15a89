"""``dexkit kind config``: a kind cluster for CI whose API server trusts the bundled Dex."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexkit import layout
from dexkit.cli.options import DirOption, project_config
from dexkit.console import Output
from dexkit.render.bundle import AUTHN_FILE, KIND_HOSTS, KIND_PATCHES, ca_host_path
from dexkit.render.kind import render_hosts_script, render_kind_config

app = typer.Typer(help="kind clusters for CI, wired to Dex.", no_args_is_help=True)


@app.callback()
def _kind() -> None:
    """kind clusters for CI, wired to Dex."""


@app.command("config")
def config_(
    directory: DirOption = Path(),
    out: Annotated[Path | None, typer.Option(
        "--out", help="Where 'dexkit render' writes (default: DIR/out); the authentication "
                      "config is mounted from there.")] = None,
) -> None:
    """Print a kind.x-k8s.io/v1alpha4 Cluster for the configured Kubernetes version.

    The CA (or the AuthenticationConfiguration) is mounted into the node, kubeadm patches set
    the API-server flags (and, for a host-name issuer, give its Pod the name), and the issuer
    port is mapped to the Dex NodePort. See docs/kind.md for how the issuer host resolves to Dex
    from the CI host and from the node.
    """
    output = Output()
    config = project_config(output, directory)
    out_dir = (layout.out_dir(directory) if out is None else out).resolve()
    output.data(render_kind_config(
        config, ca_host_path=ca_host_path(config, str(directory.resolve())),
        authn_host_path=str(out_dir / AUTHN_FILE),
        patches_host_path=str(out_dir / KIND_PATCHES)))
    if config.api_server.mode == "authentication-config":
        output.info(f"the node mounts {out_dir / AUTHN_FILE}: run 'dexkit render' first")
    if render_hosts_script(config) is not None:
        output.info(f"the node mounts {out_dir / KIND_PATCHES}: run 'dexkit render' first")
        output.next_step(f"run {out_dir / KIND_HOSTS} (written by 'dexkit render') so that "
                         "the issuer host resolves on this machine")
