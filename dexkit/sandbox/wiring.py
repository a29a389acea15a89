"""The sandbox's API server configured by dexkit's own rendered output, never by hand.

The only change from what ``dexkit render`` gives a real cluster is where files live: on a
kubeadm node the CA sits at ``apiServer.caFile`` (``/etc/ssl/certs/openid-ca.pem``); in the
sandbox the "node" is this machine, so the same config is rendered with those two paths moved
into the sandbox's ``files/`` directory.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from dexkit.config import Config
from dexkit.errors import TLSError
from dexkit.files import read_text
from dexkit.layout import tls_paths
from dexkit.render.apiserver import apiserver_flags, render_authentication_config

CA_FILE = "openid-ca.pem"
AUTHN_FILE = "authentication-config.yaml"
Mode = Literal["flags", "authentication-config"]


@dataclass(frozen=True)
class APIServerWiring:
    """Extra kube-apiserver arguments and the files they name (relative to ``files/``)."""

    args: tuple[str, ...]
    files: dict[str, str]
    config: Config  # the config as rendered for the sandbox (paths moved, mode chosen)


def sandbox_config(config: Config, files_dir: Path, mode: Mode | None = None) -> Config:
    api = msgspec.structs.replace(
        config.api_server, mode=mode or config.api_server.mode,
        ca_file=str(files_dir / CA_FILE),
        authentication_config_file=str(files_dir / AUTHN_FILE))
    return msgspec.structs.replace(config, api_server=api)


def apiserver_wiring(config: Config, project_dir: Path, files_dir: Path,
                     mode: Mode | None = None) -> APIServerWiring:
    """The API-server side of ``config``, rendered by dexkit, for a sandbox under ``files_dir``."""
    ca_path = tls_paths(project_dir, config).ca
    try:
        ca_pem = read_text(ca_path, what="a PEM certificate")
    except FileNotFoundError:
        raise TLSError(f"missing {ca_path}", "run 'dexkit init' first") from None
    local = sandbox_config(config, files_dir, mode)
    files = {CA_FILE: ca_pem}
    if local.api_server.mode == "authentication-config":
        files[AUTHN_FILE] = render_authentication_config(local, ca_pem)
    return APIServerWiring(tuple(str(f) for f in apiserver_flags(local)), files, local)


def issuer_is_local(config: Config) -> bool:
    """Whether the issuer can be served from this machine (the sandbox runs Dex here)."""
    host = config.issuer_host
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
