"""kind's ``kind.x-k8s.io/v1alpha4`` Cluster config as a JSON Schema, plus kind's own checks.

Written from kind's Go types (``sigs.k8s.io/kind/pkg/apis/config/v1alpha4/types.go``) and its
validation (``pkg/internal/apis/config/validate.go``), so that a rendered kind config can be
checked without kind:

- kind decodes the file with yaml.v3 ``KnownFields(true)``: an unknown field anywhere is an
  error, hence ``additionalProperties: false`` on every object;
- ports are ``int32``, and ``-1`` is legal ("let the backend pick");
- enums: ``NodeRole`` (control-plane, worker), ``ClusterIPFamily`` (ipv4, ipv6, dual),
  ``ProxyMode`` (iptables, ipvs, nftables, none), ``MountPropagation`` (None, HostToContainer,
  Bidirectional), ``PortMappingProtocol`` (TCP, UDP, SCTP);
- :func:`kind_rule_errors` repeats ``Cluster.Validate``/``Node.Validate``: at least one
  control-plane node, port ranges, and no two port mappings on the same listen address, host
  port and protocol (a wildcard address clashes with any).

Fields are the union of the kind releases read (``gpus`` and ``dnsSearch`` are newer); a field
kind does not know would still be caught, which is the point.
"""

from __future__ import annotations

import ipaddress
from typing import Any

WILDCARD = "0.0.0.0"  # noqa: S104 - kind's default listen address, compared, never bound
_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

_PATCH_JSON6902 = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"group": {"type": "string"}, "version": {"type": "string"},
                   "kind": {"type": "string"}, "patch": {"type": "string"}},
}

_MOUNT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "containerPath": {"type": "string"},
        "hostPath": {"type": "string"},
        "readOnly": {"type": "boolean"},
        "selinuxRelabel": {"type": "boolean"},
        "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
    },
}

_PORT_MAPPING = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "containerPort": _INT32,
        "hostPort": _INT32,
        "listenAddress": {"type": "string"},
        "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
    },
}

_NODE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "role": {"enum": ["control-plane", "worker"]},
        "image": {"type": "string"},
        "labels": _STRING_MAP,
        "extraMounts": {"type": "array", "items": _MOUNT},
        "extraPortMappings": {"type": "array", "items": _PORT_MAPPING},
        "gpus": {"type": "string"},
        "kubeadmConfigPatches": _STRINGS,
        "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_JSON6902},
    },
}

_NETWORKING = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
        "apiServerPort": _INT32,
        "apiServerAddress": {"type": "string"},
        "podSubnet": {"type": "string"},
        "serviceSubnet": {"type": "string"},
        "disableDefaultCNI": {"type": "boolean"},
        "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables", "none"]},
        "dnsSearch": _STRINGS,
    },
}

CLUSTER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "kind.x-k8s.io/v1alpha4 Cluster",
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "apiVersion"],
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string", "pattern": "^[a-z0-9.-]+$"},
        "nodes": {"type": "array", "items": _NODE},
        "networking": _NETWORKING,
        "featureGates": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "runtimeConfig": _STRING_MAP,
        "kubeadmConfigPatches": _STRINGS,
        "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH_JSON6902},
        "containerdConfigPatches": _STRINGS,
        "containerdConfigPatchesJSON6902": _STRINGS,
    },
}


def kind_rule_errors(cluster: dict[str, Any]) -> list[str]:
    """What kind's ``Validate`` would refuse (after its defaulting: one control-plane node)."""
    errors: list[str] = []
    nodes = cluster.get("nodes") or [{"role": "control-plane"}]
    if not any(n.get("role", "control-plane") == "control-plane" for n in nodes):
        errors.append("must have at least one control-plane node")
    for index, node in enumerate(nodes):
        bound: dict[tuple[int, str], set[str]] = {}
        for mapping in node.get("extraPortMappings") or []:
            for key in ("hostPort", "containerPort"):
                port = mapping.get(key, 0)
                if not -1 <= port <= 65535:
                    errors.append(f"node {index}: invalid {key} {port}")
            host_port = mapping.get("hostPort", 0)
            if host_port in (-1, 0):
                continue  # a random port: duplicates allowed
            address = str(ipaddress.ip_address(mapping.get("listenAddress") or WILDCARD))
            address = WILDCARD if address == "::" else address  # Go treats both alike
            seen = bound.setdefault((host_port, mapping.get("protocol", "TCP")), set())
            if address in seen or WILDCARD in seen or (address == WILDCARD and seen):
                errors.append(f"node {index}: port mapping {address}:{host_port} configured twice")
            seen.add(address)
    return errors
