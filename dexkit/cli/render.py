"""``dexkit render``: every artefact into a directory, the Kubernetes objects on stdout, or one
of the other shapes (Helm values for the official chart, EKS's identity provider config)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from dexkit import files, layout
from dexkit.artefacts import read_render_inputs, write_bundle
from dexkit.cli.options import DirOption, project_config
from dexkit.config import Config
from dexkit.console import Output
from dexkit.errors import UsageError
from dexkit.render.bundle import KIND_CONFIG, kubernetes_stream, render_bundle
from dexkit.render.dex import tls_secret_name
from dexkit.render.eks import render_aws_cli_input, render_eksctl
from dexkit.render.helm import render_helm_values


class RenderFormat(StrEnum):
    bundle = "bundle"
    helm_values = "helm-values"
    eks = "eks"
    eksctl = "eksctl"


OutOption = Annotated[
    str | None,
    typer.Option("--out", metavar="OUTDIR|FILE|-",
                 help="bundle: the directory to write into (default: DIR/out), or '-' for the "
                      "Kubernetes objects as one YAML stream on stdout (for 'kubectl apply -f "
                      "-'). Other formats: a file to write (default: stdout)."),
]
FormatOption = Annotated[
    RenderFormat,
    typer.Option("--format",
                 help="bundle: every artefact. helm-values: values for the official Dex chart. "
                      "eks: input for 'aws eks associate-identity-provider-config "
                      "--cli-input-json'. eksctl: a ClusterConfig with identityProviders."),
]


def render(directory: DirOption = Path(), out: OutOption = None,
           format_: FormatOption = RenderFormat.bundle) -> None:
    """Render Dex's manifests, the API-server flags and config, and a kind config.

    The same dexkit.yaml gives the same bytes; files whose content did not change are left
    alone, and files an earlier render wrote that are no longer wanted are removed.
    """
    output = Output()
    config = project_config(output, directory)
    if format_ is not RenderFormat.bundle:
        _render_other(config, format_, out, output)
        return
    out_dir = layout.out_dir(directory) if out is None else Path(out)
    inputs = read_render_inputs(directory, config)
    bundle = render_bundle(config, ca_pem=inputs.ca_pem, project_dir=str(directory.resolve()),
                           out_dir=str(out_dir.resolve()),
                           connector_ca_pems=inputs.connector_ca_pems)
    if out == "-":
        output.data(kubernetes_stream(bundle))
        return
    for written in write_bundle(bundle, out_dir):
        if written.backup is not None:
            output.step("backed up", f"{written.backup} (not written by dexkit)")
        output.step(written.action, str(written.path))
    if inputs.ca_pem is None:
        output.warn(f"{config.tls.dir}/ca.pem does not exist yet; the kind config mounts it",
                    f"run 'dexkit init --dir {directory}'")
    output.next_step(f"'dexkit deploy' (secrets included), or kubectl apply -f "
                     f"{out_dir / 'dex.yaml'} after creating the {tls_secret_name(config)} "
                     f"secret; for CI, 'kind create cluster --config {out_dir / KIND_CONFIG}'")


def _render_other(config: Config, format_: RenderFormat, out: str | None,
                  output: Output) -> None:
    if format_ is RenderFormat.helm_values:
        values = render_helm_values(config)
        text, warnings = values.text(), values.warnings
        after = ("helm upgrade --install dex <the dex chart> --namespace "
                 f"{config.namespace} -f {out or 'values.yaml'}")
    else:
        if format_ is RenderFormat.eks:
            rendered = render_aws_cli_input(config)
            text = rendered.json()
            after = ("aws eks associate-identity-provider-config --cli-input-json "
                     f"file://{out or 'eks.json'}")
        else:
            rendered = render_eksctl(config)
            text = rendered.yaml()
            after = f"eksctl associate identityprovider -f {out or 'cluster.yaml'}"
        warnings = rendered.warnings
    for warning in warnings:
        output.warn(warning)
    if out is None or out == "-":
        output.data(text)
    else:
        target = Path(out)
        if target.is_dir():
            raise UsageError(f"{target} is a directory",
                             f"--format {format_} writes one file: name it, e.g. {target}/x")
        _write_one(target, text, output)
    output.next_step(after)


def _write_one(target: Path, text: str, output: Output) -> None:
    """Write ``text`` to the user's ``target``: left alone when it already says that, else
    after a backup (dexkit keeps no record of a single file, so it cannot tell its own earlier
    output from a file someone wrote; a backup loses nothing either way)."""
    try:  # only a regular file is read (a FIFO would block)
        same = target.is_file() and target.read_text() == text
    except (OSError, UnicodeDecodeError):
        same = False  # unreadable or binary: replaced after its backup
    if same:
        output.step("unchanged", str(target))
        return
    tx = files.Transaction()
    stem = tx.edit(target, text)
    applied = tx.apply()
    if stem is not None:
        output.step("backed up", str(applied.backup(stem)))
    output.step("wrote", str(target))
