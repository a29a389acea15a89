"""Values for the official Dex Helm chart that reproduce dexkit's Deployment and Dex config.

For teams that deploy everything with Helm: ``dexkit render --format helm-values`` gives a
values file for ``charts/dex`` (dexidp/helm-charts, written against chart 0.24.0) whose
``config`` is exactly the Dex config dexkit renders, and whose pod is dexkit's pod: image, user,
security contexts, resources, scheduling, env, volumes, probes on the telemetry port.

Rules, and where the chart cannot follow dexkit (each becomes a warning for the user):

- ``config`` is :func:`dexkit.render.dex.render_dex_config` parsed: the chart writes it back
  with ``toYaml``, so comments go, the data stays. The TLS files and connector CAs are mounted
  at dexkit's paths (beside the chart's read-only ``/etc/dex``, never inside it).
- The chart always starts Dex with ``--web-http-addr 0.0.0.0:5556``: a plain-HTTP listener
  that cannot be switched off, and a Service port for it. dexkit turns on the chart's HTTPS
  listener (``--web-https-addr 0.0.0.0:5554``, which overrides the config's ``web.https``)
  and gives the Service's https port dexkit's port and NodePort; the plain one moves aside.
- The chart's Ingress always routes to that plain-HTTP Service port.
- The chart does not create the namespace, cannot turn off the ServiceAccount token, and its
  RBAC is wider than dexkit's (all verbs on dex.coreos.com, list and create on CRDs).
- Secrets the chart does not make (the TLS Secret, credentials, connector CAs) come from
  ``dexkit deploy`` or the rendered ``dex/`` files, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from dexkit.config import Config, KubernetesStorage, to_data
from dexkit.render.dex import (
    DEX_UID,
    TELEMETRY_PORT,
    dexkit_volume_mounts,
    env_vars,
    exposes_telemetry,
    ingress_rules,
    render_dex_config,
    topology_spread,
    volumes,
)

CHART = "dex"
CHART_VERSION = "0.24.0"
# What the chart hard-codes (templates/deployment.yaml and service.yaml of 0.24.0).
CHART_HTTP_PORT = 5556
CHART_HTTPS_PORT = 5554
CHART_CONFIG_DIR = "/etc/dex"


@dataclass(frozen=True)
class HelmValues:
    """The values, and what the chart cannot do as dexkit does (for the user to read)."""

    values: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def text(self) -> str:
        header = (f"# Values for the official Dex Helm chart ({CHART} {CHART_VERSION}), rendered "
                  "by dexkit from dexkit.yaml.\n"
                  "# helm upgrade --install dex dex/dex --namespace "
                  f"{self.values['namespaceOverride']} --version {CHART_VERSION} "
                  "-f values.yaml\n")
        return header + yaml.safe_dump(self.values, sort_keys=False, width=1000)


def image_values(image: str) -> dict[str, str]:
    """``repo:tag`` or ``repo@sha256:...`` as the chart's repository/tag/digest."""
    if "@" in image:
        repository, digest = image.split("@", 1)
        return {"repository": repository, "digest": digest}
    name, sep, tag = image.rpartition(":")
    if sep and "/" not in tag:
        return {"repository": name, "tag": tag}
    return {"repository": image, "tag": "latest"}


def render_helm_values(config: Config) -> HelmValues:
    dex = config.dex
    warnings: list[str] = []
    kubernetes_storage = isinstance(dex.storage, KubernetesStorage)
    # The chart mounts its own config Secret at /etc/dex; dexkit's config volume is not needed.
    pod_volumes = [v for v in volumes(config) if v["name"] != "config"]
    mounts = [m for m in dexkit_volume_mounts(config) if m["name"] != "config"]
    mounts += to_data(dex.volume_mounts)
    values: dict[str, Any] = {
        "fullnameOverride": "dex",
        "namespaceOverride": config.namespace,
        "replicaCount": dex.replicas,
        "commonLabels": dict(dex.common_labels),
        "image": {**image_values(dex.image), "pullPolicy": dex.image_pull_policy},
        "imagePullSecrets": to_data(dex.image_pull_secrets),
        "hostAliases": to_data(dex.host_aliases),
        # Dex serves TLS itself, as in dexkit; see the module docstring for the HTTP listener.
        "https": {"enabled": True},
        "grpc": {"enabled": dex.grpc.enabled},
        "configSecret": {"create": True},
        # The chart grants Dex the right to create its CRDs (rbac.createClusterScoped), and has
        # no place for dexkit's: Dex creates them itself, as it does without crdHandling.
        "config": yaml.safe_load(render_dex_config(config, crds_by_dexkit=False)),
        "volumes": pod_volumes,
        "volumeMounts": mounts,
        "envVars": env_vars(config),
        "envFrom": to_data(dex.env_from),
        "serviceAccount": {"create": True, "name": "dex",
                           "annotations": dict(dex.service_account.annotations)},
        "rbac": {"create": kubernetes_storage, "createClusterScoped": kubernetes_storage},
        "podAnnotations": dict(dex.pod_annotations),
        # dexkit labels its pods with commonLabels too; the chart only with podLabels.
        "podLabels": {**dex.common_labels, **dex.pod_labels},
        "podDisruptionBudget": ({"enabled": True, "maxUnavailable": 1}
                                if dex.max_replicas > 1 else {"enabled": False}),
        "priorityClassName": dex.priority_class_name or "",
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": DEX_UID,
                               "runAsGroup": DEX_UID,
                               "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "revisionHistoryLimit": dex.revision_history_limit,
        "strategy": to_data(dex.strategy) if dex.strategy is not None else {},
        "service": _service(config, warnings),
        "ingress": _ingress(config, warnings),
        "serviceMonitor": _service_monitor(config),
        "resources": to_data(dex.resources),
        "autoscaling": _autoscaling(config),
        "nodeSelector": dict(dex.node_selector),
        "tolerations": to_data(dex.tolerations),
        "affinity": to_data(dex.affinity),
        "topologySpreadConstraints": topology_spread(config),
        "networkPolicy": {"enabled": dex.network_policy.enabled,
                          "egressRules": [dict(r) for r in dex.network_policy.egress_rules]},
    }
    warnings += _limits(config)
    return HelmValues(values, warnings)


def _plain_http_port(config: Config) -> int:
    port = config.dex.service.port
    return CHART_HTTP_PORT if port != CHART_HTTP_PORT else CHART_HTTP_PORT - 1


def _service(config: Config, warnings: list[str]) -> dict[str, Any]:
    service = config.dex.service
    https: dict[str, Any] = {"port": service.port}
    if service.type == "NodePort":
        https["nodePort"] = service.node_port
    http = _plain_http_port(config)
    warnings.append(
        f"the chart always runs Dex's plain-HTTP listener and puts it in the Service (port "
        f"{http}){' with a node port of its own' if service.type != 'ClusterIP' else ''}; the "
        "issuer is served over HTTPS on the https port as dexkit does, but restrict the plain "
        "port (dex.networkPolicy.ingressFrom, or a firewall)")
    return {"type": service.type, "annotations": dict(service.annotations),
            "ports": {"http": {"port": http}, "https": https,
                      "grpc": {"port": config.dex.grpc.port}}}


def _ingress(config: Config, warnings: list[str]) -> dict[str, Any]:
    ingress = config.dex.ingress
    if not ingress.enabled:
        return {"enabled": False, "hosts": [], "tls": []}
    rules, tls = ingress_rules(config)
    if any(r["host"] is None for r in rules):
        warnings.append("the chart's Ingress needs a host name; the issuer's IP address is "
                        "used as the host, which most controllers will not match")
    warnings.append("the chart's Ingress routes to Dex's plain-HTTP port, not to HTTPS as "
                    "dexkit's does: drop annotations that make the controller speak HTTPS to "
                    "the backend (e.g. nginx.ingress.kubernetes.io/backend-protocol)")
    return {"enabled": True, "className": ingress.class_name or "",
            "annotations": dict(ingress.annotations),
            "hosts": [{"host": r["host"] or config.issuer_host, "paths": r["paths"]}
                      for r in rules],
            "tls": tls}


def _service_monitor(config: Config) -> dict[str, Any]:
    monitor = config.dex.service_monitor
    out: dict[str, Any] = {"enabled": monitor.enabled, "namespace": monitor.namespace or "",
                           "labels": dict(monitor.labels),
                           "annotations": dict(monitor.annotations), "path": "/metrics",
                           "scheme": "http"}
    if monitor.interval:
        out["interval"] = monitor.interval
    if monitor.scrape_timeout:
        out["scrapeTimeout"] = monitor.scrape_timeout
    return out


def _autoscaling(config: Config) -> dict[str, Any]:
    auto = config.dex.autoscaling
    out: dict[str, Any] = {"enabled": auto.enabled, "minReplicas": auto.min_replicas,
                           "maxReplicas": auto.max_replicas}
    # The chart's values default CPU to 80; an explicit null switches it off.
    out["targetCPUUtilizationPercentage"] = auto.target_cpu_utilization_percentage
    if auto.target_memory_utilization_percentage is not None:
        out["targetMemoryUtilizationPercentage"] = auto.target_memory_utilization_percentage
    return out


def _limits(config: Config) -> list[str]:
    found = [f"the chart does not create the namespace {config.namespace}: create it first, "
             "with the Pod Security label dexkit renders (dex/00-namespace.yaml)"]
    if not isinstance(config.dex.storage, KubernetesStorage):
        found.append("the chart always mounts the ServiceAccount token (dexkit does not when "
                     "Dex does not use the kubernetes storage)")
    else:
        found.append("the chart's RBAC is wider than dexkit's: every verb on dex.coreos.com "
                     "and list/create on CRDs (dexkit's dex/02-05 grant exactly what Dex's "
                     "storage uses)")
    if config.dex.network_policy.ingress_from:
        found.append("the chart's NetworkPolicy has no ingressFrom: Dex's ports are open to "
                     "every pod")
    found.append(f"the TLS Secret {config.tls_secret_name}, the credential Secrets and "
                 "dex-connector-ca (if any) are not part of the chart: create them with 'dexkit "
                 "deploy' or from the rendered dex/ files")
    if config.dex.service.type != "ClusterIP" and not exposes_telemetry(config):
        found.append(f"the chart always puts the telemetry port {TELEMETRY_PORT} (/metrics, "
                     f"/healthz, plain HTTP) in the {config.dex.service.type} Service")
    return found
