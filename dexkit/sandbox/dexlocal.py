"""Dex as a local process of the sandbox, running dexkit's rendered Dex config.

Only what a pod would get from its cluster is swapped, and nothing else:
- ``storage``: the rendered ``kubernetes`` storage reads the cluster through the pod's
  ServiceAccount (``inCluster: true``); a local process gets the same ServiceAccount's token in
  a kubeconfig instead (``kubeConfigFile``, see :mod:`dexkit.sandbox.stack`). ``memory`` is used
  when asked for, and for storage the sandbox does not run (postgres, sqlite3);
- the HTTPS listener binds 127.0.0.1 on the issuer's port and the telemetry listener a free
  port, instead of 0.0.0.0 inside the pod;
- the TLS files, connector CAs and the gRPC API's client CA are the project's files instead
  of the Secret mounts.
Issuer, connectors, static users, clients and the password connector are the rendered data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dexkit.config import Config
from dexkit.layout import tls_paths
from dexkit.render.dex import (
    connector_ca_paths,
    credential_envs,
    dexkit_applies_crds,
    project_connector_cas,
    render_dex_config,
)

MEMORY: dict[str, Any] = {"type": "memory"}


def kubernetes_storage(kubeconfig: Path, config: Config | None = None) -> dict[str, Any]:
    """Dex's kubernetes storage through a kubeconfig file (namespace from its context), with
    the rendered ``crdHandling`` when dexkit applies the CRDs."""
    storage: dict[str, Any] = {"kubeConfigFile": str(kubeconfig)}
    if config is not None and dexkit_applies_crds(config):
        storage["crdHandling"] = "check"
    return {"type": "kubernetes", "config": storage}


def local_dex_config(config: Config, project: Path, *, telemetry_port: int,
                     connector_cas: dict[str, Path] | None = None,
                     storage: dict[str, Any] | None = None,
                     grpc_port: int | None = None) -> str:
    """The rendered Dex config for a local process; ``storage`` defaults to :data:`MEMORY`.

    The gRPC API (dex.grpc), when on, listens on 127.0.0.1 (``grpc_port``, else its port) with
    the project's certificate, and its client CA is the project's CA, as in the pod."""
    data: dict[str, Any] = yaml.safe_load(render_dex_config(config))
    tls = tls_paths(project, config)
    data["storage"] = storage or MEMORY
    data["web"] = {  # what dex.extraConfig adds to web (headers, CORS...) stays
        **(data.get("web") or {}),
        "https": f"127.0.0.1:{config.issuer_port}",
        "tlsCert": str(tls.cert),
        "tlsKey": str(tls.key),
    }
    data["telemetry"] = {"http": f"127.0.0.1:{telemetry_port}"}
    if "grpc" in data:
        data["grpc"].update(addr=f"127.0.0.1:{grpc_port or config.dex.grpc.port}",
                            tlsCert=str(tls.cert), tlsKey=str(tls.key),
                            tlsClientCA=str(tls.ca))
    # A connector CA that ships in the project is read from the project; an absolute one is
    # used as is; the caller may point either elsewhere.
    cas: dict[str, str] = {cid: str(project / rel)
                           for cid, rel in project_connector_cas(config).items()}
    cas.update({cid: str(path) for cid, path in (connector_cas or {}).items()})
    in_pod = connector_ca_paths(config)
    for connector in data.get("connectors") or []:
        cid = connector["id"]
        if cid not in in_pod:
            continue
        settings = connector["config"]
        local = cas.get(cid, in_pod[cid])
        if "rootCA" in settings:
            settings["rootCA"] = local
        if "rootCAs" in settings:
            settings["rootCAs"] = [local]
    return yaml.safe_dump(data, sort_keys=False)


def missing_credentials(config: Config, environ: dict[str, str]) -> list[str]:
    """The variables the rendered config reads credentials from that ``environ`` lacks."""
    return [e.env for e in credential_envs(config).all() if e.env not in environ]
