"""Dex's side of dexkit.yaml: the serving certificate, storage, the Dex Deployment's settings,
connectors, static users and OAuth clients.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta
from msgspec.structs import force_setattr

from dexkit.config.kubernetes import (
    _ENV_NAME,
    Affinity,
    AutoscalingSettings,
    EnvFromSource,
    EnvVar,
    HostAlias,
    IngressSettings,
    LocalObjectReference,
    NetworkPolicySettings,
    Resources,
    ServiceAccountSettings,
    ServiceMonitorSettings,
    ServiceSettings,
    Strategy,
    Toleration,
    VolumeMount,
    check_annotations,
    check_labels,
    default_resources,
)
from dexkit.config.values import (
    _DNS_LABEL,
    _DNS_SUBDOMAIN,
    DEFAULT_CLIENT_ID,
    DEFAULT_DEX_IMAGE,
    LOOPBACK_PORTS,
    KeyType,
    Model,
    Port,
    Tagged,
    _checked,
    check_issuer,
    duration_seconds,
    invalid,
    is_dns_name,
    is_ip,
)


class TLSSettings(Model, frozen=True):
    """The serving certificate and its CA (``ssl/`` as in the guide's gencert.sh)."""

    dir: str = "ssl"
    hosts: list[str] = msgspec.field(default_factory=list)
    ips: list[str] = msgspec.field(default_factory=list)
    key_type: KeyType = "ecdsa-p256"
    ca_days: Annotated[int, Meta(ge=1, le=36500)] = 3650
    cert_days: Annotated[int, Meta(ge=1, le=3650)] = 365

    def __post_init__(self) -> None:
        for host in self.hosts:
            if not is_dns_name(host):
                hint = "put IP addresses under 'ips'" if is_ip(host) else ""
                invalid("hosts", f"'{host}' is not a valid DNS name", hint)
        for ip in self.ips:
            if not is_ip(ip):
                invalid("ips", f"'{ip}' is not a valid IP address")


class KubernetesStorage(Tagged, frozen=True, tag_field="type", tag="kubernetes"):
    pass


class MemoryStorage(Tagged, frozen=True, tag_field="type", tag="memory"):
    pass


class SQLiteStorage(Tagged, frozen=True, tag_field="type", tag="sqlite3"):
    file: str = "/var/dex/dex.db"


class PostgresStorage(Tagged, frozen=True, tag_field="type", tag="postgres"):
    host: str
    port: Port = 5432
    database: str = "dex"
    user: str = "dex"
    # Secret with key 'password', read by Dex as $DEX_POSTGRES_PASSWORD.
    password_secret: str = "dex-postgres"
    ssl_mode: Literal["disable", "require", "verify-ca", "verify-full"] = "verify-full"


Storage: TypeAlias = KubernetesStorage | MemoryStorage | SQLiteStorage | PostgresStorage


class GRPCSettings(Model, frozen=True):
    """Dex's gRPC API (create clients, passwords...): mutual TLS with the project's CA only."""

    enabled: bool = False
    port: Port = 5557
    reflection: bool = False


# Top-level keys of Dex's config (cmd/dex/config.go, v2.45.1).
DEX_CONFIG_KEYS = ("issuer", "storage", "web", "telemetry", "oauth2", "grpc", "expiry", "logger",
                   "frontend", "signer", "connectors", "staticClients", "enablePasswordDB",
                   "staticPasswords")


# Volumes and mounts the Deployment has already; extra ones may not reuse their names.
RESERVED_VOLUMES = ("config", "tls", "connector-ca", "tmp", "data")


_DEX_TAG = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.-]+)?$")


def dex_image_version(image: str) -> tuple[int, int, int] | None:
    """The Dex release an image's tag names: ``v2.45.1``, ``v2.45.1-alpine`` -> (2, 45, 1);
    ``v2.46.0-20260806171424-ab64ed77`` (Dex's name for a commit of its main branch before
    2.46.0) -> (2, 46, 0). None for a tag that names no release (``latest``, ``master``) or an
    image given by digest alone."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    if ":" not in name:
        return None
    match = _DEX_TAG.match(name.split(":", 1)[1])
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


class DexSettings(Model, frozen=True):
    image: str = DEFAULT_DEX_IMAGE
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[LocalObjectReference] = msgspec.field(default_factory=list)
    replicas: Annotated[int, Meta(ge=1, le=20)] = 1
    revision_history_limit: Annotated[int, Meta(ge=0)] = 10
    strategy: Strategy | None = None
    storage: Storage = msgspec.field(default_factory=KubernetesStorage)
    service: ServiceSettings = msgspec.field(default_factory=ServiceSettings)
    ingress: IngressSettings = msgspec.field(default_factory=IngressSettings)
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    # Dex's duration syntax; the guide keeps Dex's default of 24h ID tokens.
    id_token_lifetime: str = "24h"
    resources: Resources = msgspec.field(default_factory=default_resources)
    node_selector: dict[str, str] = msgspec.field(default_factory=dict)
    tolerations: list[Toleration] = msgspec.field(default_factory=list)
    affinity: Affinity = msgspec.field(default_factory=Affinity)
    # None: dexkit's own (spread over nodes when there is more than one replica).
    topology_spread_constraints: list[dict[str, Any]] | None = None
    priority_class_name: str | None = None
    host_aliases: list[HostAlias] = msgspec.field(default_factory=list)
    # On every object dexkit renders (never on selectors, which cannot change).
    common_labels: dict[str, str] = msgspec.field(default_factory=dict)
    pod_labels: dict[str, str] = msgspec.field(default_factory=dict)
    pod_annotations: dict[str, str] = msgspec.field(default_factory=dict)
    service_account: ServiceAccountSettings = msgspec.field(
        default_factory=ServiceAccountSettings)
    # The chart's three spellings: env (name: value), envVars (Kubernetes EnvVars), envFrom.
    env: dict[str, str] = msgspec.field(default_factory=dict)
    env_vars: list[EnvVar] = msgspec.field(default_factory=list)
    env_from: list[EnvFromSource] = msgspec.field(default_factory=list)
    volumes: list[dict[str, Any]] = msgspec.field(default_factory=list)
    volume_mounts: list[VolumeMount] = msgspec.field(default_factory=list)
    service_monitor: ServiceMonitorSettings = msgspec.field(
        default_factory=ServiceMonitorSettings)
    network_policy: NetworkPolicySettings = msgspec.field(default_factory=NetworkPolicySettings)
    autoscaling: AutoscalingSettings = msgspec.field(default_factory=AutoscalingSettings)
    grpc: GRPCSettings = msgspec.field(default_factory=GRPCSettings)
    # Merged into Dex's config as it is (expiry, frontend, oauth2, more connectors...), except
    # where it would contradict what dexkit renders (see check_extra_config).
    extra_config: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        _checked("idTokenLifetime", duration_seconds, self.id_token_lifetime,
                 "Dex reads it with Go's time.ParseDuration: e.g. '24h', '1h30m', '15m'")
        check_labels("commonLabels", self.common_labels)
        check_labels("podLabels", self.pod_labels)
        check_annotations("podAnnotations", self.pod_annotations)
        check_labels("nodeSelector", self.node_selector, owned_ok=True)
        if self.priority_class_name is not None and \
                not _DNS_SUBDOMAIN.match(self.priority_class_name):
            invalid("priorityClassName", f"'{self.priority_class_name}' is not a valid name")
        for name in self.env:
            if not _ENV_NAME.match(name):
                invalid("env", f"'{name}' is not a valid environment variable name")
        self._check_volumes()
        self._check_autoscaling()

    def _check_volumes(self) -> None:
        names: list[str] = []
        for volume in self.volumes:
            name = volume.get("name")
            if not isinstance(name, str) or not _DNS_LABEL.match(name):
                invalid("volumes", f"every volume needs a 'name' that is a DNS label, got {name!r}")
            if name in RESERVED_VOLUMES:
                invalid("volumes", f"volume name '{name}' is dexkit's own",
                        f"use a name other than {', '.join(RESERVED_VOLUMES)}")
            if len(volume) != 2:
                invalid("volumes", f"volume '{name}' needs exactly one source (secret, "
                        "configMap, emptyDir, ...) besides its name")
            names.append(name)
        if len(names) != len(set(names)):
            invalid("volumes", f"volume names must be unique, got {names}")
        for mount in self.volume_mounts:
            if mount.name not in names:
                invalid("volumeMounts", f"volumeMount '{mount.name}' names no volume under "
                        "dex.volumes", "add the volume, or fix the name")

    def _check_autoscaling(self) -> None:
        auto = self.autoscaling
        if not auto.enabled:
            return
        for target, resource in ((auto.target_cpu_utilization_percentage, "cpu"),
                                 (auto.target_memory_utilization_percentage, "memory")):
            if target is not None and resource not in self.resources.requests:
                invalid("autoscaling", f"a {resource} utilization target needs a {resource} "
                        "request: utilization is measured against it",
                        f"set dex.resources.requests.{resource}")

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling.enabled else self.replicas

    @property
    def min_replicas(self) -> int:
        return self.autoscaling.min_replicas if self.autoscaling.enabled else self.replicas

    @property
    def version(self) -> tuple[int, int, int] | None:
        """The Dex release ``image`` names (see :func:`dex_image_version`)."""
        return dex_image_version(self.image)


def env_prefix(connector_id: str) -> str:
    """``github`` -> ``GITHUB``: the prefix of the environment variables a connector reads."""
    return re.sub(r"[^A-Za-z0-9]", "_", connector_id).upper()


class GitHubOrg(Model, frozen=True):
    name: str
    teams: list[str] = msgspec.field(default_factory=list)


def _needs_secret(name: str | None, what: str) -> None:
    if not name:
        invalid("credentialsSecret", f"the {what} connector needs a credential source",
                "name a Secret with keys client-id and client-secret in credentialsSecret "
                "(the guide's 'github-client')")


class GitHubConnector(Tagged, frozen=True, tag_field="type", tag="github"):
    """The guide's connector: OAuth app credentials from the ``github-client`` secret."""

    id: str = "github"
    name: str = "GitHub"
    # Secret with keys client-id and client-secret, exactly as the guide creates it.
    credentials_secret: str | None = "github-client"
    orgs: list[GitHubOrg] = msgspec.field(default_factory=list)
    load_all_groups: bool = False
    team_name_field: Literal["name", "slug", "both"] = "slug"
    use_login_as_id: bool = msgspec.field(default=False, name="useLoginAsID")

    def __post_init__(self) -> None:
        _needs_secret(self.credentials_secret, "GitHub")


class LDAPUserSearch(Model, frozen=True):
    base_dn: str = msgspec.field(name="baseDN")
    filter: str = "(objectClass=person)"
    username: str = "mail"
    id_attr: str = "DN"
    email_attr: str = "mail"
    name_attr: str = "cn"
    preferred_username_attr: str | None = None


class LDAPUserMatcher(Model, frozen=True):
    user_attr: str = "DN"
    group_attr: str = "member"


class LDAPGroupSearch(Model, frozen=True):
    base_dn: str = msgspec.field(name="baseDN")
    filter: str = "(objectClass=groupOfNames)"
    user_matchers: list[LDAPUserMatcher] = msgspec.field(
        default_factory=lambda: [LDAPUserMatcher()])
    name_attr: str = "cn"


class LDAPConnector(Tagged, frozen=True, tag_field="type", tag="ldap"):
    id: str = "ldap"
    name: str = "LDAP"
    host: str = "ldap.example.com:636"
    # Dex's own spellings, so that keys copied from Dex's docs work as they are.
    insecure_no_ssl: bool = msgspec.field(default=False, name="insecureNoSSL")
    start_tls: bool = msgspec.field(default=False, name="startTLS")
    # CA of the LDAP server: a PEM file in the project, mounted into Dex.
    root_ca: str | None = msgspec.field(default=None, name="rootCA")
    bind_dn: str | None = msgspec.field(default="cn=admin,dc=example,dc=org", name="bindDN")
    # Secret holding the bind password under key 'password'; read as $<ID>_BIND_PASSWORD.
    bind_password_secret: str | None = "ldap-bind"
    user_search: LDAPUserSearch = msgspec.field(
        default_factory=lambda: LDAPUserSearch(base_dn="ou=People,dc=example,dc=org"))
    group_search: LDAPGroupSearch | None = msgspec.field(
        default_factory=lambda: LDAPGroupSearch(base_dn="ou=Groups,dc=example,dc=org"))

    def __post_init__(self) -> None:
        if self.insecure_no_ssl and self.start_tls:
            invalid("startTLS", "insecureNoSSL and startTLS cannot both be true")


class TokenExchangeSettings(Model, frozen=True):
    """An ``oidc`` connector that takes the ID tokens of CI jobs (GitHub Actions, GitLab...) by
    RFC 8693 token exchange, and what of their claims the API server gets.

    Dex (v2.45.1 and its main branch alike) verifies the subject token's signature, issuer and
    expiry against the connector's issuer, but not its audience (connector/oidc/oidc.go verifies
    it with SkipClientIDCheck): ``audience`` is what dexkit asks the CI system for and refuses
    anything else before sending it. The username carries the CI system's own identity (GitHub's
    ``sub`` names the repository and the ref), so RBAC, not the audience, is the boundary.
    """

    # The aud of the subject tokens: what a job asks its issuer for (GitHub: ?audience=).
    audience: str
    # The job's claim that becomes the Kubernetes username (Dex's name and email claims).
    username_claim: str = "sub"
    # Claims that each become a group '<claim>:<value>' (repository -> repository:org/app).
    group_claims: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.audience.strip():
            invalid("audience", "the audience of the CI jobs' tokens must not be empty",
                    "use the value the jobs ask their issuer for, e.g. the issuer URL of Dex")
        for claim in [self.username_claim, *self.group_claims]:
            if not re.fullmatch(r"[A-Za-z0-9_.:-]+", claim):
                invalid("groupClaims" if claim in self.group_claims else "usernameClaim",
                        f"'{claim}' is not a claim name")


class OIDCConnector(Tagged, frozen=True, tag_field="type", tag="oidc"):
    """Dex federating to an upstream OpenID Connect provider."""

    id: str = "oidc"
    name: str = "Upstream OIDC"
    issuer: str = "https://accounts.example.com"
    # Secret with keys client-id and client-secret; read as $<ID>_CLIENT_ID/_SECRET. Unset: the
    # 'oidc-client' Secret, or none for a connector that only takes token exchanges.
    credentials_secret: str | msgspec.UnsetType | None = msgspec.UNSET
    scopes: list[str] = msgspec.field(
        default_factory=lambda: ["openid", "profile", "email", "groups"])
    insecure_enable_groups: bool = True
    insecure_skip_email_verified: bool = False
    get_user_info: bool = False
    user_name_key: str | None = None
    root_ca: str | None = msgspec.field(default=None, name="rootCA")
    token_exchange: TokenExchangeSettings | None = None

    def __post_init__(self) -> None:
        _checked("issuer", check_issuer, self.issuer)
        if self.credentials_secret is msgspec.UNSET:
            force_setattr(self, "credentials_secret",
                          None if self.token_exchange is not None else "oidc-client")
        if self.token_exchange is None:
            _needs_secret(self.credentials, "OIDC")

    @property
    def credentials(self) -> str | None:
        """The Secret with the connector's client ID and secret (None: exchange only)."""
        return self.credentials_secret if isinstance(self.credentials_secret, str) else None


class MockConnector(Tagged, frozen=True, tag_field="type", tag="mockCallback"):
    """Dex's mockCallback: logs everyone in as Kilgore Trout. For tests only."""

    id: str = "mock"
    name: str = "Mock"


Connector: TypeAlias = GitHubConnector | LDAPConnector | OIDCConnector | MockConnector
CONNECTOR_TYPES = ("github", "ldap", "oidc", "mockCallback")


class StaticUser(Model, frozen=True):
    """A user of Dex's local password DB. Only the bcrypt hash lives in the config."""

    email: str
    username: str
    user_id: str = msgspec.field(name="userID")
    hash: str
    groups: list[str] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", self.email):
            invalid("email", f"'{self.email}' is not an email address")
        if not re.fullmatch(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}", self.hash):
            invalid("hash", "hash must be a bcrypt hash ($2y$10$…), never a plaintext password",
                    "let 'dexkit init --connector static' generate the user, or hash with "
                    "htpasswd -bnBC 10 '' PASSWORD")


def check_redirect_uri(uri: str) -> str:
    """Absolute, no fragment; plain http only for loopback (RFC 8252), as Dex allows; or the
    out-of-band URI of the keyboard flow."""
    if uri in ("urn:ietf:wg:oauth:2.0:oob", "/device/callback"):  # Dex's keyboard and device
        return uri
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"redirect URI '{uri}' must be an absolute http(s) URL")
    if parts.fragment:
        raise ValueError(f"redirect URI '{uri}' must not have a fragment")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        raise ValueError(f"redirect URI '{uri}' uses plain http on a non-loopback host")
    return uri


def loopback_redirect_uris() -> list[str]:
    return [f"http://{host}:{port}/callback" for port in LOOPBACK_PORTS
            for host in ("127.0.0.1", "localhost")]


class ClientCredentialsSettings(Model, frozen=True):
    """What Dex puts into a client_credentials token besides the client's own name."""

    # The token's groups claim (Dex's clientCredentialsClaims.groups).
    groups: list[str] = msgspec.field(default_factory=list)


class OAuthClient(Model, frozen=True):
    """A Dex static client. The API server trusts exactly one of them (apiServer.clientID)."""

    id: str
    name: str = ""
    # A CLI cannot keep a secret: public clients use PKCE, like kubelogin with Dex.
    public: bool = True
    # For confidential clients: a Secret with key 'client-secret', read via Dex's secretEnv.
    secret_name: str | None = None
    redirect_uris: list[str] = msgspec.field(default_factory=loopback_redirect_uris,
                                             name="redirectURIs")
    # A robot: the client logs in as itself with the client_credentials grant (Dex 2.46+).
    client_credentials: ClientCredentialsSettings | None = None

    def __post_init__(self) -> None:
        for uri in self.redirect_uris:
            _checked("redirectURIs", check_redirect_uri, uri, "use https, or a loopback "
                     "address (127.0.0.1, localhost) for plain http")
        if not self.public and not self.secret_name:
            invalid("secretName", f"client '{self.id}' is not public, so it needs a secretName")
        if self.client_credentials is not None and self.public:
            invalid("clientCredentials", f"client '{self.id}' is public: the client_credentials "
                    "grant needs a client that keeps a secret (Dex refuses public clients)",
                    "set public: false and secretName: a Secret with key client-secret")


# Dex serves the client_credentials grant from its main branch after v2.45.1 (server/grants/
# clientcredentials.go at ab64ed778070), i.e. the release after 2.45: 2.46.0.
CLIENT_CREDENTIALS_SINCE = (2, 46, 0)


def default_clients() -> list[OAuthClient]:
    return [OAuthClient(id=DEFAULT_CLIENT_ID, name="Kubernetes")]
