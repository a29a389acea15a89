"""Every artefact of a project, as an ordered ``{relative path: text}`` mapping.

Rules:

- One file per Kubernetes object (``dex/NN-<kind>.yaml``, ``rbac/NN-<subject>.yaml``), numbered
  in apply order, plus the guide's all-in-one ``dex.yaml``.
- The API-server side for the configured mode: ``apiserver/flags.txt`` always (in
  authentication-config mode it holds the one ``--authentication-config`` flag),
  ``apiserver/authentication-config.yaml`` in that mode only, and the volume snippet.
- The kind cluster config and, for a host-name issuer, ``kind/hosts.sh`` and the kubeadm
  patch of the API server's Pod (``kind/kubeadm-patches/``).
- With several clusters (``clusters:``), the API-server side and the kind config once per
  cluster, under ``apiserver/<cluster>/`` and ``kind/<cluster>/``, each from the config as that
  cluster's API server sees it (:meth:`dexkit.config.Config.for_cluster`); Dex's side once.
- Deterministic: the same config and inputs give the same bytes (no timestamps; the only
  ordering is apply order or the config's own order).
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from dexkit.errors import TLSError
from dexkit.layout import CA_FILE
from dexkit.render.apiserver import (
    render_authentication_config,
    render_flags_file,
    render_volume_snippet,
)
from dexkit.render.dex import render_all_in_one, render_manifests
from dexkit.render.kind import (
    APISERVER_PATCH,
    render_apiserver_patch,
    render_hosts_script,
    render_kind_config,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dexkit.config import Config

ALL_IN_ONE = "dex.yaml"
FLAGS_FILE = "apiserver/flags.txt"
AUTHN_FILE = "apiserver/authentication-config.yaml"
VOLUMES_FILE = "apiserver/volumes.yaml"
KIND_CONFIG = "kind/cluster.yaml"
KIND_HOSTS = "kind/hosts.sh"
KIND_PATCHES = "kind/kubeadm-patches"


def ca_host_path(config: Config, project_dir: str) -> str:
    """Where the project's CA is on this machine (``tls.dir`` may be absolute)."""
    return posixpath.join(project_dir, config.tls.dir, CA_FILE)


def render_bundle(config: Config, *, ca_pem: str | None, project_dir: str, out_dir: str,
                  connector_ca_pems: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every artefact, in a stable order.

    ``ca_pem`` is the text of the project's ``ssl/ca.pem`` (needed in authentication-config
    mode, where it is inlined); ``project_dir`` and ``out_dir`` are absolute paths on the
    machine that runs kind, used only for its ``extraMounts``; ``connector_ca_pems`` holds the
    PEM text of connector CAs given as project-relative files, by connector id.
    """
    manifests = render_manifests(config, connector_ca_pems)
    files = {m.path: m.text for m in manifests}
    files[ALL_IN_ONE] = render_all_in_one(manifests)
    for name, seen in config.cluster_configs():
        files.update(_apiserver_side(seen, name, ca_pem=ca_pem, project_dir=project_dir,
                                     out_dir=out_dir))
    hosts = render_hosts_script(config)
    if hosts is not None:
        files[KIND_HOSTS] = hosts
    return files


def cluster_path(path: str, cluster: str | None) -> str:
    """``apiserver/flags.txt`` -> ``apiserver/<cluster>/flags.txt`` for one of several."""
    if cluster is None:
        return path
    head, tail = posixpath.split(path)
    return posixpath.join(head, cluster, tail)


def _apiserver_side(config: Config, cluster: str | None, *, ca_pem: str | None,
                    project_dir: str, out_dir: str) -> dict[str, str]:
    files = {cluster_path(FLAGS_FILE, cluster): render_flags_file(config)}
    authn = cluster_path(AUTHN_FILE, cluster)
    if config.api_server.mode == "authentication-config":
        if ca_pem is None:
            raise TLSError("the AuthenticationConfiguration inlines the CA, and there is none",
                           "run 'dexkit init' to create ssl/ca.pem")
        files[authn] = render_authentication_config(config, ca_pem)
    files[cluster_path(VOLUMES_FILE, cluster)] = render_volume_snippet(config)
    patches = cluster_path(KIND_PATCHES, cluster)
    files[cluster_path(KIND_CONFIG, cluster)] = render_kind_config(
        config, ca_host_path=ca_host_path(config, project_dir),
        authn_host_path=posixpath.join(out_dir, authn),
        patches_host_path=posixpath.join(out_dir, patches))
    apiserver_patch = render_apiserver_patch(config)
    if apiserver_patch is not None:
        files[f"{patches}/{APISERVER_PATCH}"] = apiserver_patch
    return files


def kubernetes_stream(files: Mapping[str, str]) -> str:
    """The Kubernetes objects of a bundle as one multi-document stream (``kubectl apply -f -``)."""
    return files[ALL_IN_ONE]
