"""The commented dexkit.yaml that `dexkit init` writes shows every key, and its examples work."""

from __future__ import annotations

import re

import yaml

from dexkit.config import Config, parse_config, to_data
from dexkit.project import config_file_keys, render_config_file
from dexkit.render.dex import render_manifests
from tests.unit.render.helpers import make_config, validate_object
from tests.unit.render.test_schema import CHART_KNOBS


def test_every_key_is_shown() -> None:
    for config in (make_config({}), make_config(CHART_KNOBS)):
        assert config_file_keys(config)[1] == []


def test_the_file_reads_back_as_the_same_config() -> None:
    for data in ({}, CHART_KNOBS, {"apiServer": {"mode": "authentication-config",
                                                 "userValidationRules": [],
                                                 "audiences": ["argocd"]}}):
        config = make_config(data)
        assert parse_config(render_config_file(config)) == config


def test_every_commented_example_is_valid_when_uncommented() -> None:
    defaults = to_data(Config())
    fields = {k for s in ("dex", "apiServer", "eks") for k in defaults[s]}
    text = render_config_file(make_config({}))
    examples = [(k, v) for k, v in re.findall(r"^  # (\w+): (.+)$", text, flags=re.MULTILINE)
                if k in fields]
    assert len(examples) > 25

    # uidExpression is the alternative to uidClaim: it gets a file of its own.
    for skip in ({"uidExpression"}, {"uidClaim", "extra"}):
        def uncomment(match: re.Match[str], skip: set[str] = skip) -> str:
            key = match[1].split(":")[0]
            return f"  {match[1]}" if key in fields and key not in skip else match[0]

        uncommented = re.sub(r"^  # (\w+: .+)$", uncomment, text, flags=re.MULTILINE)
        _check_uncommented(uncommented, [k for k, _ in examples if k not in skip])


def _check_uncommented(uncommented: str, keys: list[str]) -> None:
    uncommented = uncommented.replace("  mode: flags", "  mode: authentication-config")
    config = parse_config(uncommented, "uncommented.yaml")
    data = yaml.safe_load(uncommented)
    for key in keys:
        section = next(s for s in ("dex", "apiServer", "eks") if key in data[s])
        assert data[section][key] is not None, key
    # And what they render is valid Kubernetes.
    for manifest in render_manifests(config):
        for doc in yaml.safe_load_all(manifest.text):
            if doc and doc["kind"] != "ServiceMonitor":
                validate_object(doc, config.minor)
