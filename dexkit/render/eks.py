"""Amazon EKS: the identity provider config, from the same dexkit.yaml.

EKS does not let you set API-server flags; it takes an OIDC identity provider config instead,
which it turns into the same ``--oidc-*`` settings. Two shapes of it, from their documentation:

- the AWS CLI's ``aws eks associate-identity-provider-config --cli-input-json``: the
  AssociateIdentityProviderConfig request (Amazon EKS API Reference: ``clusterName``, ``oidc``
  (an OidcIdentityProviderConfigRequest: ``identityProviderConfigName``, ``issuerUrl``,
  ``clientId``, ``usernameClaim``, ``usernamePrefix``, ``groupsClaim``, ``groupsPrefix``,
  ``requiredClaims``), ``tags``);
- eksctl's ClusterConfig ``identityProviders`` (eksctl.io/v1alpha5 OIDCIdentityProvider:
  ``name``, ``type: oidc``, ``issuerURL``, ``clientID``, the same claims and prefixes,
  ``requiredClaims``, ``tags``).

The EKS User Guide ("Grant users access to Kubernetes with an external OIDC provider") sets the
constraints dexkit checks: one OIDC provider per cluster; the issuer must be publicly reachable
over HTTPS so that EKS can fetch its keys, with a certificate EKS trusts (self-signed ones are
refused); a groups prefix may not contain ``system:``. What EKS cannot express (the
AuthenticationConfiguration's CEL rules, extra audiences, uid/extra mappings, signing
algorithms) is named in a warning rather than dropped silently.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from dexkit.config import Config, is_ip
from dexkit.errors import ConfigError

EKSCTL_API_VERSION = "eksctl.io/v1alpha5"
# Suffixes that never resolve on the public internet (RFC 6761, RFC 8375, RFC 2606 and the
# usual private zones).
_PRIVATE_SUFFIXES = (".local", ".localhost", ".internal", ".test", ".example", ".invalid",
                     ".lan", ".home.arpa", ".corp", ".intranet")
_EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org")


@dataclass(frozen=True)
class EKSRender:
    document: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def json(self) -> str:
        return json.dumps(self.document, indent=2) + "\n"

    def yaml(self) -> str:
        return yaml.safe_dump(self.document, sort_keys=False)


def _claims(config: Config) -> dict[str, Any]:
    """Claims and prefixes with EKS's flag semantics: '-' disables the username prefix."""
    api = config.api_server
    if api.groups_claim and "system:" in api.groups_prefix:
        raise ConfigError(f"EKS refuses a groups prefix containing 'system:' (apiServer."
                          f"groupsPrefix '{api.groups_prefix}')",
                          "use a prefix such as 'oidc:'")
    out: dict[str, Any] = {"usernameClaim": api.username_claim,
                           "usernamePrefix": config.effective_username_prefix or "-"}
    if api.groups_claim:
        out["groupsClaim"] = api.groups_claim
        if api.groups_prefix:
            out["groupsPrefix"] = api.groups_prefix
    if api.required_claims:
        out["requiredClaims"] = dict(sorted(api.required_claims.items()))
    return out


def render_aws_cli_input(config: Config) -> EKSRender:
    """The ``--cli-input-json`` of ``aws eks associate-identity-provider-config``."""
    eks = config.eks
    if not eks.cluster_name:
        raise ConfigError("the AWS CLI input names the EKS cluster, and dexkit.yaml has no "
                          "eks.clusterName", "set eks.clusterName (and eks.region for eksctl)")
    claims = _claims(config)
    oidc = {"identityProviderConfigName": eks.identity_provider_config_name,
            "issuerUrl": config.issuer, "clientId": config.api_server.client_id, **claims}
    document: dict[str, Any] = {"clusterName": eks.cluster_name, "oidc": oidc}
    if eks.tags:
        document["tags"] = dict(eks.tags)
    return EKSRender(document, eks_warnings(config))


def render_eksctl(config: Config) -> EKSRender:
    """An eksctl ClusterConfig with the ``identityProviders`` block, for
    ``eksctl associate identityprovider -f``."""
    eks = config.eks
    if not eks.cluster_name or not eks.region:
        raise ConfigError("eksctl's ClusterConfig names the cluster and its region, and "
                          "dexkit.yaml lacks eks.clusterName or eks.region",
                          "set both under eks:")
    claims = _claims(config)
    provider: dict[str, Any] = {
        "name": eks.identity_provider_config_name, "type": "oidc",
        "issuerURL": config.issuer, "clientID": config.api_server.client_id, **claims}
    if eks.tags:
        provider["tags"] = dict(eks.tags)
    document = {"apiVersion": EKSCTL_API_VERSION, "kind": "ClusterConfig",
                "metadata": {"name": eks.cluster_name, "region": eks.region},
                "identityProviders": [provider]}
    return EKSRender(document, eks_warnings(config))


def public_host_problem(host: str) -> str | None:
    """Why ``host`` cannot be reached from AWS's side, if it cannot."""
    if is_ip(host):
        address = ipaddress.ip_address(host)
        if not address.is_global:
            return f"the issuer's address {host} is not a public IP address"
        return (f"the issuer is an IP address ({host}); publicly trusted certificates for IP "
                "addresses are rare, use a DNS name")
    name = host.lower().rstrip(".")
    if "." not in name or name.endswith(_PRIVATE_SUFFIXES) or name == "localhost":
        return f"the issuer's host {host} is not a public DNS name"
    if any(name == d or name.endswith("." + d) for d in _EXAMPLE_DOMAINS):
        return f"the issuer's host {host} is under a reserved example domain (RFC 2606)"
    return None


def serves_public_certificate(config: Config) -> bool:
    """Whether the issuer's host is served with a certificate other than dexkit's own CA's:
    an Ingress TLS entry for it naming another Secret (e.g. one cert-manager fills)."""
    ingress = config.dex.ingress
    host = config.issuer_host.lower()
    entries = [t for t in ingress.tls if host in [h.lower() for h in t.hosts]]
    return ingress.enabled and bool(entries) and all(
        t.secret_name not in (None, config.tls_secret_name) for t in entries)


def eks_warnings(config: Config) -> list[str]:
    api = config.api_server
    found = ["EKS takes one OIDC identity provider per cluster, and fetches the issuer's "
             "discovery document and keys from the public internet over HTTPS"]
    problem = public_host_problem(config.issuer_host)
    if problem:
        found.append(f"{problem}: EKS must reach {config.issuer} from AWS, so it cannot "
                     "validate tokens from this issuer")
    if not serves_public_certificate(config):
        found.append("the issuer is served with dexkit's own CA (ssl/ca.pem), which EKS "
                     "refuses (it accepts no self-signed or private CA and has no CA field): "
                     "serve the issuer through dex.ingress with a publicly trusted "
                     "certificate in dex.ingress.tls[].secretName (e.g. from cert-manager)")
    if api.signing_algs != ["RS256"]:
        found.append(f"EKS has no setting for signing algorithms; apiServer.signingAlgs "
                     f"{api.signing_algs} is not passed on (Dex signs with RS256 by default)")
    lost = api.structured_only(effective=True)
    if lost:
        found.append("EKS's identity provider config has only claims, prefixes and required "
                     f"claims; these are not applied there: apiServer.{', apiServer.'.join(lost)}")
    return found
