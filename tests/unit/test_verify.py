"""The mapping verify and doctor hold the API server to: the config's prefix rules."""

from __future__ import annotations

from dexkit.config import parse_config
from dexkit.kube import Identity
from dexkit.verify import Probe, expected_identity, mapping_mismatch

CLAIMS = {"email": "admin@example.com", "sub": "Cg1hZG1pbg", "groups": ["team-a", "team-a/x"]}


def test_email_has_no_prefix_and_groups_do() -> None:
    config = parse_config("issuer: https://127.0.0.1:32000\n")
    assert expected_identity(config, CLAIMS) == (
        "admin@example.com", ["oidc:team-a", "oidc:team-a/x"])


def test_other_claims_get_the_issuer_hash_prefix() -> None:
    config = parse_config("issuer: https://127.0.0.1:32000/dex\napiServer: {usernameClaim: sub}\n")
    assert expected_identity(config, CLAIMS)[0] == "https://127.0.0.1:32000/dex#Cg1hZG1pbg"


def test_mismatches_are_named() -> None:
    config = parse_config("issuer: https://127.0.0.1:32000\n")
    good = Identity("admin@example.com", ("oidc:team-a", "oidc:team-a/x", "system:authenticated"))
    assert mapping_mismatch(config, CLAIMS, good) is None
    wrong_user = Identity("https://127.0.0.1:32000#admin@example.com", good.groups)
    message, hint = mapping_mismatch(config, CLAIMS, wrong_user) or ("", "")
    assert "promises 'admin@example.com'" in message and "prefix" in hint
    no_prefix = Identity("admin@example.com", ("team-a", "team-a/x"))
    message, _ = mapping_mismatch(config, CLAIMS, no_prefix) or ("", "")
    assert "does not see groups ['oidc:team-a', 'oidc:team-a/x']" in message


def test_what_cel_expressions_make_is_left_to_the_api_server() -> None:
    config = parse_config("issuer: https://127.0.0.1:32000\napiServer: {mode: "
                          "authentication-config, usernameExpression: claims.name, "
                          "groupsExpression: claims.groups}\n")
    assert mapping_mismatch(config, CLAIMS, Identity("anything", ())) is None
    half = parse_config("issuer: https://127.0.0.1:32000\napiServer: {mode: "
                        "authentication-config, groupsExpression: claims.groups}\n")
    message, _ = mapping_mismatch(half, CLAIMS, Identity("someone", ())) or ("", "")
    assert "promises 'admin@example.com'" in message


def test_probes_parse() -> None:
    assert str(Probe.parse("list nodes")) == "list nodes"
    assert str(Probe.parse("get pods default")) == "get pods in default"
