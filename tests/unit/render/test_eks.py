"""EKS's identity provider config against its documented shapes.

The schemas below are written for this test from the public documentation, field by field:

- AWS_CLI_INPUT: the Amazon EKS API Reference, AssociateIdentityProviderConfig (request body:
  ``clientRequestToken``, ``oidc`` (required), ``tags``; ``name`` is the URI's cluster name,
  which the AWS CLI takes as ``clusterName`` in --cli-input-json) and
  OidcIdentityProviderConfigRequest (``clientId``, ``identityProviderConfigName`` and
  ``issuerUrl`` required; ``groupsClaim``, ``groupsPrefix``, ``usernameClaim``,
  ``usernamePrefix`` strings; ``requiredClaims`` a string-to-string map).
- EKSCTL_PROVIDER: eksctl's pkg/apis/eksctl.io/v1alpha5/identity_provider.go,
  OIDCIdentityProvider (``name``, ``issuerURL``, ``clientID`` required; the claims and
  prefixes; ``requiredClaims`` and ``tags`` maps) and IdentityProvider's ``type: oidc``.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from dexkit.errors import ConfigError
from dexkit.render.eks import public_host_problem, render_aws_cli_input, render_eksctl
from tests.unit.render.helpers import make_config

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
AWS_CLI_INPUT: dict[str, Any] = {
    "type": "object",
    "required": ["clusterName", "oidc"],
    "additionalProperties": False,
    "properties": {
        "clusterName": {"type": "string", "minLength": 1},
        "clientRequestToken": {"type": "string"},
        "tags": _STRING_MAP,
        "oidc": {
            "type": "object",
            "required": ["identityProviderConfigName", "issuerUrl", "clientId"],
            "additionalProperties": False,
            "properties": {
                "identityProviderConfigName": {"type": "string", "minLength": 1},
                "issuerUrl": {"type": "string", "pattern": "^https://[^?#]+$"},
                "clientId": {"type": "string", "minLength": 1},
                "usernameClaim": {"type": "string"},
                "usernamePrefix": {"type": "string"},
                "groupsClaim": {"type": "string"},
                "groupsPrefix": {"type": "string", "not": {"pattern": "system:"}},
                "requiredClaims": _STRING_MAP,
            },
        },
    },
}
EKSCTL_PROVIDER: dict[str, Any] = {
    "type": "object",
    "required": ["name", "type", "issuerURL", "clientID"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "type": {"enum": ["oidc"]},
        "issuerURL": {"type": "string", "minLength": 1},
        "clientID": {"type": "string", "minLength": 1},
        "usernameClaim": {"type": "string"},
        "usernamePrefix": {"type": "string"},
        "groupsClaim": {"type": "string"},
        "groupsPrefix": {"type": "string"},
        "requiredClaims": _STRING_MAP,
        "tags": _STRING_MAP,
    },
}
EKSCTL_CLUSTER_CONFIG: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "identityProviders"],
    "properties": {
        "apiVersion": {"const": "eksctl.io/v1alpha5"},
        "kind": {"const": "ClusterConfig"},
        "metadata": {"type": "object", "required": ["name", "region"]},
        "identityProviders": {"type": "array", "items": EKSCTL_PROVIDER},
    },
}
PUBLIC = {"issuer": "https://login.acme-corp.io",
          "eks": {"clusterName": "prod", "region": "eu-west-1", "tags": {"team": "platform"}},
          "apiServer": {"requiredClaims": {"hd": "acme-corp.io"}},
          "dex": {"ingress": {"enabled": True, "tls": [
              {"hosts": ["login.acme-corp.io"], "secretName": "login-public-tls"}]}}}


def test_the_aws_cli_input_has_the_documented_shape() -> None:
    rendered = render_aws_cli_input(make_config(PUBLIC))
    document = json.loads(rendered.json())
    jsonschema.validate(document, AWS_CLI_INPUT)
    assert document == {
        "clusterName": "prod",
        "oidc": {"identityProviderConfigName": "dex", "issuerUrl": "https://login.acme-corp.io",
                 "clientId": "kubernetes", "usernameClaim": "email", "usernamePrefix": "-",
                 "groupsClaim": "groups", "groupsPrefix": "oidc:",
                 "requiredClaims": {"hd": "acme-corp.io"}},
        "tags": {"team": "platform"}}


def test_the_eksctl_block_has_the_documented_shape() -> None:
    document = render_eksctl(make_config(PUBLIC)).document
    jsonschema.validate(document, EKSCTL_CLUSTER_CONFIG)
    (provider,) = document["identityProviders"]
    assert provider["issuerURL"] == "https://login.acme-corp.io"
    assert provider["type"] == "oidc"
    assert document["metadata"] == {"name": "prod", "region": "eu-west-1"}


def test_the_schemas_can_fail() -> None:
    document = render_aws_cli_input(make_config(PUBLIC)).document
    document["oidc"]["issuerURL"] = document["oidc"].pop("issuerUrl")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, AWS_CLI_INPUT)


def test_both_carry_the_same_settings_as_the_flags() -> None:
    config = make_config(dict(PUBLIC, apiServer={"usernameClaim": "sub",
                                                 "usernamePrefix": "dex:"}))
    oidc = render_aws_cli_input(config).document["oidc"]
    (provider,) = render_eksctl(config).document["identityProviders"]
    assert (oidc["usernameClaim"], oidc["usernamePrefix"]) == ("sub", "dex:")
    assert (provider["usernameClaim"], provider["usernamePrefix"]) == ("sub", "dex:")
    # No prefix set: the API server's own rule, spelled out.
    default = make_config(dict(PUBLIC, apiServer={"usernameClaim": "sub"}))
    prefix = render_aws_cli_input(default).document["oidc"]["usernamePrefix"]
    assert prefix == "https://login.acme-corp.io#"


def test_a_public_issuer_with_a_public_certificate_warns_only_of_the_essentials() -> None:
    warnings = render_aws_cli_input(make_config(PUBLIC)).warnings
    assert len(warnings) == 1
    assert "one OIDC identity provider per cluster" in warnings[0]


@pytest.mark.parametrize(("issuer", "expected"), [
    ("https://dex.example.com:32000", "reserved example domain"),
    ("https://127.0.0.1:32000", "not a public IP address"),
    ("https://10.1.2.3", "not a public IP address"),
    ("https://dex.corp.internal", "not a public DNS name"),
    ("https://dex", "not a public DNS name"),
])
def test_an_issuer_eks_cannot_reach_is_warned_about(issuer: str, expected: str) -> None:
    config = make_config({"issuer": issuer, "eks": {"clusterName": "c"}})
    warnings = " ".join(render_aws_cli_input(config).warnings)
    assert expected in warnings
    assert "dexkit's own CA" in warnings  # served by dexkit's certificate, which EKS refuses


def test_settings_eks_cannot_take_are_named() -> None:
    config = make_config({"issuer": "https://login.acme-corp.io", "eks": {"clusterName": "c"},
                          "apiServer": {"mode": "authentication-config",
                                        "audiences": ["other"], "signingAlgs": ["ES256"]}})
    warnings = " ".join(render_aws_cli_input(config).warnings)
    assert "apiServer.audiences" in warnings
    assert "apiServer.userValidationRules" in warnings  # dexkit's default system: rule
    assert "signing algorithms" in warnings


def test_a_system_groups_prefix_and_missing_names_are_errors() -> None:
    with pytest.raises(ConfigError) as info:
        render_aws_cli_input(make_config({"eks": {"clusterName": "c"},
                                          "apiServer": {"groupsPrefix": "system:x:"}}))
    assert "system:" in info.value.message
    with pytest.raises(ConfigError) as info:
        render_aws_cli_input(make_config({}))
    assert "eks.clusterName" in info.value.hint
    with pytest.raises(ConfigError):
        render_eksctl(make_config({"eks": {"clusterName": "c"}}))


def test_public_hosts() -> None:
    assert public_host_problem("login.acme-corp.io") is None
    assert public_host_problem("8.8.8.8") is not None  # an IP: a public cert is unlikely
