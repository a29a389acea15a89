"""``dexkit render``: every artefact into a directory, or the Kubernetes objects on stdout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexkit.artefacts import read_render_inputs, write_bundle
from dexkit.cli.options import DirOption
from dexkit.config import load_config
from dexkit.console import Output
from dexkit.render.bundle import KIND_CONFIG, kubernetes_stream, render_bundle
from dexkit.render.dex import tls_secret_name

OutOption = Annotated[
    str | None,
    typer.Option("--out", metavar="OUTDIR|-",
                 help="Directory to write into (default: DIR/out), or '-' for the Kubernetes "
                      "objects as one YAML stream on stdout (for 'kubectl apply -f -')."),
]


def render(directory: DirOption = Path(), out: OutOption = None) -> None:
    """Render Dex's manifests, the API-server flags and config, and a kind config.

    The same dexkit.yaml gives the same bytes; files whose content did not change are left
    alone, and files an earlier render wrote that are no longer wanted are removed.
    """
    loaded = load_config(directory)
    config = loaded.config
    out_dir = directory / "out" if out is None else Path(out)
    inputs = read_render_inputs(directory, config)
    bundle = render_bundle(config, ca_pem=inputs.ca_pem, project_dir=str(directory.resolve()),
                           out_dir=str(out_dir.resolve()),
                           connector_ca_pems=inputs.connector_ca_pems)
    output = Output()
    for warning in loaded.warnings:
        output.warn(warning)
    if out == "-":
        output.data(kubernetes_stream(bundle))
        return
    for written in write_bundle(bundle, out_dir):
        output.step(written.action, str(written.path))
    if inputs.ca_pem is None:
        output.warn(f"{config.tls.dir}/ca.pem does not exist yet; the kind config mounts it",
                    f"run 'dexkit init --dir {directory}'")
    output.next_step(f"'dexkit deploy' (secrets included), or kubectl apply -f "
                     f"{out_dir / 'dex.yaml'} after creating the {tls_secret_name(config)} "
                     f"secret; for CI, 'kind create cluster --config {out_dir / KIND_CONFIG}'")
