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

import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dexkit.config import (
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
)
from dexkit.errors import ConfigError
from dexkit.render import render_template

if TYPE_CHECKING:
    from collections.abc import Mapping

NAME = "dex"
LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "dex",
    "app.kubernetes.io/managed-by": "dexkit",
}
SELECTOR: Mapping[str, str] = {"app.kubernetes.io/name": "dex"}
HTTPS_PORT = 5556
TELEMETRY_PORT = 5558
# The user the ghcr.io/dexidp/dex image runs as.
DEX_UID = 1001
CONFIG_DIR = "/etc/dex/cfg"
CONFIG_FILE = f"{CONFIG_DIR}/config.yaml"
TLS_DIR = "/etc/dex/tls"
CONNECTOR_CA_DIR = "/etc/dex/connector-ca"
CONFIG_SECRET = "dex-config"  # noqa: S105 - a Secret's name, not a secret
CONNECTOR_CA_SECRET = "dex-connector-ca"  # noqa: S105 - a Secret's name, not a secret
# dexidp/dex storage/kubernetes: the group and resources of its CRDs (Kubernetes pluralised
# SigningKey and OfflineSessions this way), and the verbs its client uses on them.
CRD_GROUP = "dex.coreos.com"
CRD_RESOURCES = (
    "authcodes", "authrequests", "connectors", "devicerequests", "devicetokens",
    "oauth2clients", "offlinesessionses", "passwords", "refreshtokens", "signingkeies",
)
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
        if isinstance(conn, GitHubConnector | OIDCConnector) and conn.credentials_secret:
            found["client_id"] = SecretEnv(f"{prefix}_CLIENT_ID", conn.credentials_secret,
                                           "client-id")
            found["client_secret"] = SecretEnv(f"{prefix}_CLIENT_SECRET",
                                               conn.credentials_secret, "client-secret")
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
    envs = envs or credential_envs(config)
    return [_dex_client(config, client, envs) for client in config.clients]


# The keyboard flow (dexkit/kubelogin --grant authcode-keyboard): Dex shows the code on its page.
OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"


def _dex_client(config: Config, client: OAuthClient, envs: CredentialEnvs) -> DexClient:
    # Dex allows only the listed URIs once any is listed: register every flow dexkit offers
    # (device, and for a public CLI client the keyboard flow's out-of-band URI).
    flows = [device_callback(config)] + ([OOB_REDIRECT] if client.public else [])
    uris = list(dict.fromkeys([*client.redirect_uris, *flows]))
    secret = envs.clients.get(client.id)
    return DexClient(id=client.id, name=client.name or client.id, public=client.public,
                     redirect_uris=uris, secret_env=secret.env if secret else None)


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


def _context(config: Config, **extra: Any) -> dict[str, Any]:
    """What every template sees, plus ``extra`` (which may override, e.g. ``name``)."""
    return {
        "c": config,
        "name": NAME,
        "labels": dict(LABELS),
        "selector": dict(SELECTOR),
        "ports": {"https": HTTPS_PORT, "telemetry": TELEMETRY_PORT},
        "paths": {"config_file": CONFIG_FILE, "tls_dir": TLS_DIR},
        **extra,
    }


def _uses_kubernetes_storage(config: Config) -> bool:
    return isinstance(config.dex.storage, KubernetesStorage)


# --- Dex's own configuration ----------------------------------------------------------------------


def render_dex_config(config: Config) -> str:
    """Dex's config.yaml: issuer exactly as configured, storage, listeners, connectors, clients."""
    _check_storage_fits_replicas(config)
    envs = credential_envs(config)
    return render_template("dex/config.yaml.j2", **_context(
        config,
        storage_type=dex_type(config.dex.storage),
        connectors=[(dex_type(conn), conn) for conn in config.connectors],
        connector_env=envs.connectors,
        storage_env=envs.storage,
        connector_ca=connector_ca_paths(config),
        clients=dex_clients(config, envs),
    ))


def _check_storage_fits_replicas(config: Config) -> None:
    storage = dex_type(config.dex.storage)
    if storage in ("memory", "sqlite3") and config.dex.replicas > 1:
        raise ConfigError(
            f"dex.storage {storage} keeps state inside one pod, so dex.replicas "
            f"{config.dex.replicas} would give each replica its own users, keys and sessions",
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
    return render_template("dex/serviceaccount.yaml.j2",
                           **_context(config, automount=_uses_kubernetes_storage(config)))


def render_storage_role(config: Config) -> str | None:
    """The namespaced Role for Dex's own objects (storage: kubernetes only)."""
    if not _uses_kubernetes_storage(config):
        return None
    return render_template("dex/role.yaml.j2", **_context(
        config, crd_group=CRD_GROUP, crd_resources=CRD_RESOURCES, storage_verbs=STORAGE_VERBS))


def render_storage_role_binding(config: Config) -> str | None:
    if not _uses_kubernetes_storage(config):
        return None
    return render_template("dex/rolebinding.yaml.j2", **_context(config))


def render_crd_cluster_role(config: Config) -> str | None:
    """The one cluster-wide permission: creating Dex's CRDs (storage: kubernetes only)."""
    if not _uses_kubernetes_storage(config):
        return None
    return render_template("dex/clusterrole.yaml.j2",
                           **_context(config, cluster_role=CRD_CLUSTER_ROLE))


def crd_binding_name(config: Config) -> str:
    # Cluster-scoped, so one per namespace Dex runs in; the ClusterRole itself is shared.
    return f"{CRD_CLUSTER_ROLE}:{config.namespace}"


def render_crd_cluster_role_binding(config: Config) -> str | None:
    if not _uses_kubernetes_storage(config):
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
    """Pinned image, ``dex serve``, probes on the telemetry port, locked-down security context."""
    envs = credential_envs(config)
    return render_template("dex/deployment.yaml.j2", **_context(
        config,
        checksum=config_checksum(dex_config),
        automount=_uses_kubernetes_storage(config),
        uid=DEX_UID,
        spread=config.dex.replicas > 1,
        env=_env_vars(config, envs),
        volumes=_volumes(config),
        volume_mounts=_volume_mounts(config),
    ))


def _env_vars(config: Config, envs: CredentialEnvs) -> list[dict[str, Any]]:
    found = [e.env_var() for e in envs.all()]
    if _uses_kubernetes_storage(config):
        # Dex finds its namespace here first; newer service-account tokens lack the old claim.
        found.append({"name": "KUBERNETES_POD_NAMESPACE",
                      "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}})
    return sorted(found, key=lambda e: str(e["name"]))


def _writable_dirs(config: Config) -> dict[str, str]:
    """emptyDir mounts for a read-only root filesystem: /tmp, and sqlite3's directory."""
    dirs = {"/tmp": "tmp"}  # noqa: S108 - a private emptyDir, not the host's /tmp
    storage = config.dex.storage
    if isinstance(storage, SQLiteStorage):
        dirs.setdefault(posixpath.dirname(storage.file) or "/", "data")
    return dirs


def _volumes(config: Config) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "config", "secret": {"secretName": CONFIG_SECRET}},
        {"name": "tls", "secret": {"secretName": tls_secret_name(config)}},
    ]
    if project_connector_cas(config):
        volumes.append({"name": "connector-ca", "secret": {"secretName": CONNECTOR_CA_SECRET}})
    volumes += [{"name": name, "emptyDir": {}} for name in _writable_dirs(config).values()]
    return volumes


def _volume_mounts(config: Config) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
    ]
    if project_connector_cas(config):
        mounts.append({"name": "connector-ca", "mountPath": CONNECTOR_CA_DIR, "readOnly": True})
    mounts += [{"name": name, "mountPath": path} for path, name in _writable_dirs(config).items()]
    return mounts


def render_service(config: Config) -> str:
    return render_template("dex/service.yaml.j2", **_context(config))


def render_pod_disruption_budget(config: Config) -> str | None:
    if config.dex.replicas <= 1:
        return None
    return render_template("dex/poddisruptionbudget.yaml.j2", **_context(config))


def render_ingress(config: Config) -> str | None:
    if not config.dex.ingress.enabled:
        return None
    # An Ingress host must be a DNS name; an IP issuer gets a rule without a host.
    host = None if is_ip(config.issuer_host) else config.issuer_host.lower()
    path = urlsplit(config.issuer).path or "/"
    return render_template("dex/ingress.yaml.j2", **_context(
        config, host=host, path=path, tls_secret=tls_secret_name(config),
        annotations=dict(sorted(config.dex.ingress.annotations.items()))))


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
    ]
    candidates += [(f"rbac/{i:02d}-{b.file_name}.yaml", render_user_binding(config, b))
                   for i, b in enumerate(user_bindings(config))]
    return [Manifest(path, text) for path, text in candidates if text is not None]


def render_all_in_one(manifests: list[Manifest]) -> str:
    """The guide's ``dex.yaml``: every object in one stream, for ``kubectl apply -f``."""
    header = ("# Dex on Kubernetes, rendered by dexkit from dexkit.yaml: every object, one file.\n"
              "# Apply with: kubectl apply -f dex.yaml\n")
    return header + "".join(f"---\n# {m.path}\n{m.text}" for m in manifests)

