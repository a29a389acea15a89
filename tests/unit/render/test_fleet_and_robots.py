"""dexkit.yaml's clusters, tokenExchange connectors and robot clients: validated, and rendered
into Dex's config and each cluster's API-server side (the real Dex and API servers take them in
tests/e2e/test_fleet.py and test_robots.py)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dexkit.config import parse_config
from dexkit.errors import ConfigError, UsageError
from dexkit.project import render_config_file
from dexkit.render.apiserver import render_authentication_config, username_expression
from dexkit.render.bundle import render_bundle
from dexkit.render.dex import render_dex_config
from tests.unit.render.helpers import OUT_DIR, PROJECT_DIR, golden_ca, make_config

MAIN = "ghcr.io/dexidp/dex:v2.46.0-20260806171424-ab64ed77"
FLEET: dict[str, Any] = {"clusters": [{"name": "dev", "clientID": "dev"},
                                      {"name": "prod", "clientID": "prod",
                                       "mode": "authentication-config"}]}
EXCHANGE: dict[str, Any] = {"connectors": [{
    "type": "oidc", "id": "ci", "name": "CI", "issuer": "https://token.actions.example.com",
    "tokenExchange": {"audience": "dexkit", "groupClaims": ["repository"]}}]}
ROBOT: dict[str, Any] = {"dex": {"image": MAIN}, "apiServer": {"mode": "authentication-config"},
                         "clients": [{"id": "kubernetes"},
                                     {"id": "bot", "public": False, "secretName": "bot",
                                      "clientCredentials": {"groups": ["deployers"]}}]}


def dex(data: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(render_dex_config(make_config(data)))
    return loaded


def refused(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        make_config(data)
    return caught.value


# --- clusters ---------------------------------------------------------------------------------


def test_each_cluster_gets_a_client_that_trusts_the_login_client() -> None:
    clients = {c["id"]: c for c in dex(FLEET)["staticClients"]}
    assert clients["dev"]["trustedPeers"] == ["kubernetes"]
    assert clients["prod"]["redirectURIs"] == []
    assert "trustedPeers" not in clients["kubernetes"]


def test_for_cluster_is_that_api_servers_view_and_dex_is_the_same() -> None:
    config = make_config(FLEET)
    prod = config.for_cluster("prod")
    assert (prod.api_server.client_id, prod.api_server.mode) == ("prod", "authentication-config")
    assert prod.login_client_id == "kubernetes" and prod.selected_cluster is not None
    assert render_dex_config(prod) == render_dex_config(config)
    with pytest.raises(UsageError, match="no cluster 'qa'"):
        config.for_cluster("qa")


def test_the_bundle_has_each_clusters_side_and_the_single_cluster_one_is_unchanged() -> None:
    files = render_bundle(make_config(FLEET), ca_pem=golden_ca(), project_dir=PROJECT_DIR,
                          out_dir=OUT_DIR)
    assert "--oidc-client-id=dev" in files["apiserver/dev/flags.txt"]
    authn = yaml.safe_load(files["apiserver/prod/authentication-config.yaml"])
    assert authn["jwt"][0]["issuer"]["audiences"] == ["prod"]
    kind = files["kind/prod/cluster.yaml"]
    assert f"{OUT_DIR}/apiserver/prod/authentication-config.yaml" in kind
    assert "apiserver/flags.txt" not in files and "kind/cluster.yaml" not in files
    single = render_bundle(make_config({}), ca_pem=golden_ca(), project_dir=PROJECT_DIR,
                           out_dir=OUT_DIR)
    assert "apiserver/flags.txt" in single and not any("/dev/" in k for k in single)


@pytest.mark.parametrize(("data", "message"), [
    ({"clusters": [{"name": "a", "clientID": "x"}, {"name": "b", "clientID": "x"}]},
     "cluster clientIDs must be unique"),
    ({"clusters": [{"name": "a", "clientID": "kubernetes"}]}, "is also under 'clients'"),
    ({"clusters": [{"name": "a", "clientID": "x", "loginClientID": "x"}]},
     "which is a cluster's audience"),
    ({"clusters": [{"name": "A", "clientID": "x"}]}, "is not a DNS label"),
    ({"clusters": [{"name": "a", "clientID": "x"}],
      "apiServer": {"mode": "authentication-config", "audiences": ["argo"]}},
     "apiServer.audiences would make every cluster accept"),
    ({"clusters": [{"name": "a", "clientID": "x", "mode": "flags"}],
      "apiServer": {"mode": "authentication-config", "uidClaim": "sub"}},
     "cannot express apiServer.uidClaim"),
])
def test_clusters_that_cannot_work_are_refused(data: dict[str, Any], message: str) -> None:
    assert message in refused(data).message


def test_the_file_keeps_clusters_and_a_single_cluster_file_reads_as_before() -> None:
    config = make_config(FLEET)
    text = render_config_file(config)
    assert parse_config(text) == config
    plain = render_config_file(make_config({}))
    assert "\nclusters:" not in plain and "clientCredentials" not in plain
    assert "tokenExchange" not in plain


# --- token exchange ------------------------------------------------------------------------------


def test_a_token_exchange_connector_maps_the_jobs_claims() -> None:
    config = dex({**EXCHANGE, "dex": {"image": MAIN}})
    connector = config["connectors"][0]
    settings = connector["config"]
    assert connector["grantTypes"] == ["urn:ietf:params:oauth:grant-type:token-exchange"]
    assert settings["claimMapping"] == {"email": "sub"} and settings["userNameKey"] == "sub"
    assert settings["overrideClaimMapping"] is True
    assert settings["insecureSkipEmailVerified"] is True
    assert settings["claimModifications"]["newGroupFromClaims"] == [
        {"claims": ["repository"], "delimiter": ":", "prefix": "repository"}]
    assert "clientSecret" not in settings  # no client credentials needed
    assert "oauth2" not in config or "grantTypes" not in config["oauth2"]


def test_dex_v2_45_gets_no_connector_grant_types_it_does_not_know() -> None:
    assert "grantTypes" not in dex(EXCHANGE)["connectors"][0]


def test_an_exchange_connector_needs_an_audience() -> None:
    bad = {"connectors": [{"type": "oidc", "id": "ci", "issuer": "https://ci.example.com",
                           "tokenExchange": {"audience": " "}}]}
    assert "must not be empty" in refused(bad).message


# --- robots (client_credentials) ----------------------------------------------------------------


def test_a_robot_is_rendered_with_its_claims_and_the_grant_listed() -> None:
    config = dex(ROBOT)
    clients = {c["id"]: c for c in config["staticClients"]}
    assert clients["bot"]["clientCredentialsClaims"] == {"groups": ["deployers"]}
    assert clients["kubernetes"]["trustedPeers"] == ["bot"]
    assert "client_credentials" in config["oauth2"]["grantTypes"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in config["oauth2"]["grantTypes"]


def test_the_api_server_names_a_robot_client_and_everyone_else_by_the_claim() -> None:
    config = make_config(ROBOT)
    expression = username_expression(config)
    assert expression == ('has(claims.azp) && claims.azp in ["bot"] ? "client:" + claims.azp '
                          ': "" + claims["email"]')
    authn = yaml.safe_load(render_authentication_config(config, golden_ca()))
    mappings = authn["jwt"][0]["claimMappings"]
    assert mappings["username"] == {"expression": expression}
    rules = [r["expression"] for r in authn["jwt"][0]["claimValidationRules"]]
    assert "claims.?email_verified.orValue(true) == true" in rules


@pytest.mark.parametrize(("change", "message"), [
    ({"dex": {"image": "ghcr.io/dexidp/dex:v2.45.1"}},
     "Dex 2.45.1 (dex.image ghcr.io/dexidp/dex:v2.45.1) has no client_credentials grant"),
    ({"apiServer": {"mode": "flags"}}, "its token has no email"),
])
def test_robots_where_they_cannot_work_are_refused(change: dict[str, Any], message: str) -> None:
    assert message in refused({**ROBOT, **change}).message


def test_a_public_robot_is_refused() -> None:
    bad = {**ROBOT, "clients": [{"id": "kubernetes", "clientCredentials": {}}]}
    assert "is public" in refused(bad).message
