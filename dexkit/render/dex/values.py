"""What Dex's config and its objects share: names, ports and paths, the Secret-fed credential
variables, the static clients and grants, connector CAs, and the storage kinds per Dex version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
)
from dexkit.errors import ConfigError
from dexkit.labels import LABELS as LABELS
from dexkit.labels import SELECTOR as SELECTOR

if TYPE_CHECKING:
    pass


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
