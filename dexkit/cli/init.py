"""``dexkit init``: dexkit.yaml and the TLS assets, idempotently."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dexkit.cli.options import DirOption
from dexkit.config import KEY_TYPES
from dexkit.console import Output
from dexkit.errors import UsageError
from dexkit.project import CONNECTOR_CHOICES, InitRequest, init_project
from dexkit.scenarios import get_scenario


def init(
    directory: DirOption = Path(),
    issuer: Annotated[str | None, typer.Option(
        help="Issuer URL (https). Default: https://dex.example.com:32000.")] = None,
    host: Annotated[list[str] | None, typer.Option(
        "--host", help="Extra DNS name for the serving certificate (repeatable).")] = None,
    ip: Annotated[list[str] | None, typer.Option(
        "--ip", help="Extra IP address for the serving certificate (repeatable).")] = None,
    key_type: Annotated[str | None, typer.Option(
        help=f"Key type: {', '.join(KEY_TYPES)} (default ecdsa-p256).")] = None,
    ca_days: Annotated[int | None, typer.Option(min=1, help="CA validity in days.")] = None,
    cert_days: Annotated[int | None, typer.Option(
        min=1, help="Serving certificate validity in days.")] = None,
    connector: Annotated[str | None, typer.Option(
        help=f"Identity connector: {'|'.join(CONNECTOR_CHOICES)} (default github).")] = None,
    scenario: Annotated[str | None, typer.Option(
        help="Start a new project from a ready setup ('dexkit scenarios' lists them); "
             "--issuer, --host and --ip still apply.")] = None,
    force: Annotated[bool, typer.Option(
        help="Replace an existing CA (the old files are moved to a backup first).")] = False,
) -> None:
    """Write a commented dexkit.yaml and the TLS assets (CA and Dex serving certificate).

    Safe to run again: the CA and keys are kept byte for byte, the serving certificate is
    re-issued only when its hosts changed or it expires within 30 days.
    """
    if key_type is not None and key_type not in KEY_TYPES:
        raise UsageError(f"unknown key type '{key_type}'", f"use one of {', '.join(KEY_TYPES)}")
    if connector is not None and connector not in CONNECTOR_CHOICES:
        raise UsageError(f"unknown connector '{connector}'",
                         f"use one of {', '.join(CONNECTOR_CHOICES)}")
    chosen = None
    if scenario is not None:
        chosen = get_scenario(scenario)
    result = init_project(InitRequest(
        directory=directory, issuer=issuer, hosts=tuple(host or ()), ips=tuple(ip or ()),
        key_type=key_type, ca_days=ca_days, cert_days=cert_days, connector=connector,
        force=force, scenario=scenario,
    ))
    out = Output()
    out.step(result.config_action, str(result.config_path))
    if chosen is not None:
        out.step("scenario", f"{chosen.name}: {chosen.summary}")
    if result.config_backup:
        out.step("backed up", f"previous config to {result.config_backup.name}")
    for change in result.tls_changes:
        out.step(change.verb, f"{change.path}" + (f" ({change.reason})" if change.reason else ""))
    for path in result.password_files:
        out.step("password", f"{path} (mode 0600; used by 'dexkit verify --grant password')")
    if any(c.verb == "backed up" and "CA" in c.reason for c in result.tls_changes):
        out.warn("the CA was replaced: every API server must get the new ssl/ca.pem",
                 f"copy it to {result.config.api_server.ca_file} on the control-plane nodes")
    for warning in result.warnings:
        out.warn(warning)
    readme = f"read {chosen.readme}, " if chosen is not None else ""
    out.next_step(f"{readme}review {result.config_path.name}, then run 'dexkit render'")
