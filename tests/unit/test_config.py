"""The dexkit.yaml model: the guide's defaults, every rejection, locations and suggestions."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings

from dexkit.config import Config, parse_config
from dexkit.errors import ConfigError
from dexkit.issuer import IssuerError, parse_issuer
from tests.fuzz.strategies import ISSUERS


def test_defaults_are_the_guides() -> None:
    c = Config()
    assert c.issuer == "https://dex.example.com:32000"
    assert c.namespace == "dex"
    assert c.dex.service.type == "NodePort"
    assert c.dex.service.node_port == 32000
    assert c.api_server.ca_file == "/etc/ssl/certs/openid-ca.pem"
    assert c.api_server.username_claim == "email"
    assert c.api_server.groups_claim == "groups"
    assert c.dex.image == "ghcr.io/dexidp/dex:v2.45.1"
    github = c.connectors[0]
    assert github.type == "github"
    assert github.credentials_secret == "github-client"
    assert c.tls.hosts == ["dex.example.com"]
    assert c.tls.ips == []
    assert c.tls_secret_name == "dex.example.com.tls"
    assert c.trusted_client.id == c.api_server.client_id
    assert c.warnings() == []


def test_ip_issuer_goes_to_ips() -> None:
    c = parse_config("issuer: https://127.0.0.1:32000\n")
    assert c.tls.ips == ["127.0.0.1"]
    assert c.tls.hosts == []
    assert c.tls_secret_name == "127.0.0.1.tls"


def test_username_prefix_follows_the_api_server_rule() -> None:
    assert Config().effective_username_prefix == ""
    sub = parse_config("apiServer: {usernameClaim: sub}\n")
    assert sub.effective_username_prefix == "https://dex.example.com:32000#"
    none = parse_config("apiServer: {usernameClaim: sub, usernamePrefix: '-'}\n")
    assert none.effective_username_prefix == ""


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "dexkit.yaml")
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("issuer: http://dex.example.com:32000\n", 1, "https"),
        ("namespace: dex\nissuer: https://dex.example.com:32000?a=b\n", 2, "query or fragment"),
        ("issuer: https://dex.example.com:32000#frag\n", 1, "query or fragment"),
        ("issuer: https://dex.example.com:32000/\n", 1, "must not end with '/'"),
        ("issuer: https://bad_host:32000\n", 1, "not a valid DNS name or IP"),
        ("dex:\n  service:\n    nodePort: 80\n", 3, "30000-32767"),
        ("dex:\n  service:\n    nodePort: 32768\n", 3, "30000-32767"),
        ("connectors:\n- type: github\n- type: saml\n", 3, "unknown type 'saml'"),
        ("tls:\n  hosts: [dex.example.com, 'bad host']\n", 2, "'bad host' is not a valid DNS"),
        ("tls:\n  hosts: [dex.example.com]\n  ips: [300.1.1.1]\n", 3, "not a valid IP"),
        ("tls:\n  hosts: [other.example.com]\n", 1, "would not cover the issuer host"),
        ("apiServer:\n  clientID: nope\n", 1, "not one of the Dex clients"),
        ("connectors: []\n", 1, "at least one connector"),
        ("connectors:\n- type: github\n  credentialsSecret: ''\n", 3, "credential source"),
        ("clients:\n- id: kubernetes\n  redirectURIs: ['http://evil.example.com/cb']\n", 3,
         "plain http on a non-loopback host"),
        ("staticUsers:\n- email: a@b.c\n  username: a\n  userID: '1'\n  hash: hunter2\n", 5,
         "bcrypt"),
        ("kubernetesVersion: '1.20'\n", 1, "not supported"),
    ],
)
def test_rejections_name_the_file_key_and_line(text: str, line: int, fragment: str) -> None:
    error = _error(text)
    assert error.message.startswith(f"dexkit.yaml:{line}:"), error.message
    assert fragment in error.message
    assert error.hint


def test_typo_suggests_the_nearest_key() -> None:
    error = _error("namespace: dex\nisuer: https://dex.example.com:32000\n")
    assert error.message == "dexkit.yaml:2: unknown key 'isuer'"
    assert error.hint == "did you mean 'issuer'?"


def test_nested_typo_suggests_within_its_section() -> None:
    error = _error("dex:\n  service:\n    nodeport: 32000\n")
    assert error.message == "dexkit.yaml:3: dex.service: unknown key 'nodeport'"
    assert error.hint == "did you mean 'nodePort'?"


def test_connector_type_typo_suggests() -> None:
    error = _error("connectors:\n- type: githb\n")
    assert "unknown type 'githb'" in error.message
    assert error.hint == "did you mean 'github'?"


def test_invalid_yaml_names_the_line() -> None:
    error = _error("issuer: https://x.example.com\n  bad: [\n")
    assert error.message.startswith("dexkit.yaml:")
    assert "not valid YAML" in error.message


def test_top_level_must_be_a_mapping() -> None:
    assert "mapping" in _error("- a\n- b\n").message


def test_issuer_port_differing_from_node_port_warns_not_fails() -> None:
    c = parse_config("issuer: https://dex.example.com:443\n")
    assert len(c.warnings()) == 1
    assert "differs from the Dex NodePort 32000" in c.warnings()[0]


def test_issuer_with_path_and_ipv6() -> None:
    c = parse_config("issuer: https://[::1]:32000/dex\n")
    assert c.issuer_host == "::1"
    assert c.tls.ips == ["::1"]


def test_a_wildcard_issuer_host_is_refused() -> None:
    # Found by the atheris issuer target: https://*.b.c passed, and its certificate then
    # could not be verified for that "host".
    with pytest.raises(ConfigError) as info:
        parse_config("issuer: https://*.example.com:32000\n")
    assert "is a wildcard" in info.value.message


# --- Kubernetes versions ----------------------------------------------------------------------


def test_the_default_is_the_newest_proven_minor() -> None:
    config = Config()
    assert (config.kubernetes_version, config.minor) == ("1.37", 37)
    assert not [w for w in config.warnings() if "Kubernetes" in w]


@pytest.mark.parametrize(("version", "eol"), [("1.30", "2025-06-28"), ("1.34", "2026-10-27")])
def test_an_end_of_life_minor_renders_with_a_warning_naming_the_date(version: str,
                                                                      eol: str) -> None:
    config = parse_config(f"kubernetesVersion: '{version}'\n")
    assert config.minor == int(version.split(".")[1])
    (warning,) = [w for w in config.warnings() if "end of life" in w]
    assert warning.startswith(f"Kubernetes {version} reached end of life on {eol}")
    assert "proves only 1.35-1.37" in warning


@pytest.mark.parametrize("version", ["1.38", "v1.40.2"])
def test_a_newer_minor_renders_as_the_newest_with_a_warning(version: str) -> None:
    config = parse_config(f"kubernetesVersion: '{version}'\n")
    assert config.minor == 37 and config.configured_minor == int(version.split(".")[1])
    (warning,) = [w for w in config.warnings() if "newer than dexkit knows" in w]
    assert "rendered as for 1.37" in warning


@pytest.mark.parametrize("version", ["1.35", "1.36", "1.37", "v1.36.3"])
def test_proven_minors_render_without_a_version_warning(version: str) -> None:
    config = parse_config(f"kubernetesVersion: '{version}'\n")
    assert not [w for w in config.warnings() if "Kubernetes" in w]


# --- the issuer's one parse (dexkit.issuer) ----------------------------------------------------


@settings(max_examples=300, deadline=None, derandomize=True)
@given(issuer=ISSUERS)
def test_what_the_issuer_parse_accepts_urllib_and_httpx_read_alike(issuer: str) -> None:
    """Every later use reads the parse's result; other parsers (httpx in dexkit token, urllib)
    must read an accepted issuer the same way, or a value valid here breaks there."""
    try:
        parts = parse_issuer(issuer)
    except IssuerError as error:
        assert str(error) and error.hint
        return
    split, url = urlsplit(issuer), httpx.URL(issuer)
    assert (split.scheme, split.hostname, split.port, split.path) == \
        (parts.scheme, parts.host, parts.port, parts.path)
    # A host compares case-blind (httpx keeps an IPv6 address's case as written).
    assert (url.host.lower(), url.port or parts.effective_port) == \
        (parts.host, parts.effective_port)


@pytest.mark.parametrize(("issuer", "host", "port", "path"), [
    ("https://dex.example.com:32000", "dex.example.com", 32000, ""),
    ("https://DEX.example.com/dex", "dex.example.com", None, "/dex"),
    ("https://[::1]:443/a/b", "::1", 443, "/a/b"),
    ("https://127.0.0.1:65535/", "127.0.0.1", 65535, "/"),
])
def test_the_issuer_parse_splits(issuer: str, host: str, port: int | None, path: str) -> None:
    parts = parse_issuer(issuer)
    assert (parts.host, parts.port, parts.path, parts.scheme) == (host, port, path, "https")


@pytest.mark.parametrize("issuer", [
    "https://h:1:2", "https://[::1]:1:2", "https://h:0", "https://h:65536", "https://h:032000",
    "HTTPS://h", "https://h/.", "https://h/a/../b", "https://h//a", "https://u@h",
    "https://h?x", "https://h#x", "h:32000", "https://", "https://[v1.x]", "https://h a",
])
def test_the_issuer_parse_refuses(issuer: str) -> None:
    with pytest.raises(IssuerError):
        parse_issuer(issuer)


def test_two_merge_keys_in_one_mapping_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"dexkit.yaml:2: a second merge key '<<'"):
        parse_config("<<: {namespace: a}\n<<: {namespace: b}\n")
    with pytest.raises(ConfigError, match=r"dexkit.yaml:1: namespace: duplicate key"):
        parse_config("<<: {namespace: a, namespace: b}\n")
    # PyYAML lets the last of an inline list win, but the first of a list of aliases: a key
    # two merged mappings set is refused, a key of the mapping itself overrides them.
    with pytest.raises(ConfigError, match=r"dexkit.yaml:1: namespace: set by two merged"):
        parse_config("<<: [{namespace: a}, {namespace: b}]\n")
    with pytest.raises(ConfigError, match=r"dexkit.yaml:2: dex.replicas: set by two merged"):
        parse_config("x-a: &a {replicas: 1}\nx-b: &b {replicas: 2, <<: *a}\n"
                     "dex: {<<: [*a, *b]}\n")
    config = parse_config("<<: [{namespace: a}, {kubernetesVersion: '1.33'}]\n"
                          "dex:\n  <<: [{replicas: 3}, {replicas: 4}]\n  replicas: 2\n")
    assert (config.namespace, config.minor, config.dex.replicas) == ("a", 33, 2)


def test_a_bad_value_in_a_mapping_names_its_key() -> None:
    with pytest.raises(ConfigError, match=r"dexkit.yaml:3: dex.nodeSelector.zone: Expected str"
                                          r", got bool") as error:
        parse_config("dex:\n  nodeSelector:\n    zone: no\n")
    assert "quote the value" in error.value.hint


def test_an_optional_choice_names_its_values_not_python_types() -> None:
    """A Literal field that may be empty (``Literal[...] | None``) lists the Literal's values."""
    error = _error("clusters:\n- name: prod\n  mode: flagz\n")
    assert error.message.endswith(
        "'flagz' is not allowed; expected one of flags, authentication-config"), error.message
    assert error.hint == "did you mean 'flags'?"
    assert "typing" not in error.message and "NoneType" not in error.message
