"""A kind cluster for CI whose API server trusts the bundled Dex.

What the ``kind.x-k8s.io/v1alpha4`` Cluster carries:

- ``extraMounts``: the CA (flags mode) or the AuthenticationConfiguration (that mode) from the CI
  host into the control-plane node, at the path the API server is told about.
- ``kubeadmConfigPatches``: the API-server flags and a read-only hostPath volume for that file,
  in kubeadm ``v1beta3`` (``extraArgs`` a map) for Kubernetes <= 1.35 and ``v1beta4``
  (``extraArgs`` a list of ``name``/``value``) from 1.36, the versions kind itself uses.
- ``extraPortMappings``: the issuer port on the CI host to the Dex NodePort on the node.

How the issuer host resolves to the same Dex from both sides (kubelogin's CI does the same):

- From the CI host, the name maps to the port mapping's listen address (127.0.0.1) in the
  host's ``/etc/hosts``, and the mapping forwards the issuer port to the NodePort.
- The API server runs in the node's network namespace; the name maps to the node's own address
  in the node's ``/etc/hosts``, where the NodePort answers. This needs the issuer port to equal
  the NodePort (dexkit's default, 32000), as it does in the guide.

kind cannot edit ``/etc/hosts`` itself, so :func:`render_hosts_script` renders the two entries as
a small idempotent script to run after ``kind create cluster``. Until it has run, the API server
keeps retrying discovery every 10 s; tokens then fail with "authenticator not initialized".
An issuer whose host is an IP address needs no names, but that address must reach Dex from
both sides (127.0.0.1 does, through the mapping and the node's loopback NodePort).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from dexkit.config import is_ip
from dexkit.render import render_template
from dexkit.render.apiserver import apiserver_flags, host_path_mounts

if TYPE_CHECKING:
    from dexkit.config import Config

KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"


def kubeadm_api_version(minor: int) -> str:
    """kind (v0.32) configures kubeadm with v1beta4 from Kubernetes 1.36, v1beta3 before."""
    return "kubeadm.k8s.io/v1beta4" if minor >= 36 else "kubeadm.k8s.io/v1beta3"


def listen_address(config: Config) -> str:
    """Where the port mapping listens on the CI host: loopback, unless the issuer is an IP."""
    host = config.issuer_host
    if is_ip(host):
        return host if ipaddress.ip_address(host).is_loopback else "0.0.0.0"  # noqa: S104
    return "127.0.0.1"


def render_kubeadm_patch(config: Config) -> str:
    """The ClusterConfiguration patch that gives the API server its flags and volume."""
    version = kubeadm_api_version(config.minor).rsplit("/", 1)[1]
    volumes = [{"name": m.name, "hostPath": m.path, "mountPath": m.path, "readOnly": True,
                "pathType": m.type} for m in host_path_mounts(config)]
    return render_template(f"kind/kubeadm-{version}.yaml.j2", flags=apiserver_flags(config),
                           volumes=volumes)


def render_kind_config(config: Config, *, ca_host_path: str, authn_host_path: str) -> str:
    """The Cluster config. ``*_host_path`` are absolute paths on the CI host.

    ``ca_host_path`` is the project's ``ssl/ca.pem``; ``authn_host_path`` the rendered
    AuthenticationConfiguration (used in that mode only).
    """
    api = config.api_server
    if api.mode == "flags":
        mounts = [_extra_mount(ca_host_path, api.ca_file)]
    else:
        mounts = [_extra_mount(authn_host_path, api.authentication_config_file)]
    return render_template(
        "kind/cluster.yaml.j2", c=config, extra_mounts=mounts,
        port_mappings=_port_mappings(config),
        kubeadm_patch=render_kubeadm_patch(config).rstrip("\n"),
        kubeadm_api_version=kubeadm_api_version(config.minor),
        listen_address=listen_address(config), host_is_ip=is_ip(config.issuer_host))


def _extra_mount(host_path: str, node_path: str) -> dict[str, Any]:
    return {"hostPath": host_path, "containerPath": node_path, "readOnly": True}


def _port_mappings(config: Config) -> list[dict[str, Any]]:
    service = config.dex.service
    if service.type != "NodePort":
        return []
    return [{"containerPort": service.node_port, "hostPort": config.issuer_port,
             "listenAddress": listen_address(config), "protocol": "TCP"}]


def render_hosts_script(config: Config) -> str | None:
    """The two ``/etc/hosts`` entries as a script; None for an IP issuer, which needs none."""
    if is_ip(config.issuer_host):
        return None
    return render_template("kind/hosts.sh.j2", host=config.issuer_host,
                           listen_address=listen_address(config),
                           node_port=config.dex.service.node_port,
                           issuer_port=config.issuer_port)
