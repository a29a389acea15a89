"""Dex as a sandbox process runs the rendered config with only the pod-given parts swapped."""

from __future__ import annotations

from pathlib import Path

import yaml

from dexkit.config import parse_config
from dexkit.render.dex import render_dex_config
from dexkit.sandbox.dexlocal import local_dex_config, missing_credentials

PROJECT = Path("/srv/project")


def test_only_storage_listeners_and_files_change() -> None:
    config = parse_config("issuer: https://127.0.0.1:31555\nconnectors: [{type: mockCallback}]\n")
    rendered = yaml.safe_load(render_dex_config(config))
    local = yaml.safe_load(local_dex_config(config, PROJECT, telemetry_port=40000))
    assert local["storage"] == {"type": "memory"}
    assert local["web"] == {"https": "127.0.0.1:31555",
                            "tlsCert": "/srv/project/ssl/cert.pem",
                            "tlsKey": "/srv/project/ssl/key.pem"}
    assert local["telemetry"] == {"http": "127.0.0.1:40000"}
    for key in set(rendered) - {"storage", "web", "telemetry"}:
        assert local[key] == rendered[key], key
    assert local["issuer"] == "https://127.0.0.1:31555"


def test_connector_cas_come_from_the_project() -> None:
    config = parse_config(
        "issuer: https://127.0.0.1:31555\n"
        "connectors:\n- type: ldap\n  rootCA: ldap-ca.pem\n")
    local = yaml.safe_load(local_dex_config(config, PROJECT, telemetry_port=1))
    assert local["connectors"][0]["config"]["rootCA"] == "/srv/project/ldap-ca.pem"
    moved = yaml.safe_load(local_dex_config(config, PROJECT, telemetry_port=1,
                                            connector_cas={"ldap": Path("/tmp/ca.pem")}))
    assert moved["connectors"][0]["config"]["rootCA"] == "/tmp/ca.pem"


def test_missing_credentials_are_named() -> None:
    config = parse_config("issuer: https://127.0.0.1:31555\n")  # the GitHub connector
    assert missing_credentials(config, {}) == ["GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET"]
    assert missing_credentials(config, {"GITHUB_CLIENT_ID": "a",
                                        "GITHUB_CLIENT_SECRET": "b"}) == []
