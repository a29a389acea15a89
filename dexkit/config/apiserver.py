"""The API server's side of dexkit.yaml: how it validates Dex's tokens (the --oidc-* flags or
the AuthenticationConfiguration), its claim and user rules, several clusters trusting one Dex,
EKS and RBAC bindings.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

import msgspec

from dexkit.config.values import (
    _DNS_LABEL,
    _DNS_SUBDOMAIN,
    DEFAULT_CLIENT_ID,
    Model,
    _checked,
    check_issuer,
    invalid,
)

# Where the API server sees a client_credentials token's client: 'client:<id>'.
ROBOT_USERNAME_PREFIX = "client:"
# How the API server is told about Dex: the --oidc-* flags, or an AuthenticationConfiguration.
APIServerMode: TypeAlias = Literal["flags", "authentication-config"]


class ClusterSettings(Model, frozen=True, omit_defaults=True):
    """One API server of several that trust the same Dex, each with its own audience."""

    name: str
    # The audience this cluster's API server accepts (a Dex client dexkit renders for it).
    client_id: str = msgspec.field(name="clientID")
    # Default: apiServer.mode.
    mode: APIServerMode | None = None
    # The API server's URL and CA file (project-relative or absolute), for 'dexkit kubeconfig'.
    server: str | None = None
    certificate_authority: str | None = None
    # The client people log in through for this cluster (default: apiServer.clientID).
    login_client_id: str | None = msgspec.field(default=None, name="loginClientID")

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.name):
            invalid("name", f"cluster name '{self.name}' is not a DNS label",
                    "use lower-case letters, digits and '-' (it names files and contexts)")
        if not self.client_id.strip():
            invalid("clientID", f"cluster '{self.name}' needs a clientID (its audience)")
        if self.server is not None:
            parts = urlsplit(self.server)
            if parts.scheme != "https" or not parts.hostname:
                invalid("server", f"server '{self.server}' is not an https URL",
                        "the API server's URL, e.g. https://dev.example.com:6443")


SigningAlg: TypeAlias = Literal["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]


class ClaimValidationRule(Model, frozen=True, omit_defaults=True):
    """A rule on the token's claims: ``claim``/``requiredValue``, or a CEL ``expression`` with
    the ``message`` the API server logs when it fails."""

    claim: str | None = None
    required_value: str | None = None
    expression: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if (self.claim is None) == (self.expression is None):
            invalid("expression", "a claim validation rule needs exactly one of 'claim' or "
                    "'expression'")
        if self.claim is not None and self.message is not None:
            invalid("message", "message goes with an expression; a claim rule has none")
        if self.expression is not None and self.required_value is not None:
            invalid("requiredValue", "requiredValue goes with a claim, not an expression")


class UserValidationRule(Model, frozen=True, omit_defaults=True):
    """A CEL rule on the user the API server built (``user.username``, ``user.groups``...)."""

    expression: str
    message: str | None = None


def default_user_validation_rules() -> list[UserValidationRule]:
    # Kubernetes' own components are system:...; no token from Dex may pass for one of them.
    return [
        UserValidationRule(expression="!user.username.startsWith('system:')",
                           message="username must not start with the reserved prefix system:"),
        UserValidationRule(expression="user.groups.all(g, !g.startsWith('system:'))",
                           message="groups must not start with the reserved prefix system:"),
    ]


class ExtraMapping(Model, frozen=True):
    """``user.extra[key]`` from a CEL expression over the claims."""

    key: str
    value_expression: str

    def __post_init__(self) -> None:
        domain, _, path = self.key.partition("/")
        if self.key != self.key.lower() or not path or not _DNS_SUBDOMAIN.match(domain):
            invalid("key", f"extra key '{self.key}' must be a lower-case domain-prefixed path, "
                    "e.g. example.com/tenant")
        if any(domain == d or domain.endswith("." + d) for d in ("k8s.io", "kubernetes.io")):
            invalid("key", f"extra key '{self.key}': k8s.io and kubernetes.io are reserved")


class AnonymousCondition(Model, frozen=True):
    path: str


class AnonymousSettings(Model, frozen=True):
    """The AuthenticationConfiguration's ``anonymous`` (Kubernetes 1.32+); --anonymous-auth must
    then not be set."""

    enabled: bool
    conditions: list[AnonymousCondition] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if self.conditions and not self.enabled:
            invalid("conditions", "conditions need enabled: true")


class APIServerSettings(Model, frozen=True):
    """How the kube-apiserver validates Dex's ID tokens."""

    mode: APIServerMode = "flags"
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
    # --- authentication-config mode only (the --oidc-* flags cannot express these) ---------
    # Audiences accepted besides clientID (audienceMatchPolicy MatchAny).
    audiences: list[str] = msgspec.field(default_factory=list)
    audience_match_policy: Literal["MatchAny"] | None = None
    # Where the API server fetches discovery when it differs from the issuer (in-cluster URL).
    discovery_url: str | None = msgspec.field(default=None, name="discoveryURL")
    # CEL instead of a claim and prefix, e.g. "'oidc:' + claims.email".
    username_expression: str | None = None
    groups_expression: str | None = None
    uid_claim: str | None = None
    uid_expression: str | None = None
    extra: list[ExtraMapping] = msgspec.field(default_factory=list)
    claim_validation_rules: list[ClaimValidationRule] = msgspec.field(default_factory=list)
    # None: dexkit's default (refuse system: usernames and groups); [] for none.
    user_validation_rules: list[UserValidationRule] | None = None
    # More jwt authenticators for the same file, in the AuthenticationConfiguration's shape.
    extra_jwt: list[dict[str, Any]] = msgspec.field(default_factory=list, name="extraJWT")
    anonymous: AnonymousSettings | None = None

    def __post_init__(self) -> None:
        for key, value in (("caFile", self.ca_file),
                           ("authenticationConfigFile", self.authentication_config_file)):
            if not value.startswith("/"):
                invalid(key, f"'{value}' must be an absolute path on the API-server node")
        self._check_mappings()
        if self.mode == "flags":
            self._check_flags_mode()
            _check_flag_claims(self.required_claims)

    def _check_mappings(self) -> None:
        if self.username_expression is not None and self.username_prefix is not None:
            invalid("usernamePrefix", "usernamePrefix cannot be combined with "
                    "usernameExpression", "put the prefix into the expression")
        if self.uid_claim is not None and self.uid_expression is not None:
            invalid("uidExpression", "set uidClaim or uidExpression, not both")
        if self.audience_match_policy is not None and not self.audiences:
            invalid("audienceMatchPolicy", "audienceMatchPolicy needs more than one audience",
                    "add apiServer.audiences, or drop audienceMatchPolicy")
        auds = [self.client_id, *self.audiences]
        if len(auds) != len(set(auds)) or "" in auds:
            invalid("audiences", f"audiences must be unique and non-empty, got {auds}")
        keys = [e.key for e in self.extra]
        if len(keys) != len(set(keys)):
            invalid("extra", f"extra keys must be unique, got {keys}")
        if self.discovery_url is not None:
            _checked("discoveryURL", check_issuer, self.discovery_url)
        for entry in self.extra_jwt:
            _check_jwt_entry(entry)

    def structured_only(self, *, effective: bool = False) -> list[str]:
        """The settings in use that only the AuthenticationConfiguration can express (with
        ``effective``, dexkit's default userValidationRules count as in use)."""
        user_rules = self.effective_user_rules if effective else self.user_validation_rules
        return [name for name, value in (
            ("audiences", self.audiences), ("discoveryURL", self.discovery_url),
            ("usernameExpression", self.username_expression),
            ("groupsExpression", self.groups_expression), ("uidClaim", self.uid_claim),
            ("uidExpression", self.uid_expression), ("extra", self.extra),
            ("claimValidationRules", self.claim_validation_rules),
            ("userValidationRules", user_rules),
            ("extraJWT", self.extra_jwt), ("anonymous", self.anonymous)) if value]

    def _check_flags_mode(self) -> None:
        used = self.structured_only()
        if used:
            invalid(used[0], f"apiServer.{used[0]} needs the AuthenticationConfiguration: the "
                    "--oidc-* flags cannot express it", "set apiServer.mode: "
                    "authentication-config (Kubernetes 1.30 and later)")

    @property
    def effective_user_rules(self) -> list[UserValidationRule]:
        if self.user_validation_rules is None:
            return default_user_validation_rules() if self.mode == "authentication-config" \
                else []
        return self.user_validation_rules


def _check_jwt_entry(entry: dict[str, Any]) -> None:
    """The minimum the API server needs of another jwt authenticator, as readable errors."""
    issuer = entry.get("issuer")
    if not isinstance(issuer, dict) or not isinstance(issuer.get("url"), str):
        invalid("extraJWT", "every extraJWT entry needs issuer.url")
    _checked("extraJWT", check_issuer, issuer["url"])
    audiences = issuer.get("audiences")
    if not isinstance(audiences, list) or not audiences:
        invalid("extraJWT", f"extraJWT issuer {issuer['url']}: issuer.audiences needs at least "
                "one audience")
    mappings = entry.get("claimMappings")
    if not isinstance(mappings, dict) or "username" not in mappings:
        invalid("extraJWT", f"extraJWT issuer {issuer['url']}: claimMappings.username is "
                "required")
    unknown = set(entry) - {"issuer", "claimValidationRules", "claimMappings",
                            "userValidationRules"}
    if unknown:
        invalid("extraJWT", f"extraJWT issuer {issuer['url']}: unknown key "
                f"'{sorted(unknown)[0]}'")


class EKSSettings(Model, frozen=True):
    """For ``dexkit render --format eks|eksctl``: EKS's identity provider config."""

    cluster_name: str | None = None
    region: str | None = None
    identity_provider_config_name: str = "dex"
    tags: dict[str, str] = msgspec.field(default_factory=dict)


def _check_flag_claims(claims: dict[str, str]) -> None:
    """--oidc-required-claim is a map flag: pairs split at ',' and each at its first '='."""
    for key, value in claims.items():
        if not key or any(ch in key for ch in ",=") or "," in value:
            invalid("requiredClaims", f"'{key}: {value}' cannot be passed as the "
                    "--oidc-required-claim flag",
                    "claim names may not be empty or contain ',' or '=', values may not contain "
                    "','; or use apiServer.mode: authentication-config")


class RBACBinding(Model, frozen=True):
    """Bind an OIDC group or user to a ClusterRole so that a verified user can act."""

    cluster_role: str
    group: str | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if (self.group is None) == (self.user is None):
            invalid("clusterRole", "an rbac entry needs exactly one of 'group' or 'user'")
