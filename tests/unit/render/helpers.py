"""Shared by the render tests: configs from plain data, the golden cases, schema validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from dexkit.config import Config, parse_config
from dexkit.render.bundle import render_bundle
from dexkit.render.dex import project_connector_cas

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASES = ("default", "static-authn", "ldap-postgres")
# What the golden kind configs mount from: stands for the machine's absolute paths.
PROJECT_DIR = "/srv/dexkit"
OUT_DIR = "/srv/dexkit/out"
GUIDE_HASH = "$2a$10$2b2cU8CPhOTaGrs1HRQuAueS7JTT5ZHsHSzYiFPm1leZck7Mc8T4W"


def make_config(data: dict[str, Any] | None = None) -> Config:
    """A validated Config from dexkit.yaml's own (camelCase) keys, as a user would write them."""
    return parse_config(yaml.safe_dump(data or {}), "test.yaml")


def golden_ca() -> str:
    return (GOLDEN / "ca.pem").read_text()


def case_config(case: str) -> Config:
    return parse_config((GOLDEN / case / "dexkit.yaml").read_text(), f"{case}/dexkit.yaml")


def connector_pems(config: Config, base: Path) -> dict[str, str]:
    return {cid: (base / rel).read_text() for cid, rel in project_connector_cas(config).items()}


def render_case(case: str) -> dict[str, str]:
    config = case_config(case)
    return render_bundle(config, ca_pem=golden_ca(), project_dir=PROJECT_DIR, out_dir=OUT_DIR,
                         connector_ca_pems=connector_pems(config, GOLDEN / case))


def schema_version(minor: int) -> str:
    """The kubernetes-validate schema for exactly 1.<minor>; never a silent fallback."""
    wanted = f"1.{minor}.0"
    shipped = set(kubernetes_validate.utils.all_versions())
    if wanted not in shipped:
        pytest.fail(f"kubernetes-validate {kubernetes_validate.__version__} ships no schema for "
                    f"Kubernetes 1.{minor} (it has {sorted(shipped)}); upgrade it")
    return wanted


def validate_object(obj: dict[str, Any], minor: int) -> None:
    """Validate against the strict OpenAPI schema of 1.<minor>: unknown fields fail too."""
    try:
        used = kubernetes_validate.validate(obj, schema_version(minor), strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.path)
        pytest.fail(f"{obj.get('kind')} {obj.get('metadata', {}).get('name')} is invalid for "
                    f"1.{minor} at {where}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(exc.message)
    assert used == f"1.{minor}", f"validated against {used}, not 1.{minor}"


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


SERVICE_MONITOR_CRD = Path(__file__).resolve().parents[2] / "fixtures" / "servicemonitor-crd.yaml"


def validate_service_monitor(obj: dict[str, Any]) -> None:
    """Validate against the test's own structural ServiceMonitor CRD schema, as the API server
    would (unknown fields fail: the schema is closed where Kubernetes' would prune)."""
    import jsonschema

    crd = yaml.safe_load(SERVICE_MONITOR_CRD.read_text())
    (version,) = crd["spec"]["versions"]
    schema = _closed(version["schema"]["openAPIV3Schema"])
    assert obj["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
    try:
        jsonschema.validate(obj, schema)
    except jsonschema.ValidationError as exc:
        pytest.fail(f"ServiceMonitor is invalid at {'/'.join(map(str, exc.path))}: {exc.message}")


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with additionalProperties false wherever it lists properties."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _closed(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("items"), dict):
        out["items"] = _closed(out["items"])
    return out
