"""`dexkit render --format helm-values` through the official Dex chart and a real API server.

Helm 4 (built from helm.sh/helm/v4 like every other peer) renders the chart archive with
dexkit's values; the objects must pass a strict server-side dry run, the Dex config in the
chart's Secret must equal dexkit's (parsed; but for ``crdHandling``: under the chart, Dex
creates its own CRDs with the ClusterRole the chart grants), and the chart's Deployment must
carry dexkit's pod: image, security contexts, resources, scheduling, env, volumes and mounts.

The chart is third-party and never copied into the repository: it is found through
``DEXKIT_DEX_CHART``, else ``../shared/peers/dex-chart-0.24.0.tgz`` beside the checkout.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit.render.dex import render_manifests
from dexkit.render.helm import CHART_VERSION, render_helm_values
from dexkit.sandbox import controlplane
from tests.e2e.conftest import KUBERNETES_VERSION, peer_unavailable
from tests.e2e.test_render_e2e import install_service_monitor_crd
from tests.unit.render.helpers import GOLDEN, connector_pems, documents, make_config
from tests.unit.render.test_schema import CHART_KNOBS

pytestmark = pytest.mark.e2e
MINOR = ".".join(KUBERNETES_VERSION.split(".")[:2])
CHART_FILE = f"dex-chart-{CHART_VERSION}.tgz"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dex_chart() -> Path:
    candidates = [Path(os.environ["DEXKIT_DEX_CHART"])] if os.environ.get(
        "DEXKIT_DEX_CHART") else []
    candidates.append(REPO.parent / "shared" / "peers" / CHART_FILE)
    for path in candidates:
        if path.is_file():
            return path
    peer_unavailable(f"the official Dex chart {CHART_FILE} is not at "
                     f"{' or '.join(map(str, candidates))} (set DEXKIT_DEX_CHART)")
    raise AssertionError  # unreachable: peer_unavailable skips or fails


@pytest.fixture(scope="session")
def helm(peer: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory,
         dex_chart: Path) -> Callable[[dict[str, Any], str], list[dict[str, Any]]]:
    binary = peer("helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, "HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}

    def template(config_data: dict[str, Any], values_text: str) -> list[dict[str, Any]]:
        values = home / "values.yaml"
        values.write_text(values_text)
        result = subprocess.run(
            [str(binary), "template", "dex", str(dex_chart), "--namespace",
             config_data.get("namespace", "dex"), "--kube-version", KUBERNETES_VERSION,
             "-f", str(values)], capture_output=True, text=True, env=env, timeout=120,
            check=False)
        assert result.returncode == 0, result.stderr
        return documents(result.stdout)

    return template


def _case(name: str) -> tuple[dict[str, Any], dict[str, str]]:
    if name == "chart-knobs":
        return dict(CHART_KNOBS), {}
    data = yaml.safe_load((GOLDEN / name / "dexkit.yaml").read_text())
    return data, connector_pems(make_config(data), GOLDEN / name)


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


@pytest.mark.parametrize("case", ["default", "static-authn", "ldap-postgres", "chart-knobs"])
def test_the_charts_dex_config_is_dexkits(
        helm: Callable[[dict[str, Any], str], list[dict[str, Any]]], case: str) -> None:
    data, _ = _case(case)
    config = make_config(dict(data, kubernetesVersion=MINOR))
    objects = _by_kind(helm(data, render_helm_values(config).text()))
    secret = objects["Secret"]
    chart_config = yaml.safe_load(base64.b64decode(secret["data"]["config.yaml"]))
    (ours,) = [doc for m in render_manifests(config, _case(case)[1])
               for doc in documents(m.text) if doc["kind"] == "Secret"
               and doc["metadata"]["name"] == "dex-config"]
    expected = yaml.safe_load(ours["stringData"]["config.yaml"])
    if expected["storage"]["type"] == "kubernetes":
        assert expected["storage"]["config"].pop("crdHandling") == "check"
        assert "crdHandling" not in chart_config["storage"]["config"]
    assert chart_config == expected


@pytest.mark.parametrize("case", ["default", "static-authn", "ldap-postgres", "chart-knobs"])
def test_the_charts_deployment_runs_dexkits_pod(
        helm: Callable[[dict[str, Any], str], list[dict[str, Any]]], case: str) -> None:
    data, pems = _case(case)
    config = make_config(dict(data, kubernetesVersion=MINOR))
    chart = _by_kind(helm(data, render_helm_values(config).text()))["Deployment"]["spec"]
    ours = next(doc for m in render_manifests(config, pems) for doc in documents(m.text)
                if doc["kind"] == "Deployment")["spec"]
    assert chart.get("replicas") == ours.get("replicas")
    for key in ("revisionHistoryLimit", "strategy"):
        assert chart.get(key) == ours.get(key), key
    chart_pod, our_pod = chart["template"]["spec"], ours["template"]["spec"]
    for key in ("securityContext", "nodeSelector", "tolerations", "affinity",
                "topologySpreadConstraints", "priorityClassName", "hostAliases",
                "imagePullSecrets", "serviceAccountName"):
        assert chart_pod.get(key) == our_pod.get(key), key
    (chart_c,), (our_c,) = chart_pod["containers"], our_pod["containers"]
    for key in ("image", "imagePullPolicy", "securityContext", "resources", "env", "envFrom"):
        assert chart_c.get(key) == our_c.get(key), key
    for key in ("readinessProbe", "livenessProbe"):
        assert chart_c[key]["httpGet"] == our_c[key]["httpGet"], key
    # Every volume and mount but the config's (the chart mounts its own Secret at /etc/dex).
    assert [v for v in chart_pod["volumes"] if v["name"] != "config"] == \
        [v for v in our_pod["volumes"] if v["name"] != "config"]
    assert [m for m in chart_c["volumeMounts"] if m["name"] != "config"] == \
        [m for m in our_c["volumeMounts"] if m["name"] != "config"]
    labels = chart["template"]["metadata"]["labels"]
    assert {k: v for k, v in ours["template"]["metadata"]["labels"].items()
            if k not in ("app.kubernetes.io/managed-by",)}.items() <= labels.items()


def test_the_charts_objects_pass_a_server_side_dry_run(
        helm: Callable[[dict[str, Any], str], list[dict[str, Any]]],
        control_plane: controlplane.ControlPlane, kubectl: Path) -> None:
    install_service_monitor_crd(kubectl, control_plane)
    namespace = "dexkit-helm"
    data = dict(CHART_KNOBS, namespace=namespace)
    config = make_config(dict(data, kubernetesVersion=MINOR))
    objects = helm(data, render_helm_values(config).text())
    assert {"Deployment", "Service", "Secret", "Ingress", "NetworkPolicy",
            "HorizontalPodAutoscaler", "ServiceMonitor", "PodDisruptionBudget"} <= \
        {o["kind"] for o in objects}
    run = [str(kubectl), "--kubeconfig", str(control_plane.kubeconfig)]
    created = subprocess.run([*run, "create", "namespace", namespace], capture_output=True,
                             text=True, check=False)
    assert created.returncode == 0, created.stderr
    try:
        stream = "".join(f"---\n{yaml.safe_dump(o)}" for o in objects)
        result = subprocess.run([*run, "apply", "--server-side", "--dry-run=server",
                                 "--validate=strict", "--field-manager=helm", "-f", "-"],
                                input=stream, capture_output=True, text=True, check=False,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("(server dry run)") == len(objects)
    finally:
        subprocess.run([*run, "delete", "namespace", namespace, "--wait=false"],
                       capture_output=True, check=False)
