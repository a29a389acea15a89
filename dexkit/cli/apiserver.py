"""``dexkit apiserver flags | config | patch | snippet``: the API server's side of the wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexkit.artefacts import read_ca_pem
from dexkit.authnfile import merge_file
from dexkit.cli.options import DirOption, Format, OutputOption, project_config
from dexkit.config import Config, load_config
from dexkit.console import Output
from dexkit.errors import UsageError
from dexkit.render.apiserver import (
    apiserver_flags,
    identity_notes,
    render_authentication_config,
    render_volume_snippet,
)
from dexkit.staticpod import patch_manifest

app = typer.Typer(help="The API server's side: OIDC flags, AuthenticationConfiguration, "
                       "static-pod patch.", no_args_is_help=True)


@app.command()
def flags(directory: DirOption = Path(), output: OutputOption = Format.text) -> None:
    """Print the kube-apiserver flags for Dex, one per line.

    In apiServer.mode flags these are the --oidc-* flags; in authentication-config mode, the
    one --authentication-config flag (never both: the API server refuses to start).
    """
    out = Output()
    config = project_config(out, directory)
    rendered = [str(flag) for flag in apiserver_flags(config)]
    notes = identity_notes(config)
    if output.structured:
        out.structured(output, {"mode": config.api_server.mode, "flags": rendered,
                                "notes": notes})
        return
    out.data("".join(f"{flag}\n" for flag in rendered))
    for note in notes:
        out.info(f"note: {note}")


MergeOption = Annotated[Path | None, typer.Option(
    "--merge", metavar="FILE",
    help="An existing AuthenticationConfiguration with other issuers: add or update dexkit's "
         "jwt entry in it and leave every other byte as it is (printed, or --write).")]
WriteOption = Annotated[bool, typer.Option(
    "--write", help="With --merge: replace FILE (atomically, after a backup beside it).")]


@app.command("config")
def config_(directory: DirOption = Path(), merge: MergeOption = None,
            write: WriteOption = False) -> None:
    """Print the AuthenticationConfiguration, with the project's CA inlined.

    apiserver.config.k8s.io/v1 for Kubernetes 1.34 and later, v1beta1 for 1.30 to 1.33.
    """
    # Not project_config: dexkit.yaml's warnings are not said here; the file comes with its
    # own warnings only.
    config = load_config(directory).config
    ca_pem = read_ca_pem(directory, config, required=True) or ""
    out = Output()
    if write and merge is None:
        raise UsageError("--write needs --merge FILE", "name the file to merge into")
    if merge is not None:
        _merge(config, ca_pem, merge, write, out)
    else:
        out.data(render_authentication_config(config, ca_pem))
    api = config.api_server
    if api.mode != "authentication-config":
        out.warn("dexkit.yaml has apiServer.mode: flags, so the API server is configured with "
                 "--oidc-* flags and this file is not used",
                 "set apiServer.mode: authentication-config to use it (then re-run "
                 "'dexkit apiserver patch')")
    elif merge is None:
        out.next_step(f"save it as {api.authentication_config_file} on every control-plane "
                      f"node and pass --authentication-config={api.authentication_config_file}")


def _merge(config: Config, ca_pem: str, path: Path, write: bool, out: Output) -> None:
    outcome = merge_file(path, config, ca_pem, write=write)
    result = outcome.result
    for note in result.notes:
        out.warn(note)
    kept = ", ".join(result.other_issuers) or "none"
    if not write:
        out.data(result.text)
        out.info(f"{result.action} dexkit's jwt entry; other issuers kept as they are: {kept}")
        return
    if not outcome.written:
        out.success(f"{path} already has dexkit's jwt entry as rendered; nothing changed")
        return
    if outcome.backup is not None:
        out.step("backed up", str(outcome.backup))
    out.step(result.action, f"dexkit's jwt entry in {path} (other issuers kept: {kept})")


@app.command()
def patch(
    manifest: Annotated[Path, typer.Argument(
        help="The kube-apiserver static-pod manifest, e.g. "
             "/etc/kubernetes/manifests/kube-apiserver.yaml.")],
    directory: DirOption = Path(),
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the unified diff and change nothing.")] = False,
    backup: Annotated[bool, typer.Option(
        "--backup/--no-backup",
        help="Copy the manifest to ../dexkit-backups/ before changing it.")] = True,
) -> None:
    """Add (or replace) the flags and the read-only volume in a static-pod manifest.

    Idempotent: a second run reports "already configured" and changes nothing. The file is
    replaced atomically; flags and volumes that are not dexkit's stay byte for byte.
    """
    out = Output()
    config = project_config(out, directory)
    outcome = patch_manifest(manifest, config, dry_run=dry_run, backup=backup)
    result = outcome.result
    if not result.changed:
        out.success(f"{manifest} is already configured for {config.issuer}; nothing changed")
        return
    if dry_run:
        out.data(result.diff)
        out.info(f"dry run: {len(result.changes)} change(s), nothing written")
        return
    for change in result.changes:
        out.step("patched", change)
    if outcome.backup is not None:
        out.step("backed up", str(outcome.backup))
    out.step("wrote", str(manifest))
    out.next_step(_after_patch(config.api_server.mode, config.api_server.ca_file,
                               config.api_server.authentication_config_file))


def _after_patch(mode: str, ca_file: str, authn_file: str) -> str:
    needed = (f"the CA at {ca_file} (ssl/ca.pem)" if mode == "flags" else
              f"the AuthenticationConfiguration at {authn_file} ('dexkit apiserver config')")
    return f"the kubelet restarts the API server by itself; make sure {needed} is on the node"


@app.command()
def snippet(directory: DirOption = Path()) -> None:
    """Print the volume and volumeMount the API-server pod needs (the guide's snippet)."""
    out = Output()
    out.data(render_volume_snippet(project_config(out, directory)))
