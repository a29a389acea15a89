"""Dex's own config.yaml, with ``dex.extraConfig`` merged in.
"""

from __future__ import annotations

import copy
import hashlib
from typing import TYPE_CHECKING, Any

import yaml

from dexkit.config import (
    Config,
)
from dexkit.errors import ConfigError
from dexkit.render import render_template, to_yaml
from dexkit.render.dex.values import (
    TLS_DIR,
    _context,
    connector_ca_paths,
    credential_envs,
    dex_clients,
    dex_type,
    dexkit_applies_crds,
    exchange_connector_grants,
    grant_types,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


# --- Dex's own configuration ----------------------------------------------------------------------


def render_dex_config(config: Config, *, crds_by_dexkit: bool = True) -> str:
    """Dex's config.yaml: issuer exactly as configured, storage, listeners, connectors, clients,
    then dex.extraConfig merged in (see :func:`merge_extra_config`). ``crds_by_dexkit=False``
    leaves Dex to create its CRDs (the Helm chart grants it that right)."""
    _check_storage_fits_replicas(config)
    envs = credential_envs(config)
    text = render_template("dex/config.yaml.j2", **_context(
        config,
        storage_type=dex_type(config.dex.storage),
        crd_handling="check" if crds_by_dexkit and dexkit_applies_crds(config) else None,
        connectors=[(dex_type(conn), conn) for conn in config.connectors],
        connector_env=envs.connectors,
        storage_env=envs.storage,
        connector_ca=connector_ca_paths(config),
        clients=dex_clients(config, envs),
        grpc=grpc_config(config),
        grant_types=grant_types(config),
        exchange_grants=exchange_connector_grants(config),
    ))
    if not config.dex.extra_config:
        return text
    header = "".join(line for line in text.splitlines(keepends=True)[:3] if line.startswith("#"))
    merged = merge_extra_config(yaml.safe_load(text), config.dex.extra_config)
    return (header + "# dex.extraConfig is merged in (comments of the rendered parts dropped).\n"
            + to_yaml(merged) + "\n")


def merge_extra_config(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key, ``connectors`` and ``staticClients`` are appended, anything
    else from ``extra`` replaces what is there. What dexkit owns was refused when the config was
    validated (dexkit.config.check_extra_config), so nothing here overrides it."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if key in ("connectors", "staticClients"):
            out[key] = [*(out.get(key) or []), *copy.deepcopy(value)]
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_extra_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def grpc_config(config: Config) -> dict[str, Any] | None:
    """Dex's gRPC API behind mutual TLS: the serving certificate, clients from the project CA."""
    grpc = config.dex.grpc
    if not grpc.enabled:
        return None
    return {"addr": f"0.0.0.0:{grpc.port}", "tlsCert": f"{TLS_DIR}/tls.crt",
            "tlsKey": f"{TLS_DIR}/tls.key", "tlsClientCA": f"{TLS_DIR}/ca.crt",
            "reflection": grpc.reflection}


def _check_storage_fits_replicas(config: Config) -> None:
    storage = dex_type(config.dex.storage)
    if storage in ("memory", "sqlite3") and config.dex.max_replicas > 1:
        what = ("dex.autoscaling (up to " f"{config.dex.max_replicas} replicas)"
                if config.dex.autoscaling.enabled else f"dex.replicas {config.dex.replicas}")
        raise ConfigError(
            f"dex.storage {storage} keeps state inside one pod, so {what} would give each "
            "replica its own users, keys and sessions",
            "use storage kubernetes (the default) or postgres, or set dex.replicas to 1")


def config_checksum(dex_config: str) -> str:
    """The pod-template annotation that rolls Dex when its config changes."""
    return hashlib.sha256(dex_config.encode()).hexdigest()
