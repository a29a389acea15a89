"""``dexkit certs show | check | rotate``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from dexkit import pki
from dexkit.cli.options import DirOption, Format, OutputOption, project_config
from dexkit.console import Output
from dexkit.errors import TLSError
from dexkit.layout import tls_paths
from dexkit.project import rotate_tls

app = typer.Typer(help="Inspect, check and rotate the TLS assets.", no_args_is_help=True)


@app.command()
def show(directory: DirOption = Path(), output: OutputOption = Format.text) -> None:
    """Subject, SANs, validity, key type, fingerprint, and whether the chain verifies."""
    out = Output()
    config = project_config(out, directory)
    paths = tls_paths(directory, config)
    now = dt.datetime.now(dt.UTC)
    ca, cert = pki.load_cert(paths.ca), pki.load_cert(paths.cert)
    infos = [pki.describe("ca", paths.ca, ca, now), pki.describe("serving", paths.cert, cert, now)]
    chain_error = pki.verify_chain(ca, cert, config.issuer_host, now)
    if output.structured:
        out.structured(output, {
            "certificates": [dataclasses.asdict(i) for i in infos],
            "chain": {"verifies": chain_error is None, "name": config.issuer_host,
                      "error": chain_error}})
        return
    for info in infos:
        out.fields({
            "path": info.path,
            "subject": info.subject,
            "issuer": info.issuer,
            "SANs": ", ".join(info.dns_names + info.ip_addresses) or "-",
            "valid": f"{info.not_before} .. {info.not_after}",
            "days left": str(info.days_left),
            "key type": info.key_type,
            "sha256": info.sha256_fingerprint,
        }, title="CA" if info.role == "ca" else "Serving certificate")
    verdict = "verifies" if chain_error is None else f"does NOT verify: {chain_error}"
    out.fields({"chain": f"{verdict} (for {config.issuer_host})"})


@app.command()
def check(
    directory: DirOption = Path(),
    within: Annotated[int, typer.Option(min=0, max=36500, help="Fail if a certificate "
                                        "expires within this many days.")] = 30,
    output: OutputOption = Format.text,
) -> None:
    """Exit non-zero when the TLS assets are expired, expiring, mismatched or not ours."""
    out = Output()
    config = project_config(out, directory)
    paths = tls_paths(directory, config)
    problems = pki.check_assets(paths, issuer_host=config.issuer_host, within_days=within,
                                now=dt.datetime.now(dt.UTC))
    if output.structured:
        out.structured(output, {"ok": not problems,
                                "problems": [dataclasses.asdict(p) for p in problems]})
        if problems:
            raise typer.Exit(1)
        return
    if not problems:
        out.success(f"TLS assets in {paths.dir} are valid for more than {within} days")
        return
    first = problems[0]
    for problem in problems[1:]:
        out.warn(problem.message, problem.hint)
    raise TLSError(first.message, first.hint)


@app.command()
def rotate(
    directory: DirOption = Path(),
    ca: Annotated[bool, typer.Option("--ca", help="Replace the CA too (the API server must "
                                     "then trust the new ca.pem).")] = False,
) -> None:
    """Re-issue the serving certificate and key under the same CA (or a new CA with --ca)."""
    result = rotate_tls(directory, ca=ca)
    config = result.config
    out = Output()
    for change in result.changes:
        out.step(change.verb, f"{change.path}" + (f" ({change.reason})" if change.reason else ""))
    for warning in result.warnings:
        out.warn(warning)
    if ca:
        api = config.api_server
        # The API server re-reads --authentication-config (its CA inlined) about every minute,
        # but reads --oidc-ca-file only when it starts (proven on a kind node, docs/kind.md).
        how = (f"run 'dexkit render' and copy out/apiserver/authentication-config.yaml to "
               f"{api.authentication_config_file} on every control-plane node: the API server "
               "re-reads it within about a minute, no restart needed"
               if api.mode == "authentication-config" else
               f"copy ssl/ca.pem to {api.ca_file} on every control-plane node and restart the "
               "API server: it reads --oidc-ca-file only when it starts")
        out.warn("the CA was replaced: API servers still trust the OLD CA and will reject Dex "
                 "tokens until they get the new one", f"{how}; then 'dexkit deploy'")
    out.next_step("run 'dexkit deploy' to update the TLS secret and roll Dex")
