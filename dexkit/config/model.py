"""``Config``, the whole of dexkit.yaml, with the checks that span its sections and the values
every renderer derives from it.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any

import msgspec
from msgspec.structs import force_setattr

from dexkit.config.apiserver import (
    ROBOT_USERNAME_PREFIX,
    APIServerSettings,
    ClusterSettings,
    EKSSettings,
    RBACBinding,
)
from dexkit.config.dex import (
    CLIENT_CREDENTIALS_SINCE,
    DEX_CONFIG_KEYS,
    Connector,
    DexSettings,
    GitHubConnector,
    KubernetesStorage,
    LDAPConnector,
    OAuthClient,
    StaticUser,
    TLSSettings,
    default_clients,
)
from dexkit.config.values import (
    _DNS_LABEL,
    _DNS_SUBDOMAIN,
    DEFAULT_ISSUER,
    DEFAULT_KUBERNETES_VERSION,
    END_OF_LIFE,
    PROVEN_MINORS,
    SUPPORTED_MINORS,
    Model,
    _checked,
    check_issuer,
    invalid,
    is_ip,
)
from dexkit.errors import UsageError
from dexkit.issuer import Issuer, parse_issuer


class Config(Model, frozen=True):
    """The whole of dexkit.yaml."""

    issuer: str = DEFAULT_ISSUER
    namespace: str = "dex"
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    tls: TLSSettings = msgspec.field(default_factory=TLSSettings)
    dex: DexSettings = msgspec.field(default_factory=DexSettings)
    connectors: list[Connector] = msgspec.field(default_factory=lambda: [GitHubConnector()])
    static_users: list[StaticUser] = msgspec.field(default_factory=list)
    clients: list[OAuthClient] = msgspec.field(default_factory=default_clients)
    api_server: APIServerSettings = msgspec.field(default_factory=APIServerSettings)
    rbac: list[RBACBinding] = msgspec.field(default_factory=list)
    eks: EKSSettings = msgspec.field(default_factory=EKSSettings)
    # Several API servers trusting this Dex, each with its own audience; empty: the one API
    # server apiServer describes (apiServer then also holds what they all share).
    clusters: list[ClusterSettings] = msgspec.field(default_factory=list)

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
        _check_cluster_fit(self)

    def _normalise_version(self) -> None:
        match = re.fullmatch(r"v?1\.(\d+)(\.\d+)?", self.kubernetes_version)
        if not match or int(match.group(1)) < SUPPORTED_MINORS.start:
            invalid("kubernetesVersion", f"kubernetesVersion '{self.kubernetes_version}' is not "
                    "supported", f"use a Kubernetes minor from 1.{SUPPORTED_MINORS.start} on, "
                    f"e.g. '{DEFAULT_KUBERNETES_VERSION}'")
        force_setattr(self, "kubernetes_version", f"1.{int(match.group(1))}")

    def _check_consistency(self) -> None:
        host = self.issuer_host
        names = [n.lower() for n in self.tls.hosts] + [str(ipaddress.ip_address(i))
                                                       for i in self.tls.ips]
        canonical = str(ipaddress.ip_address(host)) if is_ip(host) else host.lower()
        if canonical not in names and not _wildcard_covers(self.tls.hosts, canonical):
            invalid("tls", f"the serving certificate would not cover the issuer host '{host}'",
                    "add it to tls.hosts (or tls.ips for an address)")
        audiences = {c.id for c in self.clients} | {c.client_id for c in self.clusters}
        if self.api_server.client_id not in audiences:
            invalid("apiServer", f"apiServer.clientID '{self.api_server.client_id}' is not one "
                    "of the Dex clients", "add it under 'clients' or set apiServer.clientID to "
                    "one of them")
        _check_clusters(self)
        _check_robots(self)
        if not self.connectors and not self.static_users:
            invalid("connectors", "Dex needs at least one connector or static user to log "
                    "anyone in", "add a connector, or run 'dexkit init --connector static'")
        ids = [c.id for c in self.connectors] + (["local"] if self.static_users else [])
        if len(ids) != len(set(ids)):
            invalid("connectors", f"connector ids must be unique, got {ids}")

    # derived values every renderer uses ------------------------------------------------------
    @property
    def configured_minor(self) -> int:
        """The minor of ``kubernetesVersion`` as written (1.38 stays 38)."""
        return int(self.kubernetes_version.split(".")[1])

    @property
    def minor(self) -> int:
        """The minor dexkit renders for: the configured one, or the newest dexkit knows when
        the configured one is newer (a newer API server takes what the newest one takes)."""
        return min(self.configured_minor, SUPPORTED_MINORS[-1])

    @property
    def issuer_parts(self) -> Issuer:
        """The issuer's host, port and path, from the same parse that validated it."""
        return parse_issuer(self.issuer)

    @property
    def issuer_host(self) -> str:
        return self.issuer_parts.host

    @property
    def issuer_port(self) -> int:
        return self.issuer_parts.effective_port

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
    def robot_ids(self) -> tuple[str, ...]:
        """The clients that log in as themselves (client_credentials)."""
        return tuple(c.id for c in self.clients if c.client_credentials is not None)

    @property
    def selected_cluster(self) -> ClusterSettings | None:
        """The cluster this config describes the API server of (see :meth:`for_cluster`)."""
        return next((c for c in self.clusters if c.client_id == self.api_server.client_id),
                    None)

    @property
    def login_client_id(self) -> str:
        """The client people log in through: apiServer.clientID, or for one of several
        clusters the client whose tokens are narrowed to its audience."""
        chosen = self.selected_cluster
        if chosen is not None and chosen.login_client_id:
            return chosen.login_client_id
        return self.api_server.client_id

    def cluster_login_client(self, cluster: ClusterSettings) -> str:
        return cluster.login_client_id or self.login_client_id

    def cluster_named(self, name: str) -> ClusterSettings:
        found = next((c for c in self.clusters if c.name == name), None)
        if found is None:
            names = ", ".join(c.name for c in self.clusters)
            raise UsageError(f"no cluster '{name}' in dexkit.yaml",
                             f"use one of {names}" if names else
                             "dexkit.yaml lists no clusters: drop --cluster")
        return found

    def for_cluster(self, name: str) -> Config:
        """This config as seen by one of its clusters' API servers: apiServer with the
        cluster's audience and mode. Every renderer and check of the API-server side takes
        it as it takes a single-cluster config; Dex's side is the same for every cluster."""
        cluster = self.cluster_named(name)
        clusters = [msgspec.structs.replace(c, login_client_id=self.cluster_login_client(c))
                    for c in self.clusters]
        api = msgspec.structs.replace(self.api_server, client_id=cluster.client_id,
                                      mode=cluster.mode or self.api_server.mode)
        return msgspec.structs.replace(self, api_server=api, clusters=clusters)

    def cluster_configs(self) -> list[tuple[str | None, Config]]:
        """(cluster name, its config) for each API server: one (None, self) without clusters."""
        if not self.clusters:
            return [(None, self)]
        return [(c.name, self.for_cluster(c.name)) for c in self.clusters]

    @property
    def password_connector(self) -> str | None:
        """The connector Dex uses for the password grant: local users first, then LDAP."""
        if self.static_users:
            return "local"
        return next((c.id for c in self.connectors if isinstance(c, LDAPConnector)), None)

    @property
    def effective_username_prefix(self) -> str:
        """The prefix the API server applies, spelled out (AuthenticationConfiguration needs it).

        With a usernameExpression there is none: the expression makes the whole name."""
        if self.api_server.username_expression is not None:
            return ""
        prefix = self.api_server.username_prefix
        if prefix is None:
            return "" if self.api_server.username_claim == "email" else f"{self.issuer}#"
        return "" if prefix == "-" else prefix

    def warnings(self) -> list[str]:
        """Legal but suspicious settings; shown, never fatal."""
        found = version_warnings(self.configured_minor)
        if isinstance(self.dex.storage, KubernetesStorage) and self.dex.version is None:
            found.append(f"dex.image '{self.dex.image}' names no Dex release: Dex's RBAC and "
                         "CRDs are rendered for the newest Dex dexkit knows; pin a release tag "
                         "(e.g. ghcr.io/dexidp/dex:v2.45.1) so that they match what runs")
        service = self.dex.service
        if service.type == "NodePort" and self.issuer_port != service.node_port:
            found.append(
                f"the issuer port {self.issuer_port} differs from the Dex NodePort "
                f"{service.node_port}; fine behind a proxy or port mapping, otherwise the "
                "API server and browsers will not reach Dex at the issuer URL")
        extra_ports = [p for p, on in (("telemetry", service.telemetry or
                                        self.dex.service_monitor.enabled),
                                       ("grpc", self.dex.grpc.enabled)) if on]
        if service.type != "ClusterIP" and extra_ports:
            found.append(
                f"the {service.type} Service also exposes the {' and '.join(extra_ports)} "
                "port(s) outside the cluster (Kubernetes gives every port of the Service a "
                "node port); restrict them with dex.networkPolicy, or use type ClusterIP "
                "behind an Ingress")
        api = self.api_server
        if api.groups_expression is not None and api.groups_claim:
            found.append("apiServer.groupsExpression is used as written: groupsClaim and "
                         f"groupsPrefix ('{api.groups_prefix}') are not applied, so put the "
                         "prefix into the expression, e.g. claims.groups.map(g, 'oidc:' + g)")
        if self.dex.grpc.enabled and not self.dex.network_policy.enabled:
            found.append("dex.grpc is on: the gRPC API can create clients and passwords; it "
                         "accepts only clients with a certificate from the project's CA, but "
                         "consider dex.networkPolicy to limit who reaches it")
        return found


def version_warnings(minor: int) -> list[str]:
    """What a Kubernetes minor outside the proven range means for what is rendered."""
    newest = SUPPORTED_MINORS[-1]
    proven = f"1.{PROVEN_MINORS.start}-1.{PROVEN_MINORS[-1]}"
    if minor in END_OF_LIFE:
        return [f"Kubernetes 1.{minor} reached end of life on {END_OF_LIFE[minor]}: dexkit "
                f"still renders for it but proves only {proven}; plan the upgrade"]
    if minor > newest:
        return [f"Kubernetes 1.{minor} is newer than dexkit knows (newest: 1.{newest}): "
                f"rendered as for 1.{newest}; check the result against the 1.{minor} "
                "release notes, and upgrade dexkit"]
    return []


# What dexkit renders into Dex's config itself; dex.extraConfig may not say otherwise.
_OWNED_DEX_KEYS: dict[str, str] = {
    "issuer": "set it with 'issuer' (dexkit renders it into both sides)",
    "storage": "set it with dex.storage",
    "web.http": "Dex serves HTTPS only, on the port the Service and probes use",
    "web.https": "Dex serves HTTPS on the port the Service and probes use",
    "web.tlsCert": "the serving certificate comes from tls (ssl/cert.pem)",
    "web.tlsKey": "the serving certificate comes from tls (ssl/key.pem)",
    "telemetry.http": "the probes and the ServiceMonitor use the telemetry port dexkit sets",
    "grpc": "set it with dex.grpc",
    "logger.level": "set it with dex.logLevel",
    "expiry.idTokens": "set it with dex.idTokenLifetime",
    "enablePasswordDB": "it follows staticUsers",
    "staticPasswords": "use staticUsers (bcrypt hashes, passwords kept out of the file)",
}


def check_extra_config(config: Config) -> None:
    """dex.extraConfig may add to Dex's config, never contradict what dexkit renders.

    Rules: top-level keys are Dex's own; the owned paths above are refused; ``connectors`` and
    ``staticClients`` are appended, so an id dexkit already uses (above all the client the API
    server trusts) is refused; ``oauth2.passwordConnector`` may not differ from dexkit's.
    """
    extra = config.dex.extra_config
    for key, value in extra.items():
        if key not in DEX_CONFIG_KEYS:
            match = difflib.get_close_matches(key, DEX_CONFIG_KEYS, n=1, cutoff=0.6)
            invalid(("dex", "extraConfig", key), f"'{key}' is not a key of Dex's config",
                    f"did you mean '{match[0]}'?" if match else
                    f"Dex's keys: {', '.join(DEX_CONFIG_KEYS)}")
        if key in _OWNED_DEX_KEYS:
            invalid(("dex", "extraConfig", key), f"extraConfig.{key} is rendered by dexkit",
                    _OWNED_DEX_KEYS[key])
        if isinstance(value, dict):
            for sub in value:
                path = f"{key}.{sub}"
                if path in _OWNED_DEX_KEYS:
                    invalid(("dex", "extraConfig", key, sub), f"extraConfig.{path} is rendered by "
                            "dexkit", _OWNED_DEX_KEYS[path])
        elif key in ("web", "telemetry", "oauth2", "expiry", "logger", "frontend", "signer"):
            invalid(("dex", "extraConfig", key), f"extraConfig.{key} must be a mapping")
    _check_extra_list(extra, "connectors", [c.id for c in config.connectors] +
                      (["local"] if config.static_users else []), "connectors")
    _check_extra_list(extra, "staticClients", [c.id for c in config.clients] +
                      [c.client_id for c in config.clusters], "clients")
    wanted = (extra.get("oauth2") or {}).get("passwordConnector")
    if wanted is not None and config.password_connector not in (None, wanted):
        invalid(("dex", "extraConfig", "oauth2", "passwordConnector"),
                f"dexkit already uses '{config.password_connector}' for the password grant",
                "drop oauth2.passwordConnector from extraConfig")


def _check_extra_list(extra: dict[str, Any], key: str, taken: list[str], owner: str) -> None:
    entries = extra.get(key)
    if entries is None:
        return
    if not isinstance(entries, list):
        invalid(("dex", "extraConfig", key), f"extraConfig.{key} must be a list")
    for index, entry in enumerate(entries):
        ident = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(ident, str) or not ident:
            invalid(("dex", "extraConfig", key, index),
                    f"every extraConfig.{key} entry needs an id")
        if ident in taken:
            invalid(("dex", "extraConfig", key, index),
                    f"'{ident}' is already one of dexkit's {owner}",
                    f"change it under '{owner}' instead, or give this entry another id")
        taken = [*taken, ident]


def _check_cluster_fit(config: Config) -> None:
    """Checks across sections for the chart's knobs and the AuthenticationConfiguration."""
    check_extra_config(config)
    ingress = config.dex.ingress
    host = config.issuer_host.lower()
    if ingress.enabled and ingress.hosts and not is_ip(host) and \
            host not in [h.host.lower() for h in ingress.hosts]:
        invalid(("dex", "ingress", "hosts"), f"no ingress host serves the issuer's host '{host}'",
                "add it to dex.ingress.hosts (the issuer must be reachable at its own URL)")
    urls = [config.issuer] + [str(e["issuer"]["url"]) for e in config.api_server.extra_jwt]
    if len(urls) != len(set(urls)):
        invalid(("apiServer", "extraJWT"), f"an extraJWT issuer is already in the file: {urls} "
                "(the API server wants each issuer URL once)", "remove the duplicate")
    if config.api_server.anonymous is not None and config.minor < 32:
        invalid(("apiServer", "anonymous"), "anonymous in the AuthenticationConfiguration needs "
                "Kubernetes 1.32 or later", "raise kubernetesVersion or drop apiServer.anonymous")
    if config.api_server.mode == "authentication-config" and \
            config.api_server.uid_claim is None and config.api_server.uid_expression is None \
            and config.api_server.extra:
        invalid(("apiServer", "extra"), "extra mappings need a uid mapping too (the API server "
                "requires claimMappings.uid when extra is set)", "set apiServer.uidClaim: sub")


def _check_clusters(config: Config) -> None:
    """Several API servers, one Dex: distinct names and audiences, each audience a client only
    its cluster accepts, people logging in through a client of their own."""
    clusters = config.clusters
    if not clusters:
        return
    names = [c.name for c in clusters]
    ids = [c.client_id for c in clusters]
    for what, values in (("names", names), ("clientIDs", ids)):
        if len(values) != len(set(values)):
            invalid("clusters", f"cluster {what} must be unique, got {values}")
    clients = {c.id: c for c in config.clients}
    for index, cluster in enumerate(clusters):
        key = ("clusters", index, "clientID")
        if cluster.client_id in clients:
            invalid(key, f"'{cluster.client_id}' is also under 'clients': dexkit renders each "
                    "cluster's client itself (trusting only the login client)",
                    "give the cluster an audience of its own, or remove the client")
        login = config.cluster_login_client(cluster)
        if login in ids:
            invalid(("clusters", index, "loginClientID"), f"cluster '{cluster.name}' would "
                    f"log people in through '{login}', which is a cluster's audience: its "
                    "tokens would carry that audience to every cluster",
                    "log in through a client under 'clients' (apiServer.clientID)")
        if login not in clients:
            invalid(("clusters", index, "loginClientID"), f"cluster '{cluster.name}' logs in "
                    f"through '{login}', which is not under 'clients'", "add the client")
        mode = cluster.mode or config.api_server.mode
        used = config.api_server.structured_only()
        if mode == "flags" and used:
            invalid(("clusters", index, "mode"), f"cluster '{cluster.name}' uses the --oidc-* "
                    f"flags, which cannot express apiServer.{used[0]}",
                    "set its mode: authentication-config")
    if config.api_server.audiences:
        invalid(("apiServer", "audiences"), "apiServer.audiences would make every cluster "
                "accept the same extra audiences", "give each cluster its own clientID instead")


def _check_robots(config: Config) -> None:
    """client_credentials needs a Dex that has it, and an API server that can name a token
    without an email: the AuthenticationConfiguration, where dexkit maps it to 'client:<id>'."""
    robots = [(i, c) for i, c in enumerate(config.clients) if c.client_credentials is not None]
    if not robots:
        return
    index, first = robots[0]
    version = config.dex.version
    if version is not None and version < CLIENT_CREDENTIALS_SINCE:
        shown = ".".join(str(n) for n in version)
        invalid(("clients", index, "clientCredentials"), f"Dex {shown} (dex.image "
                f"{config.dex.image}) has no client_credentials grant: Dex serves it from its "
                "main branch after v2.45.1 (the 2.46 line)", "use a Dex image of 2.46 or "
                "later, e.g. one built from Dex's main branch, or drop clientCredentials")
    modes = [c.mode or config.api_server.mode for c in config.clusters] or \
        [config.api_server.mode]
    if "flags" in modes and config.api_server.username_claim == "email":
        invalid(("clients", index, "clientCredentials"), f"client '{first.id}' logs in as "
                "itself, and its token has no email, the claim the --oidc-* flags name users "
                "by", "set apiServer.mode: authentication-config (and each cluster's mode), "
                f"where dexkit names it '{ROBOT_USERNAME_PREFIX}{first.id}'")


def _wildcard_covers(hosts: list[str], name: str) -> bool:
    return any(h.startswith("*.") and name.split(".", 1)[-1] == h[2:].lower() for h in hosts)


def to_data(value: object) -> Any:
    """The plain (YAML/JSON-ready) form of a config or section, with its camelCase keys."""
    return msgspec.to_builtins(value)


def from_data(data: Any, kind: type[msgspec.Struct] = Config) -> Any:
    return msgspec.convert(data, kind)
