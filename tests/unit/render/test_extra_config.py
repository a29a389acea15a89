"""dex.extraConfig: merged into Dex's config, refused where it contradicts what dexkit owns."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dexkit.errors import ConfigError
from dexkit.render.dex import merge_extra_config, render_dex_config
from tests.unit.render.helpers import GUIDE_HASH, make_config

STATIC = {"connectors": [], "staticUsers": [{"email": "a@example.com", "username": "a",
                                             "userID": "1", "hash": GUIDE_HASH}]}


def _dex(extra: dict[str, Any], **data: Any) -> dict[str, Any]:
    config = make_config({**data, "dex": {"extraConfig": extra}})
    loaded: dict[str, Any] = yaml.safe_load(render_dex_config(config))
    return loaded


def test_mappings_merge_key_by_key_and_lists_of_ids_are_appended() -> None:
    dex = _dex({
        "oauth2": {"responseTypes": ["code"], "skipApprovalScreen": False},
        "expiry": {"refreshTokens": {"validIfNotUsedFor": "168h"}},
        "logger": {"format": "text"},
        "frontend": {"issuer": "Example Corp", "theme": "dark"},
        "web": {"allowedOrigins": ["https://app.example.com"]},
        "connectors": [{"type": "mockCallback", "id": "mock2", "name": "Mock 2"}],
        "staticClients": [{"id": "portal", "name": "Portal", "public": True,
                           "redirectURIs": ["https://portal.example.com/cb"]}],
    })
    assert dex["oauth2"] == {"skipApprovalScreen": False, "responseTypes": ["code"]}
    # key by key, also one level down: dexkit's reuseInterval stays beside the user's setting
    assert dex["expiry"] == {"idTokens": "24h",
                             "refreshTokens": {"reuseInterval": "3s",
                                               "validIfNotUsedFor": "168h"}}
    assert dex["logger"] == {"level": "info", "format": "text"}
    assert dex["frontend"] == {"issuer": "Example Corp", "theme": "dark"}
    assert dex["web"]["https"] == "0.0.0.0:5556"
    assert dex["web"]["allowedOrigins"] == ["https://app.example.com"]
    assert [c["id"] for c in dex["connectors"]] == ["github", "mock2"]
    assert [c["id"] for c in dex["staticClients"]] == ["kubernetes", "portal"]
    assert dex["issuer"] == "https://dex.example.com:32000"


def test_no_extra_config_renders_the_commented_template() -> None:
    text = render_dex_config(make_config({}))
    assert "# /healthz/live and /healthz/ready" in text
    assert "extraConfig" not in text


def test_the_merge_does_not_change_its_inputs() -> None:
    base = {"a": {"b": 1}, "connectors": [{"id": "x"}]}
    extra = {"a": {"c": 2}, "connectors": [{"id": "y"}]}
    merged = merge_extra_config(base, extra)
    assert merged == {"a": {"b": 1, "c": 2}, "connectors": [{"id": "x"}, {"id": "y"}]}
    assert base == {"a": {"b": 1}, "connectors": [{"id": "x"}]}


@pytest.mark.parametrize(("extra", "key", "hint"), [
    ({"issuer": "https://other.example.com"}, "extraConfig.issuer", "'issuer'"),
    ({"storage": {"type": "memory"}}, "extraConfig.storage", "dex.storage"),
    ({"web": {"https": "0.0.0.0:443"}}, "extraConfig.web.https", "HTTPS"),
    ({"web": {"http": "0.0.0.0:80"}}, "extraConfig.web.http", "HTTPS only"),
    ({"web": {"tlsCert": "/x"}}, "extraConfig.web.tlsCert", "ssl/cert.pem"),
    ({"telemetry": {"http": "0.0.0.0:9000"}}, "extraConfig.telemetry.http", "probes"),
    ({"grpc": {"addr": "0.0.0.0:5557"}}, "extraConfig.grpc", "dex.grpc"),
    ({"logger": {"level": "debug"}}, "extraConfig.logger.level", "dex.logLevel"),
    ({"expiry": {"idTokens": "1h"}}, "extraConfig.expiry.idTokens", "dex.idTokenLifetime"),
    ({"staticPasswords": []}, "extraConfig.staticPasswords", "staticUsers"),
    ({"enablePasswordDB": True}, "extraConfig.enablePasswordDB", "staticUsers"),
    ({"staticClients": [{"id": "kubernetes", "public": True}]},
     "extraConfig.staticClients[0]", "under 'clients'"),
    ({"connectors": [{"type": "mockCallback", "id": "github"}]},
     "extraConfig.connectors[0]", "under 'connectors'"),
    ({"connectors": [{"type": "mockCallback"}]}, "extraConfig.connectors[0]", ""),
    ({"oauth2": "yes"}, "extraConfig.oauth2", ""),
    ({"expiri": {}}, "extraConfig.expiri", "did you mean 'expiry'?"),
])
def test_what_dexkit_owns_is_refused_at_its_line(extra: dict[str, Any], key: str,
                                                 hint: str) -> None:
    text = yaml.safe_dump({"dex": {"extraConfig": extra}})
    with pytest.raises(ConfigError) as info:
        make_config(yaml.safe_load(text))
    assert f": dex.{key}: " in info.value.message
    assert hint in info.value.hint
    line = int(info.value.message.split(":")[1])
    assert line > 2  # points below 'dex:' and 'extraConfig:', at the offending key


def test_a_second_password_connector_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        make_config({**STATIC, "dex": {"extraConfig": {"oauth2": {"passwordConnector": "x"}}}})
    assert "already uses 'local'" in info.value.message
    # Without static users or LDAP, dexkit sets none, so the user may.
    dex = _dex({"oauth2": {"passwordConnector": "ldap2"},
                "connectors": [{"type": "ldap", "id": "ldap2", "config": {}}]})
    assert dex["oauth2"]["passwordConnector"] == "ldap2"
