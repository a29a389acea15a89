"""The dexkit.yaml model: defaults from the guide, validation once, one object passed everywhere.

Keys are camelCase in YAML (as in Dex's and Kubernetes' own files) and snake_case in Python.
Validation errors are turned into one line that names the file, the key path and the line, and
suggests the nearest valid key for a typo (see :func:`load_config`).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from dexkit.errors import ConfigError, UsageError

CONFIG_FILE = "dexkit.yaml"
DEFAULT_ISSUER = "https://dex.example.com:32000"
DEFAULT_DEX_IMAGE = "ghcr.io/dexidp/dex:v2.45.1"
DEFAULT_CLIENT_ID = "kubernetes"
# kubelogin's ports: 8000, then 18000 when 8000 is taken (its --listen-address default).
LOOPBACK_PORTS = (8000, 18000)
KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096")
# Kubernetes minors whose API server dexkit renders for (AuthenticationConfiguration from 1.30).
SUPPORTED_MINORS = range(30, 38)

KeyType = Literal["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"]

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class Model(BaseModel):
    """Base for every section: camelCase keys, unknown keys rejected with a suggestion."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        aliases = {f.alias or name for name, f in cls.model_fields.items()}
        for key in data:
            if key not in aliases and key not in cls.model_fields:
                match = difflib.get_close_matches(str(key), sorted(aliases), n=1, cutoff=0.6)
                hint = f"did you mean '{match[0]}'?" if match else _valid_keys_hint(aliases)
                raise PydanticCustomError(
                    "unknown_key",
                    "unknown key '{key}'",
                    {"key": str(key), "hint": hint},
                )
        return data


def _valid_keys_hint(aliases: set[str]) -> str:
    return "valid keys here: " + ", ".join(sorted(aliases))


# --- validators shared by several sections ---------------------------------------------------


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_dns_name(value: str) -> bool:
    """A host name for a certificate SAN: labels of letters, digits and hyphens; ``*.`` first."""
    name = value[2:] if value.startswith("*.") else value
    if not name or len(name) > 253 or is_ip(name):
        return False
    return all(_HOST_LABEL.match(label) for label in name.rstrip(".").split("."))


def check_issuer(value: str) -> SplitResult:
    """The rules the API server and Dex put on an issuer URL, as one readable error each."""
    parts = urlsplit(value)
    if parts.scheme != "https":
        raise ValueError(
            f"issuer must be an https URL, got '{value}' "
            "(the API server accepts only https issuers)"
        )
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"issuer must not have a query or fragment: '{value}'")
    if parts.username or parts.password:
        raise ValueError("issuer must not contain credentials")
    host = parts.hostname or ""
    if not host or not (is_dns_name(host) or is_ip(host)):
        raise ValueError(f"issuer host '{host}' is not a valid DNS name or IP address")
    try:
        parts.port  # noqa: B018 - raises ValueError for an out-of-range port
    except ValueError as exc:
        raise ValueError(f"issuer port is invalid: {exc}") from None
    if parts.path.endswith("/"):
        raise ValueError(
            f"issuer must not end with '/': '{value}' (Dex and the API server compare the "
            "issuer byte for byte, and a trailing slash is the classic mismatch)"
        )
    return parts


def issuer_port(issuer: str) -> int:
    return urlsplit(issuer).port or 443


def issuer_host(issuer: str) -> str:
    return urlsplit(issuer).hostname or ""


# --- sections ---------------------------------------------------------------------------------


class TLSSettings(Model):
    """The serving certificate and its CA (``ssl/`` as in the guide's gencert.sh)."""

    dir: str = "ssl"
    hosts: list[str] = Field(default_factory=list)
    ips: list[str] = Field(default_factory=list)
    key_type: KeyType = "ecdsa-p256"
    ca_days: int = Field(default=3650, ge=1, le=36500)
    cert_days: int = Field(default=365, ge=1, le=3650)

    @field_validator("hosts")
    @classmethod
    def _hosts_are_dns(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not is_dns_name(host):
                hint = " (put IP addresses under 'ips')" if is_ip(host) else ""
                raise ValueError(f"'{host}' is not a valid DNS name{hint}")
        return hosts

    @field_validator("ips")
    @classmethod
    def _ips_are_ips(cls, ips: list[str]) -> list[str]:
        for ip in ips:
            if not is_ip(ip):
                raise ValueError(f"'{ip}' is not a valid IP address")
        return ips


class KubernetesStorage(Model):
    type: Literal["kubernetes"] = "kubernetes"


class MemoryStorage(Model):
    type: Literal["memory"]


class SQLiteStorage(Model):
    type: Literal["sqlite3"]
    file: str = "/var/dex/dex.db"


class PostgresStorage(Model):
    type: Literal["postgres"]
    host: str
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = "dex"
    user: str = "dex"
    password_secret: str = "dex-postgres"
    ssl_mode: Literal["disable", "require", "verify-ca", "verify-full"] = "verify-full"


Storage = Annotated[
    KubernetesStorage | MemoryStorage | SQLiteStorage | PostgresStorage,
    Field(discriminator="type"),
]


class ServiceSettings(Model):
    type: Literal["NodePort", "ClusterIP", "LoadBalancer"] = "NodePort"
    node_port: int = Field(default=32000)
    port: int = Field(default=5556, ge=1, le=65535)

    @field_validator("node_port")
    @classmethod
    def _node_port_in_range(cls, port: int) -> int:
        if not 30000 <= port <= 32767:
            raise ValueError(
                f"nodePort {port} is outside the API server's default NodePort range 30000-32767"
            )
        return port


class IngressSettings(Model):
    enabled: bool = False
    class_name: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


class DexSettings(Model):
    image: str = DEFAULT_DEX_IMAGE
    replicas: int = Field(default=1, ge=1, le=20)
    storage: Storage = Field(default_factory=KubernetesStorage)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    ingress: IngressSettings = Field(default_factory=IngressSettings)
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    # Lifetimes in Dex's duration syntax; the guide keeps Dex's defaults (24h ID tokens).
    id_token_lifetime: str = "24h"


def env_prefix(connector_id: str) -> str:
    """``github`` -> ``GITHUB``: the prefix of the environment variables a connector reads."""
    return re.sub(r"[^A-Za-z0-9]", "_", connector_id).upper()


class GitHubOrg(Model):
    name: str
    teams: list[str] = Field(default_factory=list)


class GitHubConnector(Model):
    """The guide's connector: OAuth app credentials from the ``github-client`` secret."""

    type: Literal["github"]
    id: str = "github"
    name: str = "GitHub"
    # Secret with keys client-id and client-secret, exactly as the guide creates it.
    credentials_secret: str | None = "github-client"
    orgs: list[GitHubOrg] = Field(default_factory=list)
    load_all_groups: bool = False
    team_name_field: Literal["name", "slug", "both"] = "slug"
    use_login_as_id: bool = False

    @field_validator("credentials_secret")
    @classmethod
    def _needs_credentials(cls, value: str | None) -> str | None:
        if not value:
            raise ValueError(
                "the GitHub connector needs a credential source: the name of a Secret with "
                "keys client-id and client-secret (the guide's 'github-client')"
            )
        return value


class LDAPUserSearch(Model):
    base_dn: str = Field(alias="baseDN")
    filter: str = "(objectClass=person)"
    username: str = "mail"
    id_attr: str = "DN"
    email_attr: str = "mail"
    name_attr: str = "cn"
    preferred_username_attr: str | None = None


class LDAPUserMatcher(Model):
    user_attr: str = "DN"
    group_attr: str = "member"


class LDAPGroupSearch(Model):
    base_dn: str = Field(alias="baseDN")
    filter: str = "(objectClass=groupOfNames)"
    user_matchers: list[LDAPUserMatcher] = Field(default_factory=lambda: [LDAPUserMatcher()])
    name_attr: str = "cn"


class LDAPConnector(Model):
    type: Literal["ldap"]
    id: str = "ldap"
    name: str = "LDAP"
    host: str = "ldap.example.com:636"
    insecure_no_ssl: bool = False
    start_tls: bool = False
    # CA of the LDAP server, as a file path inside the Dex pod or a PEM file in the project.
    root_ca: str | None = None
    bind_dn: str | None = Field(default="cn=admin,dc=example,dc=org", alias="bindDN")
    # Secret holding the bind password under key 'password'; read as $<ID>_BIND_PASSWORD.
    bind_password_secret: str | None = "ldap-bind"
    user_search: LDAPUserSearch = Field(
        default_factory=lambda: LDAPUserSearch(baseDN="ou=People,dc=example,dc=org")
    )
    group_search: LDAPGroupSearch | None = Field(
        default_factory=lambda: LDAPGroupSearch(baseDN="ou=Groups,dc=example,dc=org")
    )

    @model_validator(mode="after")
    def _tls_modes(self) -> LDAPConnector:
        if self.insecure_no_ssl and self.start_tls:
            raise ValueError("insecureNoSSL and startTLS cannot both be true")
        return self


class OIDCConnector(Model):
    """Dex federating to an upstream OpenID Connect provider."""

    type: Literal["oidc"]
    id: str = "oidc"
    name: str = "Upstream OIDC"
    issuer: str = "https://accounts.example.com"
    # Secret with keys client-id and client-secret; read as $<ID>_CLIENT_ID/_SECRET.
    credentials_secret: str | None = "oidc-client"
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email", "groups"])
    insecure_enable_groups: bool = True
    insecure_skip_email_verified: bool = False
    get_user_info: bool = False
    user_name_key: str | None = None
    root_ca: str | None = None

    @field_validator("issuer")
    @classmethod
    def _issuer_is_https(cls, value: str) -> str:
        check_issuer(value)
        return value

    @field_validator("credentials_secret")
    @classmethod
    def _needs_credentials(cls, value: str | None) -> str | None:
        if not value:
            raise ValueError(
                "the OIDC connector needs a credential source: a Secret with keys "
                "client-id and client-secret"
            )
        return value


class MockConnector(Model):
    """Dex's mockCallback: logs everyone in as Kilgore Trout. For tests only."""

    type: Literal["mockCallback"]
    id: str = "mock"
    name: str = "Mock"


Connector = Annotated[
    GitHubConnector | LDAPConnector | OIDCConnector | MockConnector,
    Field(discriminator="type"),
]
CONNECTOR_TYPES = ("github", "ldap", "oidc", "mockCallback")


class StaticUser(Model):
    """A user of Dex's local password DB. Only the bcrypt hash lives in the config."""

    email: str
    username: str
    user_id: str = Field(alias="userID")
    hash: str
    groups: list[str] = Field(default_factory=list)

    @field_validator("hash")
    @classmethod
    def _is_bcrypt(cls, value: str) -> str:
        if not re.fullmatch(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}", value):
            raise ValueError(
                "hash must be a bcrypt hash ($2y$10$…), never a plaintext password"
            )
        return value

    @field_validator("email")
    @classmethod
    def _is_email(cls, value: str) -> str:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
            raise ValueError(f"'{value}' is not an email address")
        return value


def check_redirect_uri(uri: str) -> str:
    """Absolute, no fragment; plain http only for loopback (RFC 8252) as Dex itself allows."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"redirect URI '{uri}' must be an absolute http(s) URL")
    if parts.fragment:
        raise ValueError(f"redirect URI '{uri}' must not have a fragment")
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "http" and not loopback:
        raise ValueError(
            f"redirect URI '{uri}' uses plain http on a non-loopback host; use https"
        )
    return uri


def loopback_redirect_uris() -> list[str]:
    return [f"http://{host}:{port}/callback" for port in LOOPBACK_PORTS
            for host in ("127.0.0.1", "localhost")]


class OAuthClient(Model):
    """A Dex static client. The API server trusts exactly one of them (apiServer.clientID)."""

    id: str
    name: str = ""
    # A CLI cannot keep a secret: public clients use PKCE, like kubelogin with Dex.
    public: bool = True
    # For confidential clients: a Secret with key 'client-secret', read via Dex's secretEnv.
    secret_name: str | None = None
    redirect_uris: list[str] = Field(default_factory=loopback_redirect_uris, alias="redirectURIs")

    @field_validator("redirect_uris")
    @classmethod
    def _valid_redirects(cls, uris: list[str]) -> list[str]:
        for uri in uris:
            check_redirect_uri(uri)
        return uris

    @model_validator(mode="after")
    def _confidential_needs_secret(self) -> OAuthClient:
        if not self.public and not self.secret_name:
            raise ValueError(f"client '{self.id}' is not public, so it needs a secretName")
        return self


def default_clients() -> list[OAuthClient]:
    return [OAuthClient(id=DEFAULT_CLIENT_ID, name="Kubernetes")]


class APIServerSettings(Model):
    """How the kube-apiserver validates Dex's ID tokens."""

    mode: Literal["flags", "authentication-config"] = "flags"
    client_id: str = Field(default=DEFAULT_CLIENT_ID, alias="clientID")
    # Where the CA file lives on the API-server node (the guide's openid-ca.pem).
    ca_file: str = "/etc/ssl/certs/openid-ca.pem"
    authentication_config_file: str = "/etc/kubernetes/dexkit/authentication-config.yaml"
    username_claim: str = "email"
    # None: the API server's own rule (no prefix for email, '<issuer>#' otherwise).
    username_prefix: str | None = None
    groups_claim: str = "groups"
    # A prefix keeps an upstream group called system:masters from becoming cluster-admin.
    groups_prefix: str = "oidc:"
    signing_algs: list[Literal["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]] = Field(
        default_factory=lambda: ["RS256"]
    )
    required_claims: dict[str, str] = Field(default_factory=dict)

    @field_validator("ca_file", "authentication_config_file")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"'{value}' must be an absolute path on the API-server node")
        return value


class RBACBinding(Model):
    """Bind an OIDC group or user to a ClusterRole so that a verified user can act."""

    cluster_role: str
    group: str | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> RBACBinding:
        if (self.group is None) == (self.user is None):
            raise ValueError("an rbac entry needs exactly one of 'group' or 'user'")
        return self


class Config(Model):
    """The whole of dexkit.yaml."""

    issuer: str = DEFAULT_ISSUER
    namespace: str = "dex"
    kubernetes_version: str = "1.34"
    tls: TLSSettings = Field(default_factory=TLSSettings)
    dex: DexSettings = Field(default_factory=DexSettings)
    connectors: list[Connector] = Field(
        default_factory=lambda: [GitHubConnector(type="github")]
    )
    static_users: list[StaticUser] = Field(default_factory=list)
    clients: list[OAuthClient] = Field(default_factory=default_clients)
    api_server: APIServerSettings = Field(default_factory=APIServerSettings)
    rbac: list[RBACBinding] = Field(default_factory=list)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        check_issuer(value)
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError(f"namespace '{value}' is not a valid DNS label")
        return value

    @field_validator("kubernetes_version")
    @classmethod
    def _version(cls, value: str) -> str:
        match = re.fullmatch(r"v?1\.(\d+)(\.\d+)?", str(value))
        if not match or int(match.group(1)) not in SUPPORTED_MINORS:
            raise ValueError(
                f"kubernetesVersion '{value}' is not supported; use 1.30 to 1.37"
            )
        return f"1.{match.group(1)}"

    @model_validator(mode="before")
    @classmethod
    def _default_hosts_from_issuer(cls, data: Any) -> Any:
        """An empty tls.hosts and tls.ips mean: the issuer's host."""
        if not isinstance(data, dict):
            return data
        tls = data.get("tls")
        tls = dict(tls) if isinstance(tls, dict) else {} if tls is None else tls
        if isinstance(tls, dict) and not tls.get("hosts") and not tls.get("ips"):
            try:
                host = urlsplit(str(data.get("issuer", DEFAULT_ISSUER))).hostname or ""
            except ValueError:
                host = ""
            if host:
                tls["ips" if is_ip(host) else "hosts"] = [host]
            return {**data, "tls": tls}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        host = issuer_host(self.issuer)
        names = [n.lower() for n in self.tls.hosts] + [str(ipaddress.ip_address(i))
                                                       for i in self.tls.ips]
        canonical = str(ipaddress.ip_address(host)) if is_ip(host) else host.lower()
        if canonical not in names and not _wildcard_covers(self.tls.hosts, canonical):
            raise PydanticCustomError(
                "issuer_not_covered",
                "the serving certificate would not cover the issuer host '{host}'",
                {"host": host, "hint": "add it to tls.hosts (or tls.ips for an address)"},
            )
        if self.api_server.client_id not in {c.id for c in self.clients}:
            raise PydanticCustomError(
                "unknown_client",
                "apiServer.clientID '{client}' is not one of the Dex clients",
                {"client": self.api_server.client_id,
                 "hint": "add it under 'clients' or set apiServer.clientID to one of them"},
            )
        if not self.connectors and not self.static_users:
            raise PydanticCustomError(
                "no_connector",
                "Dex needs at least one connector or static user to log anyone in",
                {"hint": "add a connector, or run 'dexkit init --connector static'"},
            )
        ids = [c.id for c in self.connectors] + (["local"] if self.static_users else [])
        if len(ids) != len(set(ids)):
            raise ValueError(f"connector ids must be unique, got {ids}")
        if self.api_server.mode == "authentication-config" and self.minor < 30:
            raise ValueError("mode authentication-config needs Kubernetes 1.30 or newer")
        return self

    # derived values every renderer uses ------------------------------------------------------
    @property
    def minor(self) -> int:
        return int(self.kubernetes_version.split(".")[1])

    @property
    def issuer_host(self) -> str:
        return issuer_host(self.issuer)

    @property
    def issuer_port(self) -> int:
        return issuer_port(self.issuer)

    @property
    def tls_secret_name(self) -> str:
        """The guide's ``dex.example.com.tls``: named after the first serving host."""
        return f"{(self.tls.hosts or self.tls.ips)[0]}.tls"

    @property
    def trusted_client(self) -> OAuthClient:
        return next(c for c in self.clients if c.id == self.api_server.client_id)

    @property
    def password_connector(self) -> str | None:
        """The connector Dex uses for the password grant: local users first, then LDAP."""
        if self.static_users:
            return "local"
        return next((c.id for c in self.connectors if isinstance(c, LDAPConnector)), None)

    @property
    def effective_username_prefix(self) -> str:
        """The prefix the API server applies, spelled out (AuthenticationConfiguration needs it)."""
        prefix = self.api_server.username_prefix
        if prefix is None:
            return "" if self.api_server.username_claim == "email" else f"{self.issuer}#"
        return "" if prefix == "-" else prefix

    def warnings(self) -> list[str]:
        """Legal but suspicious settings; shown, never fatal."""
        found = []
        service = self.dex.service
        if service.type == "NodePort" and self.issuer_port != service.node_port:
            found.append(
                f"the issuer port {self.issuer_port} differs from the Dex NodePort "
                f"{service.node_port}; fine behind a proxy or port mapping, otherwise the "
                "API server and browsers will not reach Dex at the issuer URL"
            )
        return found


def _wildcard_covers(hosts: list[str], name: str) -> bool:
    return any(h.startswith("*.") and name.split(".", 1)[-1] == h[2:].lower() for h in hosts)


# --- loading with precise error locations ----------------------------------------------------


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def project_dir(self) -> Path:
        return self.path.parent


def config_path(directory: Path) -> Path:
    return directory / CONFIG_FILE


def load_config(directory: Path) -> LoadedConfig:
    """Read and validate ``<directory>/dexkit.yaml``; raise :class:`ConfigError` if it is bad."""
    path = config_path(directory)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"no {CONFIG_FILE} in {directory}",
            f"run 'dexkit init --dir {directory}' first, or pass --dir to the project",
        ) from None
    config = parse_config(text, str(path))
    return LoadedConfig(config=config, path=path, warnings=config.warnings())


def parse_config(text: str, source: str = CONFIG_FILE) -> Config:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}",
                          "fix the YAML syntax (indentation, quotes, colons)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys",
                          "start from 'dexkit init' and edit the file it writes")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, root, source) from None


def validate_values(data: dict[str, Any], what: str = "option") -> Config:
    """Validate a config built from command-line values; errors are usage errors (exit 2)."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message, hint = _message_and_hint(first)
        path = _key_path(first["loc"])
        raise UsageError(f"{what} {path}: {message}" if path else message,
                         hint or "see 'dexkit init --help'") from None


def _config_error(exc: ValidationError, root: yaml.Node | None, source: str) -> ConfigError:
    errors = exc.errors()
    first = errors[0]
    message, hint = _message_and_hint(first)
    path = _key_path(first["loc"])
    line = _line_of(root, first["loc"], first["type"] == "unknown_key", first.get("ctx", {}))
    where = f"{source}:{line}" if line else source
    more = f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} after this one)"
    text = f"{where}: {path}: {message}" if path else f"{where}: {message}"
    return ConfigError(text + (more if len(errors) > 1 else ""),
                       hint or "fix the value and run the command again")


def _message_and_hint(error: Any) -> tuple[str, str]:
    ctx = error.get("ctx") or {}
    message = str(error["msg"]).removeprefix("Value error, ")
    hint = str(ctx.get("hint", ""))
    if error["type"] == "union_tag_invalid":
        tag = ctx.get("tag", "")
        valid = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        match = difflib.get_close_matches(str(tag), valid, n=1, cutoff=0.5)
        message = f"unknown type '{tag}'; dexkit knows {', '.join(valid)}"
        hint = f"did you mean '{match[0]}'?" if match else "use one of the types listed"
    elif error["type"] == "literal_error":
        got = error.get("input")
        expected = ctx.get("expected", "")
        match = difflib.get_close_matches(str(got), re.findall(r"'([^']*)'", str(expected)), n=1)
        message = f"'{got}' is not allowed; expected {expected}"
        hint = f"did you mean '{match[0]}'?" if match else ""
    return message, hint


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in CONNECTOR_TYPES or part in ("kubernetes", "memory", "sqlite3", "postgres"):
            continue  # a discriminated-union tag pydantic adds; not a key in the file
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...], unknown: bool,
             ctx: dict[str, Any]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of the unknown key itself)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    path = list(loc) + ([ctx["key"]] if unknown and "key" in ctx else [])
    for part in path:
        if isinstance(node, yaml.MappingNode):
            child = next(((k, v) for k, v in node.value if k.value == part), None)
            if child is None:
                continue  # a union tag, or a key that was defaulted
            key_node, node = child
            line = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
