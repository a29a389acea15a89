"""A kind cluster for CI whose API server trusts the bundled Dex.

What the ``kind.x-k8s.io/v1alpha4`` Cluster carries:

- ``extraMounts``: the CA (flags mode) or the AuthenticationConfiguration (that mode) from the CI
  host into the control-plane node, at the path the API server is told about; for an issuer
  with a host name, also the kubeadm patches directory rendered beside ``cluster.yaml``.
- ``kubeadmConfigPatches``, none of which names an ``apiVersion``: kind applies such a patch to
  the kubeadm configuration of whichever version it uses for the node image (``v1beta3`` up to
  Kubernetes 1.35, ``v1beta4`` from 1.36) and, since kind v0.32 (which brought ``v1beta4``),
  turns a map of ``extraArgs`` into ``v1beta4``'s list itself (``pkg/internal/patch``). So one
  config works on a node image of any minor, and no kind drops the flags silently: kind <= 0.31
  writes ``v1beta3`` for every image (kubeadm 1.36 reads it; 1.37 refuses it, and then the
  cluster is not created at all). A patch naming an ``apiVersion``, as dexkit wrote before, is
  skipped without a word by kind when the node image uses another kubeadm version.

  1. ``ClusterConfiguration``: the API-server flags and a read-only hostPath volume for the file.
  2. ``InitConfiguration`` (host-name issuers): ``patches.directory``, where kubeadm finds
     ``kube-apiserver+strategic.yaml``, which gives the API server's Pod ``hostAliases``.
- ``extraPortMappings``: the issuer port on the CI host to the Dex NodePort on the node.

How the issuer host resolves to the same Dex from both sides:

- From the CI host, the name maps to the port mapping's listen address (127.0.0.1) in the
  host's ``/etc/hosts`` (:func:`render_hosts_script` renders that one entry as a script).
- The API server is a static Pod on the node's host network. A hosts-file edit inside the node
  does not reach it: the kubelet gives each container a copy of the node's ``/etc/hosts`` made
  when it starts, which during ``kind create`` is before any edit. The Pod's ``hostAliases``
  (127.0.0.1, where kube-proxy's iptables mode answers the NodePort) are written into that copy
  by the kubelet itself, whatever the order. This needs the issuer port to equal the NodePort
  (dexkit's default, 32000), as it does in the guide.

Until Dex runs, the API server retries discovery every 10 s; tokens then fail with
"authenticator not initialized". An issuer whose host is an IP address needs no names, but that
address must reach Dex from both sides (127.0.0.1 does, through the mapping and the node's
loopback NodePort).
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
# Where the node mounts kubeadm-patches/ (beside cluster.yaml) and kubeadm reads it.
KUBEADM_PATCHES_DIR = "/etc/dexkit/kubeadm-patches"
APISERVER_PATCH = "kube-apiserver+strategic.yaml"
# Where the Dex NodePort answers inside the node's network namespace (kube-proxy, iptables mode).
NODE_LOOPBACK = "127.0.0.1"


def kubeadm_api_version(minor: int) -> str:
    """The kubeadm API kind (v0.32, v0.33) uses for a node image: v1beta4 from Kubernetes 1.36,
    v1beta3 before. dexkit's patches name none: kind's choice is kind's."""
    return "kubeadm.k8s.io/v1beta4" if minor >= 36 else "kubeadm.k8s.io/v1beta3"


def needs_host_alias(config: Config) -> bool:
    """A host-name issuer: the API server's Pod must be told where that name is."""
    return not is_ip(config.issuer_host)


def listen_address(config: Config) -> str:
    """Where the port mapping listens on the CI host: loopback, unless the issuer is an IP."""
    host = config.issuer_host
    if is_ip(host):
        return host if ipaddress.ip_address(host).is_loopback else "0.0.0.0"  # noqa: S104
    return "127.0.0.1"


def render_kubeadm_patch(config: Config) -> str:
    """The ClusterConfiguration patch that gives the API server its flags and volume."""
    volumes = [{"name": m.name, "hostPath": m.path, "mountPath": m.path, "readOnly": True,
                "pathType": m.type} for m in host_path_mounts(config)]
    return render_template("kind/kubeadm-cluster.yaml.j2", flags=apiserver_flags(config),
                           volumes=volumes)


def render_apiserver_patch(config: Config) -> str | None:
    """kubeadm's strategic-merge patch of the kube-apiserver static Pod (its ``hostAliases``);
    None for an IP issuer, which needs no name."""
    if not needs_host_alias(config):
        return None
    return render_template("kind/kube-apiserver-patch.yaml.j2", host=config.issuer_host,
                           address=NODE_LOOPBACK, node_port=config.dex.service.node_port,
                           issuer_port=config.issuer_port)


def render_kind_config(config: Config, *, ca_host_path: str, authn_host_path: str,
                       patches_host_path: str) -> str:
    """The Cluster config. ``*_host_path`` are absolute paths on the CI host.

    ``ca_host_path`` is the project's ``ssl/ca.pem``; ``authn_host_path`` the rendered
    AuthenticationConfiguration (used in that mode only); ``patches_host_path`` the rendered
    kubeadm patches directory (used for a host-name issuer only).
    """
    api = config.api_server
    if api.mode == "flags":
        mounts = [_extra_mount(ca_host_path, api.ca_file)]
    else:
        mounts = [_extra_mount(authn_host_path, api.authentication_config_file)]
    patches = [render_kubeadm_patch(config).rstrip("\n")]
    if needs_host_alias(config):
        mounts.append(_extra_mount(patches_host_path, KUBEADM_PATCHES_DIR))
        patches.append(render_template("kind/kubeadm-init.yaml.j2",
                                       directory=KUBEADM_PATCHES_DIR).rstrip("\n"))
    return render_template(
        "kind/cluster.yaml.j2", c=config, extra_mounts=mounts,
        port_mappings=_port_mappings(config), kubeadm_patches=patches,
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
    """The CI host's ``/etc/hosts`` entry as a script; None for an IP issuer, which needs none."""
    if is_ip(config.issuer_host):
        return None
    return render_template("kind/hosts.sh.j2", host=config.issuer_host,
                           listen_address=listen_address(config),
                           issuer_port=config.issuer_port)
