"""The dexkit.yaml model: defaults from the guide, validation once, one object passed everywhere.

Keys are camelCase in YAML (as in Dex's and Kubernetes' own files) and snake_case in Python.
Validation errors become one line that names the file, the key path and the line, and suggest
the nearest valid key or value for a typo (see :func:`parse_config`).

The model is made of msgspec Structs rather than pydantic models: the schema is the same kind
of declarative, typed code, but defining it costs microseconds instead of the ~170 ms pydantic
spends building ~25 validators at import, and every dexkit command starts by importing this.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeAlias
from urllib.parse import SplitResult, urlsplit

import msgspec
import yaml
from msgspec import Meta
from msgspec.structs import force_setattr

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

KeyType: TypeAlias = Literal["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"]
Port: TypeAlias = Annotated[int, Meta(ge=1, le=65535)]

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_SEP = "\x1f"  # separates key, message and hint inside a validator's ValueError


def invalid(key: str, message: str, hint: str = "") -> NoReturn:
    """Raise a validation error about ``key`` of the struct being checked, with a hint."""
    raise ValueError(f"{_SEP}{key}{_SEP}{message}{_SEP}{hint}")


class Model(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True,
            kw_only=True):
    """Base of every section: camelCase keys, unknown keys rejected, immutable."""


class Tagged(Model, frozen=True):
    """A member of a tagged union (connectors, storage): ``type`` is its tag in the YAML."""

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


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
        raise ValueError(f"issuer must be an https URL, got '{value}' "
                         "(the API server accepts only https issuers)")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError(f"issuer must not have a query or fragment: '{value}'")
    if parts.username or parts.password:
        raise ValueError("issuer must not contain credentials")
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for an out-of-range port
    except ValueError as exc:
        raise ValueError(f"issuer port is invalid: {exc}") from None
    if not host or not (is_dns_name(host) or is_ip(host)):
        raise ValueError(f"issuer host '{host}' is not a valid DNS name or IP address")
    if parts.path.endswith("/"):
        raise ValueError(f"issuer must not end with '/': '{value}' (Dex and the API server "
                         "compare the issuer byte for byte; a trailing slash is the classic "
                         "mismatch)")
    return parts


def issuer_port(issuer: str) -> int:
    return urlsplit(issuer).port or 443


def issuer_host(issuer: str) -> str:
    return urlsplit(issuer).hostname or ""


def _checked(key: str, check: typing.Callable[[str], object], value: str, hint: str = "") -> None:
    try:
        check(value)
    except ValueError as exc:
        invalid(key, str(exc), hint)


# --- sections ---------------------------------------------------------------------------------


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


class ServiceSettings(Model, frozen=True):
    type: Literal["NodePort", "ClusterIP", "LoadBalancer"] = "NodePort"
    node_port: int = 32000
    port: Port = 5556

    def __post_init__(self) -> None:
        if not 30000 <= self.node_port <= 32767:
            invalid("nodePort", f"nodePort {self.node_port} is outside the API server's default "
                    "NodePort range 30000-32767")


class IngressSettings(Model, frozen=True):
    enabled: bool = False
    class_name: str | None = None
    annotations: dict[str, str] = msgspec.field(default_factory=dict)


class DexSettings(Model, frozen=True):
    image: str = DEFAULT_DEX_IMAGE
    replicas: Annotated[int, Meta(ge=1, le=20)] = 1
    storage: Storage = msgspec.field(default_factory=KubernetesStorage)
    service: ServiceSettings = msgspec.field(default_factory=ServiceSettings)
    ingress: IngressSettings = msgspec.field(default_factory=IngressSettings)
    log_level: Literal["debug", "info", "warn", "error"] = "info"
    # Dex's duration syntax; the guide keeps Dex's default of 24h ID tokens.
    id_token_lifetime: str = "24h"


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


class OIDCConnector(Tagged, frozen=True, tag_field="type", tag="oidc"):
    """Dex federating to an upstream OpenID Connect provider."""

    id: str = "oidc"
    name: str = "Upstream OIDC"
    issuer: str = "https://accounts.example.com"
    # Secret with keys client-id and client-secret; read as $<ID>_CLIENT_ID/_SECRET.
    credentials_secret: str | None = "oidc-client"
    scopes: list[str] = msgspec.field(
        default_factory=lambda: ["openid", "profile", "email", "groups"])
    insecure_enable_groups: bool = True
    insecure_skip_email_verified: bool = False
    get_user_info: bool = False
    user_name_key: str | None = None
    root_ca: str | None = msgspec.field(default=None, name="rootCA")

    def __post_init__(self) -> None:
        _checked("issuer", check_issuer, self.issuer)
        _needs_secret(self.credentials_secret, "OIDC")


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

    def __post_init__(self) -> None:
        for uri in self.redirect_uris:
            _checked("redirectURIs", check_redirect_uri, uri, "use https, or a loopback "
                     "address (127.0.0.1, localhost) for plain http")
        if not self.public and not self.secret_name:
            invalid("secretName", f"client '{self.id}' is not public, so it needs a secretName")


def default_clients() -> list[OAuthClient]:
    return [OAuthClient(id=DEFAULT_CLIENT_ID, name="Kubernetes")]


SigningAlg: TypeAlias = Literal["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]


class APIServerSettings(Model, frozen=True):
    """How the kube-apiserver validates Dex's ID tokens."""

    mode: Literal["flags", "authentication-config"] = "flags"
    client_id: str = msgspec.field(default=DEFAULT_CLIENT_ID, name="clientID")
    # Where the CA file lives on the API-server node (the guide's openid-ca.pem).
    ca_file: str = "/etc/ssl/certs/openid-ca.pem"
    authentication_config_file: str = "/etc/kubernetes/dexkit/authentication-config.yaml"
    username_claim: str = "email"
    # None: the API server's own rule (no prefix for email, '<issuer>#' otherwise).
    username_prefix: str | None = None
    groups_claim: str = "groups"
    # A prefix keeps an upstream group called system:masters from becoming cluster-admin.
    groups_prefix: str = "oidc:"
    signing_algs: list[SigningAlg] = msgspec.field(default_factory=lambda: ["RS256"])
    required_claims: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, value in (("caFile", self.ca_file),
                           ("authenticationConfigFile", self.authentication_config_file)):
            if not value.startswith("/"):
                invalid(key, f"'{value}' must be an absolute path on the API-server node")


class RBACBinding(Model, frozen=True):
    """Bind an OIDC group or user to a ClusterRole so that a verified user can act."""

    cluster_role: str
    group: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if (self.group is None) == (self.user is None):
            invalid("clusterRole", "an rbac entry needs exactly one of 'group' or 'user'")


class Config(Model, frozen=True):
    """The whole of dexkit.yaml."""

    issuer: str = DEFAULT_ISSUER
    namespace: str = "dex"
    kubernetes_version: str = "1.34"
    tls: TLSSettings = msgspec.field(default_factory=TLSSettings)
    dex: DexSettings = msgspec.field(default_factory=DexSettings)
    connectors: list[Connector] = msgspec.field(default_factory=lambda: [GitHubConnector()])
    static_users: list[StaticUser] = msgspec.field(default_factory=list)
    clients: list[OAuthClient] = msgspec.field(default_factory=default_clients)
    api_server: APIServerSettings = msgspec.field(default_factory=APIServerSettings)
    rbac: list[RBACBinding] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _checked("issuer", check_issuer, self.issuer)
        if not _DNS_LABEL.match(self.namespace):
            invalid("namespace", f"namespace '{self.namespace}' is not a valid DNS label")
        self._normalise_version()
        if not self.tls.hosts and not self.tls.ips:
            # Empty names mean: the issuer's host, as a DNS name or an IP address.
            host = self.issuer_host
            tls = msgspec.structs.replace(self.tls, **{"ips" if is_ip(host) else "hosts": [host]})
            force_setattr(self, "tls", tls)
        self._check_consistency()

    def _normalise_version(self) -> None:
        match = re.fullmatch(r"v?1\.(\d+)(\.\d+)?", self.kubernetes_version)
        if not match or int(match.group(1)) not in SUPPORTED_MINORS:
            invalid("kubernetesVersion", f"kubernetesVersion '{self.kubernetes_version}' is not "
                    "supported", "use a Kubernetes minor from 1.30 to 1.37, e.g. '1.34'")
        force_setattr(self, "kubernetes_version", f"1.{match.group(1)}")

    def _check_consistency(self) -> None:
        host = self.issuer_host
        names = [n.lower() for n in self.tls.hosts] + [str(ipaddress.ip_address(i))
                                                       for i in self.tls.ips]
        canonical = str(ipaddress.ip_address(host)) if is_ip(host) else host.lower()
        if canonical not in names and not _wildcard_covers(self.tls.hosts, canonical):
            invalid("tls", f"the serving certificate would not cover the issuer host '{host}'",
                    "add it to tls.hosts (or tls.ips for an address)")
        if self.api_server.client_id not in {c.id for c in self.clients}:
            invalid("apiServer", f"apiServer.clientID '{self.api_server.client_id}' is not one "
                    "of the Dex clients", "add it under 'clients' or set apiServer.clientID to "
                    "one of them")
        if not self.connectors and not self.static_users:
            invalid("connectors", "Dex needs at least one connector or static user to log "
                    "anyone in", "add a connector, or run 'dexkit init --connector static'")
        ids = [c.id for c in self.connectors] + (["local"] if self.static_users else [])
        if len(ids) != len(set(ids)):
            invalid("connectors", f"connector ids must be unique, got {ids}")

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
        """The guide's ``dex.example.com.tls``, named after the first serving host, as a valid
        Secret name: lower case, and an IPv6 address or a wildcard spelled with hyphens."""
        name = f"{(self.tls.hosts or self.tls.ips)[0]}.tls".lower()
        if _DNS_SUBDOMAIN.match(name) and len(name) <= 253:
            return name
        host = name.removesuffix(".tls")
        if is_ip(host):
            host = "ip-" + ipaddress.ip_address(host).exploded.replace(":", "-")
        return re.sub(r"[^a-z0-9.-]", "-", host.replace("*", "wildcard")).strip("-.") + ".tls"

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
                "API server and browsers will not reach Dex at the issuer URL")
        return found


def _wildcard_covers(hosts: list[str], name: str) -> bool:
    return any(h.startswith("*.") and name.split(".", 1)[-1] == h[2:].lower() for h in hosts)


def to_data(value: msgspec.Struct) -> Any:
    """The plain (YAML/JSON-ready) form of a config or section, with its camelCase keys."""
    return msgspec.to_builtins(value)


def from_data(data: Any, kind: type[msgspec.Struct] = Config) -> Any:
    return msgspec.convert(data, kind)


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
        raise ConfigError(f"no {CONFIG_FILE} in {directory}",
                          f"run 'dexkit init --dir {directory}' first, or pass --dir to the "
                          "project") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory", "move it away and run 'dexkit init'") from None
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
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys",
                          "start from 'dexkit init' and edit the file it writes")
    try:
        config: Config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        problem = describe_error(str(exc), data)
        line = _line_of(root, problem.line_path)
        where = f"{source}:{line}" if line else source
        key = _key_path(problem.path)
        raise ConfigError(f"{where}: {key}: {problem.message}" if key
                          else f"{where}: {problem.message}",
                          problem.hint or "fix the value and run the command again") from None
    return config


def validate_values(data: dict[str, Any]) -> Config:
    """Validate a config built from command-line values; errors are usage errors (exit 2)."""
    try:
        config: Config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        problem = describe_error(str(exc), data)
        key = _key_path(problem.path)
        raise UsageError(f"{key}: {problem.message}" if key else problem.message,
                         problem.hint or "see 'dexkit init --help'") from None
    return config


@dataclass(frozen=True)
class Problem:
    path: list[str | int]
    message: str
    hint: str = ""
    # An unknown key: not part of the path shown, but where the line number points.
    unknown_key: str | None = None

    @property
    def line_path(self) -> list[str | int]:
        return self.path + ([self.unknown_key] if self.unknown_key else [])


_LOCATION = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def describe_error(text: str, data: Any) -> Problem:
    """Turn msgspec's error text into a key path, a sentence and a hint for the user."""
    match = _LOCATION.match(text)
    assert match is not None  # the pattern matches any text
    message, path = match.group("msg"), _parse_path(match.group("path") or "")
    if message.startswith(_SEP):
        key, message, hint = message[1:].split(_SEP, 2)
        return Problem([*path, key], message, hint)
    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", message)
    if unknown:
        return _unknown_key(path, unknown.group(1), data)
    enum = re.fullmatch(r"Invalid (?:enum )?value '?(.*?)'?", message)
    if enum:
        return _bad_choice(path, enum.group(1), data)
    return Problem(path, _plain(message))


def _unknown_key(path: list[str | int], key: str, data: Any) -> Problem:
    kind = _type_at(path, data)
    names = sorted(f.encode_name for f in msgspec.structs.fields(kind)) if kind else []
    match = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean '{match[0]}'?" if match else (
        f"valid keys here: {', '.join(names)}" if names else "")
    return Problem(path, f"unknown key '{key}'", hint, unknown_key=key)


def _bad_choice(path: list[str | int], value: str, data: Any) -> Problem:
    parent = _type_at(path[:-1], data)
    choices: list[str] = []
    if path and path[-1] == "type" and parent is None:
        choices = _tags_at(path[:-1], data)
        message = f"unknown type '{value}'; dexkit knows {', '.join(choices)}"
    else:
        hint_type = _field_type(parent, path[-1]) if parent and path else None
        choices = [str(a) for a in typing.get_args(hint_type)] if hint_type else []
        message = f"'{value}' is not allowed; expected one of {', '.join(choices)}"
    match = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return Problem(path, message, f"did you mean '{match[0]}'?" if match else "")


def _plain(message: str) -> str:
    """msgspec's wording, minus the backticks."""
    return message.replace("`", "")


def _parse_path(text: str) -> list[str | int]:
    parts: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", text):
        parts.append(int(index) if index else name)
    return parts


def _hints_of(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind, include_extras=False)


def _field_type(kind: type, encoded: str | int) -> Any:
    for info in msgspec.structs.fields(kind):
        if info.encode_name == encoded:
            return _hints_of(kind)[info.name]
    return None


def _resolve(annotation: Any, value: Any) -> Any:
    """Unwrap Optional/list/union to the Struct class the ``value`` is validated as."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        structs = [a for a in typing.get_args(annotation)
                   if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        tag = value.get("type") if isinstance(value, dict) else None
        for candidate in structs:
            if candidate.__struct_config__.tag == tag or len(structs) == 1:
                return candidate
        return None
    return annotation


def _type_at(path: list[str | int], data: Any) -> type | None:
    """The Struct class that validates the object at ``path`` in ``data``, if any."""
    kind: Any = Config
    value = data
    for part in path:
        if isinstance(part, int):
            if typing.get_origin(kind) is not list:
                return None
            kind = typing.get_args(kind)[0]
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
                return None
            kind = _field_type(kind, part)
            value = value.get(part) if isinstance(value, dict) else None
        kind = _resolve(kind, value)
        if kind is None:
            return None
    return kind if isinstance(kind, type) and issubclass(kind, msgspec.Struct) else None


def _tags_at(path: list[str | int], data: Any) -> list[str]:
    """The tags a tagged union accepts at ``path`` (connector or storage types)."""
    if not path:
        return []
    parent = _type_at(path[:-1], data) if not isinstance(path[-1], int) else None
    annotation = _field_type(parent, path[-1]) if parent else None
    if annotation is None and isinstance(path[-1], int):
        holder = _type_at(path[:-2], data)
        annotation = _field_type(holder, path[-2]) if holder else None
        annotation = typing.get_args(annotation)[0] if annotation else None
    return [str(a.__struct_config__.tag) for a in typing.get_args(annotation)
            if isinstance(a, type) and issubclass(a, msgspec.Struct)]


def _key_path(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _line_of(root: yaml.Node | None, path: list[str | int]) -> int | None:
    """The 1-based line of the deepest YAML node on ``path`` (the key itself when present)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in path:
        if isinstance(node, yaml.MappingNode):
            child = next(((k, v) for k, v in node.value if k.value == part), None)
            if child is None:
                break
            line, node = child[0].start_mark.line + 1, child[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and \
                part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line

