"""Every Kubernetes object that runs Dex, one function per object, and the whole set.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dexkit.config import (
    RESERVED_VOLUMES,
    Config,
    SQLiteStorage,
    is_ip,
    to_data,
)
from dexkit.errors import ConfigError
from dexkit.render import render_template
from dexkit.render.dex.configfile import config_checksum, render_dex_config
from dexkit.render.dex.values import (
    BUILTIN_NAMESPACES,
    CONFIG_DIR,
    CONFIG_FILE,
    CONFIG_SECRET,
    CONNECTOR_CA_DIR,
    CONNECTOR_CA_SECRET,
    CRD_CLUSTER_ROLE,
    CRD_GROUP,
    DEX_UID,
    HTTPS_PORT,
    SELECTOR,
    STORAGE_VERBS,
    TELEMETRY_PORT,
    TLS_DIR,
    CredentialEnvs,
    Manifest,
    _context,
    _uses_kubernetes_storage,
    crd_resources,
    credential_envs,
    dexkit_applies_crds,
    object_labels,
    project_connector_cas,
    storage_kinds,
    tls_secret_name,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


# --- Kubernetes objects ---------------------------------------------------------------------------


def render_namespace(config: Config) -> str | None:
    if config.namespace in BUILTIN_NAMESPACES:
        return None
    return render_template("dex/namespace.yaml.j2", **_context(config))


def render_service_account(config: Config) -> str:
    return render_template("dex/serviceaccount.yaml.j2", **_context(
        config, automount=_uses_kubernetes_storage(config),
        annotations=dict(sorted(config.dex.service_account.annotations.items()))))


def render_storage_role(config: Config) -> str | None:
    """The namespaced Role for Dex's own objects (storage: kubernetes only)."""
    if not _uses_kubernetes_storage(config):
        return None
    return render_template("dex/role.yaml.j2", **_context(
        config, crd_group=CRD_GROUP, crd_resources=crd_resources(config),
        storage_verbs=STORAGE_VERBS))


def render_storage_role_binding(config: Config) -> str | None:
    if not _uses_kubernetes_storage(config):
        return None
    return render_template("dex/rolebinding.yaml.j2", **_context(config))


def render_crds(config: Config) -> list[tuple[str, str]]:
    """Dex's CRDs as Dex itself would create them (``crds/<plural>.yaml``), when dexkit applies
    them (see :func:`dexkit_applies_crds`)."""
    if not dexkit_applies_crds(config):
        return []
    return [(f"crds/{plural}.yaml", render_template("dex/crd.yaml.j2", **_context(
        config, crd_group=CRD_GROUP, plural=plural, singular=singular, crd_kind=kind)))
        for plural, singular, kind in storage_kinds(config)]


def render_crd_cluster_role(config: Config) -> str | None:
    """The one cluster-wide permission of a Dex that creates its CRDs itself (storage:
    kubernetes on a Dex without crdHandling)."""
    if not _uses_kubernetes_storage(config) or dexkit_applies_crds(config):
        return None
    return render_template("dex/clusterrole.yaml.j2",
                           **_context(config, cluster_role=CRD_CLUSTER_ROLE))


def crd_binding_name(config: Config) -> str:
    # Cluster-scoped, so one per namespace Dex runs in; the ClusterRole itself is shared.
    return f"{CRD_CLUSTER_ROLE}:{config.namespace}"


def render_crd_cluster_role_binding(config: Config) -> str | None:
    if not _uses_kubernetes_storage(config) or dexkit_applies_crds(config):
        return None
    return render_template("dex/clusterrolebinding.yaml.j2", **_context(
        config, cluster_role=CRD_CLUSTER_ROLE, binding_name=crd_binding_name(config)))


def render_config_secret(config: Config, dex_config: str) -> str:
    return render_template("dex/config-secret.yaml.j2", **_context(
        config, name=CONFIG_SECRET, data={posixpath.basename(CONFIG_FILE): dex_config}))


def render_connector_ca_secret(config: Config, pems: Mapping[str, str]) -> str | None:
    """The project's connector CA files, for the connectors whose rootCA is a relative path."""
    wanted = project_connector_cas(config)
    if not wanted:
        return None
    missing = sorted(set(wanted) - set(pems))
    if missing:
        raise ConfigError(
            f"the rootCA of connector '{missing[0]}' ({wanted[missing[0]]}) was not provided",
            "put the PEM file at that path, relative to the project directory")
    data = {f"{cid}.pem": pems[cid] for cid in sorted(wanted)}
    return render_template("dex/connector-ca-secret.yaml.j2", **_context(
        config, name=CONNECTOR_CA_SECRET, data=data, mount_dir=CONNECTOR_CA_DIR))


def render_deployment(config: Config, dex_config: str) -> str:
    """Pinned image, ``dex serve``, probes on the telemetry port, locked-down security context;
    scheduling, env and volumes from dexkit.yaml's dex section after dexkit's own."""
    envs = credential_envs(config)
    dex = config.dex
    return render_template("dex/deployment.yaml.j2", **_context(
        config,
        checksum=config_checksum(dex_config),
        automount=_uses_kubernetes_storage(config),
        uid=DEX_UID,
        strategy=to_data(dex.strategy) if dex.strategy is not None else None,
        pod_labels={**object_labels(config), **dex.pod_labels},
        pod_annotations=dict(sorted(dex.pod_annotations.items())),
        pod=pod_scheduling(config),
        spread=topology_spread(config),
        container_ports=container_ports(config),
        env=env_vars(config, envs),
        env_from=to_data(dex.env_from),
        resources=to_data(dex.resources),
        volumes=volumes(config),
        volume_mounts=volume_mounts(config),
    ))


def pod_scheduling(config: Config) -> dict[str, Any]:
    """The pod-level knobs, in Kubernetes' shape (empty ones are left out by the template)."""
    dex = config.dex
    return {"imagePullSecrets": to_data(dex.image_pull_secrets),
            "hostAliases": to_data(dex.host_aliases),
            "nodeSelector": dict(dex.node_selector),
            "tolerations": to_data(dex.tolerations),
            "affinity": to_data(dex.affinity)}


def topology_spread(config: Config) -> list[dict[str, Any]]:
    """dex.topologySpreadConstraints as given; else, with more than one replica, one per node."""
    given = config.dex.topology_spread_constraints
    if given is not None:
        return list(given)
    if config.dex.max_replicas <= 1:
        return []
    return [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
             "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": dict(SELECTOR)}}]


def container_ports(config: Config) -> list[dict[str, Any]]:
    ports = [{"name": "https", "containerPort": HTTPS_PORT, "protocol": "TCP"},
             {"name": "telemetry", "containerPort": TELEMETRY_PORT, "protocol": "TCP"}]
    if config.dex.grpc.enabled:
        ports.append({"name": "grpc", "containerPort": config.dex.grpc.port, "protocol": "TCP"})
    return ports


def dexkit_env_vars(config: Config, envs: CredentialEnvs | None = None) -> list[dict[str, Any]]:
    """The variables dexkit sets itself: credentials from Secrets, the pod's namespace."""
    found = [e.env_var() for e in (envs or credential_envs(config)).all()]
    if _uses_kubernetes_storage(config):
        # Dex finds its namespace here first; newer service-account tokens lack the old claim.
        found.append({"name": "KUBERNETES_POD_NAMESPACE",
                      "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    return sorted(found, key=lambda e: str(e["name"]))


def user_env_vars(config: Config) -> list[dict[str, Any]]:
    """dex.env (name: value) then dex.envVars, in the order written."""
    dex = config.dex
    given: list[dict[str, Any]] = to_data(dex.env_vars)
    return [{"name": k, "value": v} for k, v in dex.env.items()] + given


def env_vars(config: Config, envs: CredentialEnvs | None = None) -> list[dict[str, Any]]:
    """dexkit's variables, then the user's; a user variable may not replace one of dexkit's."""
    ours = dexkit_env_vars(config, envs)
    taken = {str(e["name"]) for e in ours}
    theirs = user_env_vars(config)
    names = [str(e["name"]) for e in theirs]
    for name in names:
        if name in taken:
            raise ConfigError(f"dex.env/dex.envVars: {name} is set by dexkit itself",
                              "rename the variable; dexkit feeds it from a Secret or the pod")
        if names.count(name) > 1:
            raise ConfigError(f"dex.env/dex.envVars: {name} is given twice",
                              "keep one of the two")
    return ours + theirs


def _writable_dirs(config: Config) -> dict[str, str]:
    """emptyDir mounts for a read-only root filesystem: /tmp, and sqlite3's directory."""
    dirs = {"/tmp": "tmp"}  # noqa: S108 - a private emptyDir, not the host's /tmp
    storage = config.dex.storage
    if isinstance(storage, SQLiteStorage):
        dirs.setdefault(posixpath.dirname(storage.file) or "/", "data")
    return dirs


def dexkit_volumes(config: Config) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "secret": {"secretName": CONFIG_SECRET}},
        {"name": "tls", "secret": {"secretName": tls_secret_name(config)}},
    ]
    if project_connector_cas(config):
        volumes.append({"name": "connector-ca", "secret": {"secretName": CONNECTOR_CA_SECRET}})
    volumes += [{"name": name, "emptyDir": {}} for name in _writable_dirs(config).values()]
    assert {v["name"] for v in volumes} <= set(RESERVED_VOLUMES)
    return volumes


def volumes(config: Config) -> list[dict[str, Any]]:
    """dexkit's volumes, then dex.volumes (whose names were checked not to clash)."""
    return dexkit_volumes(config) + [dict(v) for v in config.dex.volumes]


def dexkit_volume_mounts(config: Config) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
    ]
    if project_connector_cas(config):
        mounts.append({"name": "connector-ca", "mountPath": CONNECTOR_CA_DIR, "readOnly": True})
    mounts += [{"name": name, "mountPath": path} for path, name in _writable_dirs(config).items()]
    return mounts


def volume_mounts(config: Config) -> list[dict[str, Any]]:
    """dexkit's mounts, then dex.volumeMounts; none may sit on or inside one of dexkit's
    read-only mounts (Dex's config, TLS and CA files) or shadow another mount."""
    ours = dexkit_volume_mounts(config)
    theirs: list[dict[str, Any]] = to_data(config.dex.volume_mounts)
    read_only = [m["mountPath"] for m in ours if m.get("readOnly")]
    seen = [m["mountPath"] for m in ours]
    for mount in theirs:
        path = posixpath.normpath(mount["mountPath"])
        clash = next((p for p in read_only if path == p or path.startswith(p + "/")), None)
        if clash is None and path in seen:
            clash = path
        if clash is not None:
            raise ConfigError(f"dex.volumeMounts: '{mount['mountPath']}' would cover {clash}, "
                              "which dexkit mounts", "mount it somewhere else, e.g. under /srv")
        seen.append(path)
    return ours + theirs


def service_ports(config: Config) -> list[dict[str, Any]]:
    """HTTPS (with the guide's NodePort), then telemetry and gRPC when asked for."""
    service = config.dex.service
    https: dict[str, Any] = {"name": "https", "port": service.port, "targetPort": "https",
                             "protocol": "TCP"}
    if service.type == "NodePort":
        https["nodePort"] = service.node_port
    ports = [https]
    if exposes_telemetry(config):
        ports.append({"name": "telemetry", "port": TELEMETRY_PORT, "targetPort": "telemetry",
                      "protocol": "TCP"})
    if config.dex.grpc.enabled:
        ports.append({"name": "grpc", "port": config.dex.grpc.port, "targetPort": "grpc",
                      "protocol": "TCP"})
    return ports


def exposes_telemetry(config: Config) -> bool:
    return config.dex.service.telemetry or config.dex.service_monitor.enabled


def render_service(config: Config) -> str:
    return render_template("dex/service.yaml.j2", **_context(
        config, service_ports=service_ports(config),
        annotations=dict(sorted(config.dex.service.annotations.items()))))


def render_pod_disruption_budget(config: Config) -> str | None:
    if config.dex.max_replicas <= 1:
        return None
    return render_template("dex/poddisruptionbudget.yaml.j2", **_context(config))


def ingress_rules(config: Config) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The Ingress's rules and TLS entries.

    Without dex.ingress.hosts: one rule for the issuer's host and path (an IP issuer gets a
    rule without a host, since an Ingress host must be a DNS name) with dexkit's certificate.
    With them: each host, its paths defaulting to the issuer's path; TLS entries as given,
    dexkit's certificate where no secretName is named, or one entry for every host if none.
    """
    ingress = config.dex.ingress
    issuer_path = config.issuer_parts.path or "/"
    default_paths: list[dict[str, Any]] = [{"path": issuer_path, "pathType": "Prefix"}]
    if not ingress.hosts:
        host = None if is_ip(config.issuer_host) else config.issuer_host.lower()
        rules: list[dict[str, Any]] = [{"host": host, "paths": default_paths}]
        tls = [{"hosts": [host], "secretName": tls_secret_name(config)}] if host else []
        return rules, tls
    rules = [{"host": h.host.lower(), "paths": to_data(h.paths) or default_paths}
             for h in ingress.hosts]
    hosts = [str(r["host"]) for r in rules]
    tls = [{"hosts": list(t.hosts), "secretName": t.secret_name or tls_secret_name(config)}
           for t in ingress.tls] or \
        [{"hosts": hosts, "secretName": tls_secret_name(config)}]
    return rules, tls


def render_ingress(config: Config) -> str | None:
    if not config.dex.ingress.enabled:
        return None
    rules, tls = ingress_rules(config)
    return render_template("dex/ingress.yaml.j2", **_context(
        config, rules=rules, tls=tls,
        annotations=dict(sorted(config.dex.ingress.annotations.items()))))


def render_network_policy(config: Config) -> str | None:
    """Only Dex's ports from the allowed peers; egress restricted when egressRules are given."""
    policy = config.dex.network_policy
    if not policy.enabled:
        return None
    ports = [{"port": p["name"], "protocol": "TCP"} for p in container_ports(config)]
    rule: dict[str, Any] = {"ports": ports}
    if policy.ingress_from:
        rule["from"] = [dict(peer) for peer in policy.ingress_from]
    return render_template("dex/networkpolicy.yaml.j2", **_context(
        config, ingress=[rule], egress=[dict(r) for r in policy.egress_rules]))


def render_autoscaler(config: Config) -> str | None:
    auto = config.dex.autoscaling
    if not auto.enabled:
        return None
    metrics = [{"type": "Resource", "resource": {"name": resource, "target": {
        "type": "Utilization", "averageUtilization": target}}}
        for resource, target in (("cpu", auto.target_cpu_utilization_percentage),
                                 ("memory", auto.target_memory_utilization_percentage))
        if target is not None]
    return render_template("dex/horizontalpodautoscaler.yaml.j2",
                           **_context(config, metrics=metrics))


def render_service_monitor(config: Config) -> str | None:
    monitor = config.dex.service_monitor
    if not monitor.enabled:
        return None
    endpoint: dict[str, Any] = {"port": "telemetry", "path": "/metrics", "scheme": "http"}
    if monitor.interval:
        endpoint["interval"] = monitor.interval
    if monitor.scrape_timeout:
        endpoint["scrapeTimeout"] = monitor.scrape_timeout
    return render_template("dex/servicemonitor.yaml.j2", **_context(
        config, monitor_namespace=monitor.namespace or config.namespace, endpoint=endpoint,
        monitor_labels={**object_labels(config), **monitor.labels},
        annotations=dict(sorted(monitor.annotations.items()))))


# --- RBAC for the people who log in ---------------------------------------------------------------


@dataclass(frozen=True)
class UserBinding:
    """One entry of dexkit.yaml's rbac, as the API server will see its subject."""

    kind: str  # Group or User
    subject: str
    role: str

    @property
    def name(self) -> str:
        raw = f"dexkit:{self.role}:{self.kind.lower()}:{self.subject}"
        # RBAC names are path segments: no '/' or '%'. Keep them readable and still unique.
        safe = raw.replace("/", "-").replace("%", "-")
        if safe != raw or len(safe) > 200:
            digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
            safe = f"{safe[:200]}-{digest}"
        return safe

    @property
    def file_name(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", f"{self.kind}-{self.subject}-{self.role}".lower())
        return slug.strip("-")[:100]


def user_bindings(config: Config) -> list[UserBinding]:
    """The rbac entries with the API server's prefixes applied, so that they match tokens."""
    bindings = []
    for entry in config.rbac:
        if entry.group is not None:
            bindings.append(UserBinding("Group", config.api_server.groups_prefix + entry.group,
                                        entry.cluster_role))
        elif entry.user is not None:
            bindings.append(UserBinding("User", config.effective_username_prefix + entry.user,
                                        entry.cluster_role))
    return bindings


def render_user_binding(config: Config, binding: UserBinding) -> str:
    return render_template("dex/user-clusterrolebinding.yaml.j2", **_context(
        config, binding_name=binding.name, role=binding.role, subject_kind=binding.kind,
        subject=binding.subject))


# --- everything, in apply order -------------------------------------------------------------------


def render_manifests(config: Config,
                     connector_ca_pems: Mapping[str, str] | None = None) -> list[Manifest]:
    """Every Kubernetes object, one file each, numbered in the order they can be applied."""
    dex_config = render_dex_config(config)
    pems = connector_ca_pems or {}
    candidates: list[tuple[str, str | None]] = [
        *render_crds(config),
        ("dex/00-namespace.yaml", render_namespace(config)),
        ("dex/01-serviceaccount.yaml", render_service_account(config)),
        ("dex/02-role.yaml", render_storage_role(config)),
        ("dex/03-rolebinding.yaml", render_storage_role_binding(config)),
        ("dex/04-clusterrole.yaml", render_crd_cluster_role(config)),
        ("dex/05-clusterrolebinding.yaml", render_crd_cluster_role_binding(config)),
        ("dex/06-config-secret.yaml", render_config_secret(config, dex_config)),
        ("dex/07-connector-ca-secret.yaml", render_connector_ca_secret(config, pems)),
        ("dex/08-deployment.yaml", render_deployment(config, dex_config)),
        ("dex/09-service.yaml", render_service(config)),
        ("dex/10-poddisruptionbudget.yaml", render_pod_disruption_budget(config)),
        ("dex/11-ingress.yaml", render_ingress(config)),
        ("dex/12-networkpolicy.yaml", render_network_policy(config)),
        ("dex/13-horizontalpodautoscaler.yaml", render_autoscaler(config)),
        ("dex/14-servicemonitor.yaml", render_service_monitor(config)),
    ]
    candidates += [(f"rbac/{i:02d}-{b.file_name}.yaml", render_user_binding(config, b))
                   for i, b in enumerate(user_bindings(config))]
    return [Manifest(path, text) for path, text in candidates if text is not None]


def render_all_in_one(manifests: list[Manifest]) -> str:
    """The guide's ``dex.yaml``: every object in one stream, for ``kubectl apply -f``."""
    header = ("# Dex on Kubernetes, rendered by dexkit from dexkit.yaml: every object, one file.\n"
              "# Apply with: kubectl apply -f dex.yaml\n")
    return header + "".join(f"---\n# {m.path}\n{m.text}" for m in manifests)
