"""Values for the official Dex chart: the parts that do not need Helm to check.

tests/e2e/test_helm_values.py runs the real `helm template` over the chart archive.
"""

from __future__ import annotations

import yaml

from dexkit.render.dex import render_dex_config
from dexkit.render.helm import image_values, render_helm_values
from tests.unit.render.helpers import make_config


def test_config_is_dexkits_dex_config() -> None:
    config = make_config({"dex": {"extraConfig": {"frontend": {"theme": "dark"}}}})
    values = render_helm_values(config).values
    ours = yaml.safe_load(render_dex_config(config))
    # Under the chart Dex creates its CRDs itself (the chart's ClusterRole lets it).
    assert ours["storage"]["config"].pop("crdHandling") == "check"
    assert values["config"] == ours
    assert values["rbac"] == {"create": True, "createClusterScoped": True}
    assert yaml.safe_load(render_helm_values(config).text())["config"] == values["config"]


def test_image_is_split_as_the_chart_wants() -> None:
    assert image_values("ghcr.io/dexidp/dex:v2.45.1") == {"repository": "ghcr.io/dexidp/dex",
                                                          "tag": "v2.45.1"}
    assert image_values("registry:5000/dex@sha256:abc") == {"repository": "registry:5000/dex",
                                                           "digest": "sha256:abc"}
    assert image_values("registry:5000/dex") == {"repository": "registry:5000/dex",
                                                "tag": "latest"}


def test_https_gets_dexkits_port_and_the_plain_port_moves_aside() -> None:
    values = render_helm_values(make_config({})).values
    assert values["https"] == {"enabled": True}
    assert values["service"]["ports"]["https"] == {"port": 5556, "nodePort": 32000}
    assert values["service"]["ports"]["http"] == {"port": 5555}
    other = render_helm_values(make_config({"dex": {"service": {"port": 443}}})).values
    assert other["service"]["ports"]["http"] == {"port": 5556}


def test_the_charts_limits_are_said() -> None:
    warnings = " ".join(render_helm_values(make_config({"dex": {"ingress": {
        "enabled": True}}})).warnings)
    assert "plain-HTTP listener" in warnings
    assert "Ingress routes to Dex's plain-HTTP port" in warnings
    assert "does not create the namespace" in warnings


def test_rbac_follows_the_storage() -> None:
    assert render_helm_values(make_config({})).values["rbac"]["create"] is True
    memory = render_helm_values(make_config({"dex": {"storage": {"type": "memory"}}}))
    assert memory.values["rbac"] == {"create": False, "createClusterScoped": False}
