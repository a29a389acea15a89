"""The whole AuthenticationConfiguration: audiences, CEL mappings, rules, more issuers, merge."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dexkit.errors import ConfigError, UsageError
from dexkit.render.apiserver import render_authentication_config
from dexkit.render.authnmerge import merge_authentication_config
from tests.unit.render.helpers import golden_ca, make_config

AUTHN = {"mode": "authentication-config"}
GITHUB_ACTIONS = {"issuer": {"url": "https://token.actions.githubusercontent.com",
                             "audiences": ["sts.example.com"]},
                  "claimMappings": {"username": {"claim": "sub", "prefix": "gh:"}}}
FULL: dict[str, Any] = {**AUTHN,
                        "audiences": ["kubectl", "argocd"],
                        "discoveryURL": "https://dex.dex.svc:5556/.well-known/openid-configuration",
                        "usernameExpression": "'dex:' + claims.email",
                        "groupsExpression": "claims.groups.map(g, 'oidc:' + g)",
                        "uidClaim": "sub",
                        "extra": [{"key": "example.com/tenant",
                                   "valueExpression": "claims.?tenant.orValue('none')"}],
                        "claimValidationRules": [
                            {"expression": "claims.email.endsWith('@example.com')",
                             "message": "only example.com accounts"},
                            {"claim": "hd", "requiredValue": "example.com"}],
                        "userValidationRules": [
                            {"expression": "!('oidc:banned' in user.groups)",
                             "message": "banned users may not sign in"}],
                        "extraJWT": [GITHUB_ACTIONS],
                        "anonymous": {"enabled": True, "conditions": [{"path": "/livez"}]}}


def _authn(api: dict[str, Any], **data: Any) -> dict[str, Any]:
    config = make_config({**data, "apiServer": api})
    loaded: dict[str, Any] = yaml.safe_load(render_authentication_config(config, golden_ca()))
    return loaded


def test_every_field_of_the_v1_type_is_rendered() -> None:
    doc = _authn(FULL)
    dex, github = doc["jwt"]
    assert github == GITHUB_ACTIONS
    assert dex["issuer"]["audiences"] == ["kubernetes", "kubectl", "argocd"]
    assert dex["issuer"]["audienceMatchPolicy"] == "MatchAny"
    assert dex["issuer"]["discoveryURL"].startswith("https://dex.dex.svc:5556/")
    mappings = dex["claimMappings"]
    assert mappings["username"] == {"expression": "'dex:' + claims.email"}
    assert mappings["groups"] == {"expression": "claims.groups.map(g, 'oidc:' + g)"}
    assert mappings["uid"] == {"claim": "sub"}
    assert mappings["extra"] == FULL["extra"]
    # No email_verified rule: the username does not come from the email claim alone.
    assert dex["claimValidationRules"] == FULL["claimValidationRules"]
    assert dex["userValidationRules"] == FULL["userValidationRules"]
    assert doc["anonymous"] == {"enabled": True, "conditions": [{"path": "/livez"}]}


def test_the_default_user_rules_refuse_system_names() -> None:
    (dex,) = _authn(AUTHN)["jwt"]
    rules = dex["userValidationRules"]
    assert rules[0] == {"expression": "!user.username.startsWith('system:')",
                        "message": "username must not start with the reserved prefix system:"}
    assert "g.startsWith('system:')" in rules[1]["expression"]
    (none,) = _authn({**AUTHN, "userValidationRules": []})["jwt"]
    assert "userValidationRules" not in none
    assert "audienceMatchPolicy" not in none["issuer"]


def test_the_default_entry_is_what_dexkit_rendered_before() -> None:
    (dex,) = _authn(AUTHN)["jwt"]
    assert dex["claimMappings"] == {"username": {"claim": "email", "prefix": ""},
                                    "groups": {"claim": "groups", "prefix": "oidc:"}}
    assert dex["issuer"]["audiences"] == ["kubernetes"]


@pytest.mark.parametrize(("api", "expected"), [
    ({"audiences": ["x"]}, "needs the AuthenticationConfiguration"),
    ({"usernameExpression": "claims.sub"}, "apiServer.usernameExpression needs"),
    ({"userValidationRules": []}, ""),  # an explicit "none" is fine in flags mode
    ({**AUTHN, "usernameExpression": "claims.sub", "usernamePrefix": "x:"}, "cannot be combined"),
    ({**AUTHN, "uidClaim": "sub", "uidExpression": "claims.sub"}, "not both"),
    ({**AUTHN, "audienceMatchPolicy": "MatchAny"}, "more than one audience"),
    ({**AUTHN, "audiences": ["kubernetes"]}, "unique"),
    ({**AUTHN, "claimValidationRules": [{"claim": "a", "expression": "b"}]}, "exactly one"),
    ({**AUTHN, "claimValidationRules": [{"claim": "a", "message": "m"}]}, "goes with"),
    ({**AUTHN, "extra": [{"key": "Tenant", "valueExpression": "x"}]}, "domain-prefixed"),
    ({**AUTHN, "extra": [{"key": "kubernetes.io/x", "valueExpression": "x"}]}, "reserved"),
    ({**AUTHN, "uidClaim": "sub", "extraJWT": [{"issuer": {"url": "http://x"}}]}, "https"),
    ({**AUTHN, "extraJWT": [{"issuer": {"url": "https://x.example.com", "audiences": ["a"]}}]},
     "claimMappings.username"),
    ({**AUTHN, "extra": [{"key": "example.com/t", "valueExpression": "x"}]}, "uid mapping"),
])
def test_bad_settings_are_refused(api: dict[str, Any], expected: str) -> None:
    if not expected:
        make_config({"apiServer": api})
        return
    with pytest.raises(ConfigError) as info:
        make_config({"apiServer": api})
    assert expected in f"{info.value.message} {info.value.hint}"


def test_anonymous_needs_1_32() -> None:
    with pytest.raises(ConfigError) as info:
        make_config({"kubernetesVersion": "1.31",
                     "apiServer": {**AUTHN, "anonymous": {"enabled": True}}})
    assert "1.32" in info.value.message


def test_an_extra_issuer_may_not_be_dex() -> None:
    entry = {**GITHUB_ACTIONS, "issuer": {"url": "https://dex.example.com:32000",
                                          "audiences": ["a"]}}
    with pytest.raises(ConfigError) as info:
        make_config({"apiServer": {**AUTHN, "extraJWT": [entry]}})
    assert "already" in info.value.message


# --- --merge ---------------------------------------------------------------------------------

EXISTING = """\
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
# Our CI's tokens; do not touch.
jwt:
  - issuer:
      url: https://token.actions.githubusercontent.com   # GitHub
      audiences: [sts.example.com]
    claimMappings:
      username: {claim: sub, prefix: "gh:"}
  - issuer:
      url: https://accounts.example.org
      audiences:
        - k8s
    claimMappings:
      username:
        expression: "'acct:' + claims.sub"
anonymous:
  enabled: true
  conditions:
  - path: /healthz
"""


def _config(**api: Any) -> Any:
    return make_config({"apiServer": {**AUTHN, **api}})


def test_merge_appends_dex_and_keeps_every_other_byte() -> None:
    result = merge_authentication_config(EXISTING, _config(), golden_ca())
    assert result.action == "added"
    head, tail = EXISTING.split("anonymous:")
    assert result.text.startswith(head)
    assert result.text.endswith("anonymous:" + tail)
    merged = yaml.safe_load(result.text)
    assert [e["issuer"]["url"] for e in merged["jwt"]] == [
        "https://token.actions.githubusercontent.com", "https://accounts.example.org",
        "https://dex.example.com:32000"]
    assert result.other_issuers == ("https://token.actions.githubusercontent.com",
                                    "https://accounts.example.org")


def test_merge_updates_dex_in_place_and_is_idempotent() -> None:
    first = merge_authentication_config(EXISTING, _config(), golden_ca()).text
    again = merge_authentication_config(first, _config(), golden_ca())
    assert again.action == "unchanged" and again.text == first
    changed = merge_authentication_config(first, _config(audiences=["argocd"]), golden_ca())
    assert changed.action == "updated"
    dex = yaml.safe_load(changed.text)["jwt"][2]
    assert dex["issuer"]["audiences"] == ["kubernetes", "argocd"]
    assert changed.text.startswith(EXISTING.split("anonymous:")[0])


def test_merge_updates_a_first_entry_and_keeps_what_follows() -> None:
    bare = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"
    dex_only = merge_authentication_config(bare, _config(), golden_ca()).text
    tail = ("- issuer:\n    url: https://accounts.example.org\n    audiences: [k8s]\n"
            "  claimMappings:\n    username: {claim: sub, prefix: 'acct:'}\n"
            "# trailing comment\n")
    text = dex_only + tail
    result = merge_authentication_config(text, _config(audiences=["argocd"]), golden_ca())
    assert result.action == "updated"
    assert result.text.endswith(tail)
    assert result.text.startswith(bare + "jwt:\n")


def test_merge_keeps_crlf_and_indentation() -> None:
    crlf = EXISTING.replace("\n", "\r\n")
    result = merge_authentication_config(crlf, _config(), golden_ca())
    assert "\n" not in result.text.replace("\r\n", "")
    assert result.text.startswith(crlf.split("anonymous:")[0])
    assert "\r\n  - issuer:\r\n      # Byte for byte" in result.text


def test_merge_into_a_file_without_jwt() -> None:
    text = "apiVersion: apiserver.config.k8s.io/v1beta1\nkind: AuthenticationConfiguration\n"
    result = merge_authentication_config(text, _config(), golden_ca())
    assert result.text.startswith(text)
    assert yaml.safe_load(result.text)["jwt"][0]["issuer"]["url"] == "https://dex.example.com:32000"
    assert any("v1beta1" in note for note in result.notes)


@pytest.mark.parametrize(("text", "expected"), [
    ("kind: Pod\napiVersion: v1\n", "not an AuthenticationConfiguration"),
    ("apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt: [{}]\n",
     "block-style"),
    ("- a\n", "not a YAML mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_merge_refuses_what_it_cannot_edit(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as info:
        merge_authentication_config(text, _config(), golden_ca())
    assert expected in info.value.message


HEAD = "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"


def test_merge_keeps_an_entry_whose_issuer_is_text_and_says_so() -> None:
    text = HEAD + "jwt:\n- issuer: https://other.example.com\n- 5\n"
    result = merge_authentication_config(text, _config(), golden_ca())
    assert result.text.startswith(text) and result.action == "added"
    assert result.other_issuers == ()
    assert [n for n in result.notes if "no issuer.url" in n] == [
        "authentication-config.yaml: jwt entry 1 has no issuer.url mapping; the API server "
        "refuses the file until it has one (dexkit leaves other entries as they are)",
        "authentication-config.yaml: jwt entry 2 has no issuer.url mapping; the API server "
        "refuses the file until it has one (dexkit leaves other entries as they are)"]


def test_merge_refuses_to_replace_an_entry_whose_anchor_is_used_elsewhere() -> None:
    text = (HEAD + "jwt:\n- issuer:\n    url: https://dex.example.com:32000\n"
            "    audiences: &aud [kubernetes]\nx-audiences: *aud\n")
    with pytest.raises(UsageError, match=r"authentication-config.yaml:7: \*aud refers to "):
        merge_authentication_config(text, _config(), golden_ca())
    # An anchor inside Dex's entry that nothing uses, or an alias inside it, is replaced.
    used_inside = (HEAD + "x-aud: &aud [kubernetes]\njwt:\n- issuer:\n"
                   "    url: https://dex.example.com:32000\n    audiences: *aud\n")
    assert merge_authentication_config(used_inside, _config(), golden_ca()).action == "updated"
