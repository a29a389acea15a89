"""Kubernetes shapes for the Dex pod (the Helm chart's knobs, typed).

The chart passes these through as free YAML; here each is a typed section, in Kubernetes' own
spelling, so a typo is an error with a line number instead of a field the API server drops.
Sections that are whole Kubernetes sub-APIs (affinity terms, volume sources, NetworkPolicy
peers) are checked at their top level only; the API server validates the rest (the render
tests validate each against the OpenAPI schema of every supported minor).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeAlias

import msgspec
from msgspec import Meta

from dexkit.config.values import (
    _DNS_LABEL,
    _DNS_SUBDOMAIN,
    Model,
    Port,
    _checked,
    invalid,
    is_dns_name,
    is_ip,
)

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")
_DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")
# Label keys dexkit relies on (deploy and destroy select its objects by them).
OWNED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/managed-by")


def check_label_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValueError(f"label key '{key}': the prefix must be a DNS subdomain")
    if not _LABEL_NAME.match(name):
        raise ValueError(f"label key '{key}' is not a valid label name (63 letters, digits, "
                         "'-', '_' or '.', starting and ending alphanumeric)")


def check_labels(key: str, labels: dict[str, str], *, owned_ok: bool = False) -> None:
    for name, value in labels.items():
        _checked(key, check_label_key, name)
        if value and not _LABEL_NAME.match(value):
            invalid(key, f"label value '{value}' of '{name}' is not a valid label value")
        if not owned_ok and name in OWNED_LABELS:
            invalid(key, f"label '{name}' is dexkit's own (deploy and destroy select by it)",
                    "choose another label key")


def check_annotations(key: str, annotations: dict[str, str]) -> None:
    for name in annotations:
        _checked(key, check_label_key, name)


def check_quantity(value: str | int | float) -> None:
    if isinstance(value, bool) or not _QUANTITY.match(str(value)):
        raise ValueError(f"'{value}' is not a Kubernetes quantity (e.g. 100m, 64Mi, 1)")


def check_duration(value: str) -> None:
    if not _DURATION.match(value):
        raise ValueError(f"'{value}' is not a duration such as 30s, 1m or 1h30m")


Quantity: TypeAlias = str | int | float


class Resources(Model, frozen=True, omit_defaults=True):
    """Container requests and limits (``resources`` in the chart)."""

    requests: dict[str, Quantity] = msgspec.field(default_factory=dict)
    limits: dict[str, Quantity] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, values in (("requests", self.requests), ("limits", self.limits)):
            for value in values.values():
                try:
                    check_quantity(value)
                except ValueError as exc:
                    invalid(key, str(exc))


def default_resources() -> Resources:
    # Dex idles at ~20 MiB; the limit leaves room for bursts of logins and key rotation.
    return Resources(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"})


class Toleration(Model, frozen=True, omit_defaults=True):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.operator == "Exists" and self.value:
            invalid("value", "a toleration with operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            invalid("operator", "a toleration without a key must use operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            invalid("tolerationSeconds", "tolerationSeconds applies to effect NoExecute only")


class RollingUpdate(Model, frozen=True, omit_defaults=True):
    max_surge: int | str | None = None
    max_unavailable: int | str | None = None


class Strategy(Model, frozen=True, omit_defaults=True):
    """The Deployment's update strategy (``strategy`` in the chart)."""

    type: Literal["RollingUpdate", "Recreate"] | None = None
    rolling_update: RollingUpdate | None = None

    def __post_init__(self) -> None:
        if self.type == "Recreate" and self.rolling_update is not None:
            invalid("rollingUpdate", "rollingUpdate may only be set with type RollingUpdate")


class HostAlias(Model, frozen=True):
    ip: str
    hostnames: list[str]

    def __post_init__(self) -> None:
        if not is_ip(self.ip):
            invalid("ip", f"'{self.ip}' is not an IP address")
        for name in self.hostnames:
            if not is_dns_name(name):
                invalid("hostnames", f"'{name}' is not a valid host name")


class NameRef(Model, frozen=True, omit_defaults=True):
    name: str
    optional: bool | None = None


class LocalObjectReference(Model, frozen=True):
    name: str

    def __post_init__(self) -> None:
        if not _DNS_SUBDOMAIN.match(self.name):
            invalid("name", f"'{self.name}' is not a valid Secret name")


class EnvFromSource(Model, frozen=True, omit_defaults=True):
    prefix: str | None = None
    config_map_ref: NameRef | None = None
    secret_ref: NameRef | None = None

    def __post_init__(self) -> None:
        if (self.config_map_ref is None) == (self.secret_ref is None):
            invalid("secretRef", "an envFrom entry needs exactly one of configMapRef or secretRef")


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class EnvVar(Model, frozen=True, omit_defaults=True):
    """A container environment variable in Kubernetes' shape (``envVars`` in the chart)."""

    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not _ENV_NAME.match(self.name):
            invalid("name", f"'{self.name}' is not a valid environment variable name")
        if self.value is not None and self.value_from is not None:
            invalid("valueFrom", f"{self.name}: value and valueFrom cannot both be set")
        sources = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef",
                   "fileKeyRef")
        if self.value_from is not None and (len(self.value_from) != 1
                                            or next(iter(self.value_from)) not in sources):
            invalid("valueFrom", f"{self.name}: valueFrom needs exactly one of "
                    f"{', '.join(sources)}")


class VolumeMount(Model, frozen=True, omit_defaults=True):
    name: str
    mount_path: str
    read_only: bool | None = None
    sub_path: str | None = None
    sub_path_expr: str | None = None
    mount_propagation: Literal["None", "HostToContainer", "Bidirectional"] | None = None
    recursive_read_only: Literal["Disabled", "IfPossible", "Enabled"] | None = None

    def __post_init__(self) -> None:
        if not self.mount_path.startswith("/"):
            invalid("mountPath", f"mountPath '{self.mount_path}' must be absolute")


class Affinity(Model, frozen=True, omit_defaults=True):
    """The pod's affinity; each term is passed to Kubernetes as written."""

    node_affinity: dict[str, Any] | None = None
    pod_affinity: dict[str, Any] | None = None
    pod_anti_affinity: dict[str, Any] | None = None


class ServiceAccountSettings(Model, frozen=True):
    # e.g. eks.amazonaws.com/role-arn (IRSA) or iam.gke.io/gcp-service-account.
    annotations: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        check_annotations("annotations", self.annotations)


class ServiceMonitorSettings(Model, frozen=True):
    """A prometheus-operator ServiceMonitor for Dex's /metrics (telemetry port)."""

    enabled: bool = False
    # Default: Dex's namespace.
    namespace: str | None = None
    interval: str | None = None
    scrape_timeout: str | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in (("interval", self.interval), ("scrapeTimeout", self.scrape_timeout)):
            if value is not None:
                _checked(key, check_duration, value)
        if self.namespace is not None and not _DNS_LABEL.match(self.namespace):
            invalid("namespace", f"'{self.namespace}' is not a valid namespace")
        check_labels("labels", self.labels, owned_ok=True)
        check_annotations("annotations", self.annotations)


class NetworkPolicySettings(Model, frozen=True):
    """Only Dex's own ports are reachable; egress is restricted when egressRules are given."""

    enabled: bool = False
    # NetworkPolicyPeers allowed to reach Dex's ports; empty: from anywhere.
    ingress_from: list[dict[str, Any]] = msgspec.field(default_factory=list)
    # NetworkPolicyEgressRules, as in the chart; empty: egress is not restricted.
    egress_rules: list[dict[str, Any]] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        peers = ("podSelector", "namespaceSelector", "ipBlock")
        for peer in self.ingress_from:
            if not peer or set(peer) - set(peers):
                invalid("ingressFrom", f"a peer has keys among {', '.join(peers)}; got "
                        f"{sorted(peer)}")
        for rule in self.egress_rules:
            if set(rule) - {"to", "ports"}:
                invalid("egressRules", f"an egress rule has the keys 'to' and 'ports'; got "
                        f"{sorted(rule)}")


class AutoscalingSettings(Model, frozen=True):
    """A HorizontalPodAutoscaler (autoscaling/v2) instead of a fixed replica count."""

    enabled: bool = False
    min_replicas: Annotated[int, Meta(ge=1)] = 1
    max_replicas: Annotated[int, Meta(ge=1)] = 3
    target_cpu_utilization_percentage: Annotated[int, Meta(ge=1)] | None = msgspec.field(
        default=80, name="targetCPUUtilizationPercentage")
    target_memory_utilization_percentage: Annotated[int, Meta(ge=1)] | None = msgspec.field(
        default=None, name="targetMemoryUtilizationPercentage")

    def __post_init__(self) -> None:
        if self.max_replicas < self.min_replicas:
            invalid("maxReplicas", f"maxReplicas {self.max_replicas} is below minReplicas "
                    f"{self.min_replicas}")
        if self.enabled and self.target_cpu_utilization_percentage is None and \
                self.target_memory_utilization_percentage is None:
            invalid("targetCPUUtilizationPercentage", "an autoscaler needs a CPU or memory "
                    "target")


class ServiceSettings(Model, frozen=True):
    type: Literal["NodePort", "ClusterIP", "LoadBalancer"] = "NodePort"
    node_port: int = 32000
    port: Port = 5556
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    # Also expose the plain-HTTP telemetry port 5558 (/metrics, /healthz); on by itself with a
    # ServiceMonitor.
    telemetry: bool = False

    def __post_init__(self) -> None:
        if not 30000 <= self.node_port <= 32767:
            invalid("nodePort", f"nodePort {self.node_port} is outside the API server's default "
                    "NodePort range 30000-32767")
        check_annotations("annotations", self.annotations)


class IngressPath(Model, frozen=True):
    path: str
    path_type: Literal["Prefix", "Exact", "ImplementationSpecific"] = "Prefix"

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            invalid("path", f"ingress path '{self.path}' must start with '/'")


class IngressHost(Model, frozen=True):
    host: str
    # Empty: the issuer's path, as a Prefix.
    paths: list[IngressPath] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not is_dns_name(self.host):
            invalid("host", f"ingress host '{self.host}' is not a DNS name (an Ingress host "
                    "cannot be an IP address)")


class IngressTLS(Model, frozen=True, omit_defaults=True):
    hosts: list[str]
    # Default: dexkit's TLS Secret (the serving certificate); name another, e.g. cert-manager's.
    secret_name: str | None = None

    def __post_init__(self) -> None:
        if self.secret_name is not None and not _DNS_SUBDOMAIN.match(self.secret_name):
            invalid("secretName", f"'{self.secret_name}' is not a valid Secret name")


class IngressSettings(Model, frozen=True):
    enabled: bool = False
    class_name: str | None = None
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    # Empty: one rule for the issuer's host and path, with dexkit's serving certificate.
    hosts: list[IngressHost] = msgspec.field(default_factory=list)
    tls: list[IngressTLS] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        check_annotations("annotations", self.annotations)
        names = [h.host.lower() for h in self.hosts]
        if len(names) != len(set(names)):
            invalid("hosts", f"ingress hosts must be unique, got {names}")
