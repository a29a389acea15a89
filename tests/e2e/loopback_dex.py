"""A second real Dex on loopback, as an upstream issuer: memory storage, TLS from a throwaway
localhost CA, one static password user, the clients the caller names. The upstream-oidc scenario
logs in through it; the CI-issuer stand-in mints a CI job's ID tokens with it."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dexkit.project import hash_password
from dexkit.sandbox import controlplane
from tests.e2e.tlsfiles import write_localhost_tls


@dataclass
class LoopbackDex:
    issuer: str
    ca_pem: str  # the throwaway CA its serving certificate comes from
    process: Any
    password: str  # the one user's, made for this run


def start_loopback_dex(directory: Path, dex: Path, *, name: str, email: str, username: str,
                       groups: list[str], clients: list[dict[str, Any]],
                       oauth2: dict[str, Any] | None = None,
                       extra: dict[str, Any] | None = None) -> LoopbackDex:
    """Start it; ``name`` names its config (``<name>.yaml``) and log (``<name>.log``)."""
    directory.mkdir(parents=True, exist_ok=True)
    port, telemetry = controlplane.free_ports(2)
    write_localhost_tls(directory)
    password = secrets.token_urlsafe(12)
    issuer = f"https://127.0.0.1:{port}"
    config = {
        "issuer": issuer,
        "storage": {"type": "memory"},
        "web": {"https": f"127.0.0.1:{port}", "tlsCert": str(directory / "cert.pem"),
                "tlsKey": str(directory / "key.pem")},
        "telemetry": {"http": f"127.0.0.1:{telemetry}"},
        "oauth2": {"skipApprovalScreen": True, **(oauth2 or {})},
        "enablePasswordDB": True,
        "staticPasswords": [{"email": email, "hash": hash_password(password),
                             "username": username,
                             "userID": str(uuid.uuid5(uuid.NAMESPACE_URL, email)),
                             "groups": groups}],
        "staticClients": clients,
        **(extra or {}),
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    process = controlplane.start_dex(None, dex, path, telemetry_addr=f"127.0.0.1:{telemetry}",
                                     log_path=directory / f"{name}.log")
    return LoopbackDex(issuer, (directory / "ca.pem").read_text(), process, password)
