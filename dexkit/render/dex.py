"""The bundled issuer: Dex's config and every Kubernetes object that runs it.

One function per object, each over one template in ``templates/dex/``. Rules:

- Every object is labelled ``app.kubernetes.io/name: dex`` and
  ``app.kubernetes.io/managed-by: dexkit``; names follow the guide (``dex``, the TLS secret
  ``<host>.tls``, the GitHub secret ``github-client``) so its ``kubectl create secret`` lines work.
- No credential is ever rendered. Connectors and storage read ``$VAR`` values that Dex expands
  from the pod's environment, which is fed from Secrets; confidential clients use ``secretEnv``.
- Pure and deterministic: a :class:`~dexkit.config.Config` in, text out, same bytes every time.
"""

from __future__ import annotations

import copy
import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from dexkit.config import (
    RESERVED_VOLUMES,
    Config,
    GitHubConnector,
    KubernetesStorage,
    LDAPConnector,
    MemoryStorage,
    MockConnector,
    OAuthClient,
    OIDCConnector,
    PostgresStorage,
    SQLiteStorage,
    env_prefix,
    is_ip,
    to_data,
)
from dexkit.errors import ConfigError
from dexkit.labels import LABELS as LABELS
from dexkit.labels import SELECTOR as SELECTOR
from dexkit.render import render_template, to_yaml

if TYPE_CHECKING:
    from collections.abc import Mapping

NAME = "dex"
HTTPS_PORT = 5556
TELEMETRY_PORT = 5558
# The user the ghcr.io/dexidp/dex image runs as.
DEX_UID = 1001
CONFIG_DIR = "/etc/dex/cfg"
CONFIG_FILE = f"{CONFIG_DIR}/config.yaml"
# Beside /etc/dex, not inside it: the official Helm chart mounts its config read-only at
# /etc/dex, and a mount point inside a read-only mount cannot be created. Same paths in both
# keep 'render --format helm-values' giving Dex the very same config.
TLS_DIR = "/etc/dex-tls"
CONNECTOR_CA_DIR = "/etc/dex-connector-ca"
CONFIG_SECRET = "dex-config"  # noqa: S105 - a Secret's name, not a secret
CONNECTOR_CA_SECRET = "dex-connector-ca"  # noqa: S105 - a Secret's name, not a secret
# Dex's kubernetes storage: the group of its CRDs and, per Dex version, the kinds it stores
# (plural, singular, kind; Kubernetes pluralised SigningKey and OfflineSessions this way). Read
# from customResourceDefinitions() in Dex's storage/kubernetes/types.go: at v2.45.1 (commit
# 11d2eeb52b42) ten kinds; on Dex's main branch at ab64ed778070 (2026-08-06, the code of the
# next release) two more, which Dex lists when it starts and its garbage collector on every run.
CRD_GROUP = "dex.coreos.com"
StorageKind = tuple[str, str, str]
STORAGE_KINDS_2_45: tuple[StorageKind, ...] = (
    ("authcodes", "authcode", "AuthCode"), ("authrequests", "authrequest", "AuthRequest"),
    ("oauth2clients", "oauth2client", "OAuth2Client"),
    ("signingkeies", "signingkey", "SigningKey"),
    ("refreshtokens", "refreshtoken", "RefreshToken"), ("passwords", "password", "Password"),
    ("offlinesessionses", "offlinesessions", "OfflineSessions"),
    ("connectors", "connector", "Connector"),
    ("devicerequests", "devicerequest", "DeviceRequest"),
    ("devicetokens", "devicetoken", "DeviceToken"),
)
STORAGE_KINDS_2_46: tuple[StorageKind, ...] = (
    *STORAGE_KINDS_2_45,
    ("useridentities", "useridentity", "UserIdentity"),
    ("authsessions", "authsession", "AuthSession"),
)
# Dex's storage option crdHandling ("check": the CRDs must exist, Dex creates none) exists from
# v2.45.0 (storage/kubernetes/storage.go).
CRD_HANDLING_SINCE = (2, 45, 0)
STORAGE_VERBS = ("create", "delete", "get", "list", "update")
CRD_CLUSTER_ROLE = "dexkit:dex-crds"
# Namespaces Kubernetes owns: dexkit deploys into them if asked but never renders them.
BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable of the Dex container, taken from one key of a Secret."""

    env: str
    secret: str
    key: str

    def env_var(self) -> dict[str, Any]:
        return {"name": self.env,
                "valueFrom": {"secretKeyRef": {"name": self.secret, "key": self.key}}}


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object as YAML text, with the file name it is written under."""

    path: str
    text: str


@dataclass(frozen=True)
class DexClient:
    """A static client as Dex gets it: redirect URIs completed, secret by reference."""

    id: str
    name: str
    public: bool
    redirect_uris: list[str]
    secret_env: str | None = None
    # Clients that may ask for a token with this client's audience (Dex's cross-client
    # 'audience:server:client_id:<id>' scope): a cluster's login client, the robots.
    trusted_peers: list[str] = field(default_factory=list)
    # For a robot (client_credentials): the groups Dex puts into its token.
    robot_groups: list[str] | None = None


@dataclass(frozen=True)
class CredentialEnvs:
    """Every Secret-fed variable: per connector (by role), for storage, and per client."""

    connectors: dict[str, dict[str, SecretEnv]] = field(default_factory=dict)
    storage: dict[str, SecretEnv] = field(default_factory=dict)
    clients: dict[str, SecretEnv] = field(default_factory=dict)

    def all(self) -> list[SecretEnv]:
        found = [e for envs in self.connectors.values() for e in envs.values()]
        return found + list(self.storage.values()) + list(self.clients.values())


# Dex's name for each kind of section; each has its template under templates/dex/.
_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (GitHubConnector, "github"), (LDAPConnector, "ldap"), (OIDCConnector, "oidc"),
    (MockConnector, "mockCallback"), (KubernetesStorage, "kubernetes"),
    (MemoryStorage, "memory"), (SQLiteStorage, "sqlite3"), (PostgresStorage, "postgres"),
)


# --- values shared by the templates ---------------------------------------------------------------


def dex_type(section: object) -> str:
    """The ``type`` Dex expects for a connector or storage section of the config."""
    for cls, name in _TYPE_NAMES:
        if isinstance(section, cls):
            return name
    raise ConfigError(f"dexkit cannot render a {type(section).__name__} for Dex",
                      "use one of the connector types github, ldap, oidc, mockCallback")


def tls_secret_name(config: Config) -> str:
    """The TLS Secret's name (the guide's ``<host>.tls``); see Config.tls_secret_name."""
    return config.tls_secret_name


def credential_envs(config: Config) -> CredentialEnvs:
    """The environment variables Dex reads credentials from, and the Secrets that feed them.

    GitHub keeps the guide's names (``GITHUB_CLIENT_ID`` from ``github-client``/``client-id``);
    other connectors follow the same pattern with their id as prefix.
    """
    envs = CredentialEnvs()
    for conn in config.connectors:
        prefix = env_prefix(conn.id)
        found: dict[str, SecretEnv] = {}
        secret = conn.credentials if isinstance(conn, OIDCConnector) else \
            conn.credentials_secret if isinstance(conn, GitHubConnector) else None
        if secret:
            found["client_id"] = SecretEnv(f"{prefix}_CLIENT_ID", secret, "client-id")
            found["client_secret"] = SecretEnv(f"{prefix}_CLIENT_SECRET", secret,
                                               "client-secret")
        if isinstance(conn, LDAPConnector) and conn.bind_password_secret:
            found["bind_password"] = SecretEnv(f"{prefix}_BIND_PASSWORD",
                                               conn.bind_password_secret, "password")
        envs.connectors[conn.id] = found
    storage = config.dex.storage
    if isinstance(storage, PostgresStorage):
        envs.storage["password"] = SecretEnv("DEX_POSTGRES_PASSWORD", storage.password_secret,
                                             "password")
    for client in config.clients:
        if not client.public and client.secret_name:
            envs.clients[client.id] = SecretEnv(f"DEX_CLIENT_{env_prefix(client.id)}_SECRET",
                                                client.secret_name, "client-secret")
    _check_envs(envs)
    return envs


def _check_envs(envs: CredentialEnvs) -> None:
    seen: dict[str, SecretEnv] = {}
    for item in envs.all():
        if not _DNS_SUBDOMAIN.match(item.secret) or len(item.secret) > 253:
            raise ConfigError(f"'{item.secret}' is not a valid Secret name",
                              "use lower-case letters, digits, '-' and '.' (a DNS subdomain)")
        if item.env in seen:
            raise ConfigError(
                f"two credentials would use the environment variable {item.env}",
                "give the connectors or clients ids that differ in more than punctuation")
        seen[item.env] = item


def device_callback(config: Config) -> str:
    """Dex's device flow finishes on this URI; a client must register it to use the flow.

    Literally ``/device/callback``, relative: Dex starts the device flow's authorization with
    that string and compares it byte for byte with the client's redirectURIs (Dex v2.45.1
    server/oauth2.go, deviceCallbackURI), so ``<issuer>/device/callback`` does not match.
    """
    del config  # the same for every issuer
    return "/device/callback"


def dex_clients(config: Config, envs: CredentialEnvs | None = None) -> list[DexClient]:
    """``clients`` as Dex gets them, then one audience-only client per cluster."""
    envs = envs or credential_envs(config)
    peers = audience_peers(config)
    found = [_dex_client(config, client, envs, peers.get(client.id, [])) for client in
             config.clients]
    return found + [DexClient(id=cluster.client_id, name=f"Kubernetes cluster {cluster.name}",
                              public=True, redirect_uris=[],
                              trusted_peers=peers[cluster.client_id])
                    for cluster in config.clusters]


def audience_peers(config: Config) -> dict[str, list[str]]:
    """Audience client -> the clients it trusts to ask for it: each cluster's client trusts
    its login client; every client an API server accepts trusts the robots (a robot asks
    for that audience: its own client is no API server's)."""
    robots = list(config.robot_ids)
    if not config.clusters:
        return {config.api_server.client_id: robots} if robots else {}
    return {c.client_id: [config.cluster_login_client(c), *robots] for c in config.clusters}


# The keyboard flow (dexkit/kubelogin --grant authcode-keyboard): Dex shows the code on its page.
OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"


def _dex_client(config: Config, client: OAuthClient, envs: CredentialEnvs,
                peers: list[str]) -> DexClient:
    # Dex allows only the listed URIs once any is listed: register every flow dexkit offers
    # (device, and for a public CLI client the keyboard flow's out-of-band URI).
    flows = [device_callback(config)] + ([OOB_REDIRECT] if client.public else [])
    uris = list(dict.fromkeys([*client.redirect_uris, *flows]))
    secret = envs.clients.get(client.id)
    robot = client.client_credentials
    return DexClient(id=client.id, name=client.name or client.id, public=client.public,
                     redirect_uris=uris, secret_env=secret.env if secret else None,
                     trusted_peers=peers, robot_groups=robot.groups if robot else None)


# Dex's grant types when oauth2.grantTypes is not set (cmd/dex/serve.go, v2.45.1 and main).
DEX_DEFAULT_GRANTS = ("authorization_code", "implicit", "password", "refresh_token",
                      "urn:ietf:params:oauth:grant-type:device_code",
                      "urn:ietf:params:oauth:grant-type:token-exchange")
CLIENT_CREDENTIALS_GRANT = "client_credentials"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
# Connector-level grantTypes (which grants may use a connector) exist from Dex's main branch
# after v2.45.1 (storage.Connector.GrantTypes at ab64ed778070).
CONNECTOR_GRANT_TYPES_SINCE = (2, 46, 0)


def grant_types(config: Config) -> list[str] | None:
    """oauth2.grantTypes: None (Dex's default) unless a robot needs client_credentials, which
    Dex's main branch serves only when listed (its default leaves it out)."""
    if not config.robot_ids:
        return None
    return [*DEX_DEFAULT_GRANTS, CLIENT_CREDENTIALS_GRANT]


def exchange_connector_grants(config: Config) -> list[str] | None:
    """A token-exchange connector's own grantTypes, where Dex has them: only the exchange,
    so nobody logs in through it in a browser."""
    version = config.dex.version
    if version is not None and version < CONNECTOR_GRANT_TYPES_SINCE:
        return None
    return [TOKEN_EXCHANGE_GRANT]


def connector_ca_paths(config: Config) -> dict[str, str]:
    """Where each connector's rootCA is inside the pod.

    An absolute ``rootCA`` is a path inside the Dex pod, used as is. A relative one is a PEM
    file of the project: it travels in the ``dex-connector-ca`` Secret and is mounted here.
    """
    paths: dict[str, str] = {}
    for conn in config.connectors:
        root_ca = getattr(conn, "root_ca", None)
        if root_ca:
            paths[conn.id] = root_ca if root_ca.startswith("/") else \
                f"{CONNECTOR_CA_DIR}/{conn.id}.pem"
    return paths


def project_connector_cas(config: Config) -> dict[str, str]:
    """Connector id -> project-relative PEM file, for the rootCAs that must be shipped."""
    return {conn.id: root_ca for conn in config.connectors
            if (root_ca := getattr(conn, "root_ca", None)) and not root_ca.startswith("/")}


def object_labels(config: Config) -> dict[str, str]:
    """dexkit's labels, then dex.commonLabels (which may not redefine dexkit's)."""
    return {**LABELS, **config.dex.common_labels}


def _context(config: Config, **extra: Any) -> dict[str, Any]:
    """What every template sees, plus ``extra`` (which may override, e.g. ``name``)."""
    return {
        "c": config,
        "name": NAME,
        "labels": object_labels(config),
        "selector": dict(SELECTOR),
        "ports": {"https": HTTPS_PORT, "telemetry": TELEMETRY_PORT},
        "paths": {"config_file": CONFIG_FILE, "tls_dir": TLS_DIR},
        **extra,
    }


def _uses_kubernetes_storage(config: Config) -> bool:
    return isinstance(config.dex.storage, KubernetesStorage)


def storage_kinds(config: Config) -> tuple[StorageKind, ...]:
    """The kinds the project's Dex stores: by the release ``dex.image`` names; an image that
    names none (or a newer release) gets the newest list, since a kind missing from the Role
    breaks Dex while one too many only names a resource that does not exist."""
    version = config.dex.version
    if version is not None and version < (2, 46, 0):
        return STORAGE_KINDS_2_45
    return STORAGE_KINDS_2_46


def crd_resources(config: Config) -> tuple[str, ...]:
    return tuple(sorted(plural for plural, _, _ in storage_kinds(config)))


def dexkit_applies_crds(config: Config) -> bool:
    """With kubernetes storage on a Dex that has ``crdHandling`` (2.45.0 and later, and an
    image that names no release), dexkit applies Dex's CRDs and Dex only checks them: Dex gets
    no cluster-wide right, and a fresh Dex finds its CRDs established instead of creating them
    and exiting once because they are not served yet. An older Dex creates them itself, with
    the one ClusterRole that allows it."""
    if not _uses_kubernetes_storage(config):
        return False
    version = config.dex.version
    return version is None or version >= CRD_HANDLING_SINCE


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

