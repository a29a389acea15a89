"""The Helm chart's knobs in dexkit.yaml: what each renders, and the mistakes each refuses."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dexkit.errors import ConfigError
from dexkit.render.dex import LABELS, render_dex_config, render_manifests
from tests.unit.render.helpers import (
    documents,
    make_config,
    validate_service_monitor,
)
from tests.unit.render.test_schema import CHART_KNOBS


def _objects(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc
            for m in render_manifests(make_config(data)) for doc in documents(m.text)}


def _pod(data: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = _objects(data)["Deployment/dex"]["spec"]["template"]["spec"]
    return spec


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        render_manifests(make_config(data))
    return f"{info.value.message} | {info.value.hint}"


@pytest.fixture(scope="module")
def knobs() -> dict[str, dict[str, Any]]:
    return _objects(CHART_KNOBS)


def test_pod_scheduling_knobs_reach_the_pod(knobs: dict[str, dict[str, Any]]) -> None:
    dex = CHART_KNOBS["dex"]
    deployment = knobs["Deployment/dex"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == dex["nodeSelector"]
    assert pod["tolerations"] == dex["tolerations"]
    assert pod["affinity"] == dex["affinity"]
    assert pod["topologySpreadConstraints"] == dex["topologySpreadConstraints"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["hostAliases"] == dex["hostAliases"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert deployment["spec"]["strategy"] == dex["strategy"]
    assert deployment["spec"]["revisionHistoryLimit"] == 3
    (container,) = pod["containers"]
    assert container["resources"] == dex["resources"]
    assert container["imagePullPolicy"] == "Always"


def test_the_autoscaler_owns_the_replica_count(knobs: dict[str, dict[str, Any]]) -> None:
    assert "replicas" not in knobs["Deployment/dex"]["spec"]
    hpa = knobs["HorizontalPodAutoscaler/dex"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "dex"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu", "memory"]
    assert "PodDisruptionBudget/dex" in knobs


def test_env_envfrom_volumes_come_after_dexkits_own(knobs: dict[str, dict[str, Any]]) -> None:
    (container,) = knobs["Deployment/dex"]["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert names == ["GITHUB_CLIENT_ID", "GITHUB_CLIENT_SECRET", "KUBERNETES_POD_NAMESPACE",
                     "TZ", "NODE_NAME"]
    assert container["envFrom"] == CHART_KNOBS["dex"]["envFrom"]
    volumes = [v["name"] for v in knobs["Deployment/dex"]["spec"]["template"]["spec"]["volumes"]]
    assert volumes == ["config", "tls", "tmp", "theme", "ca-bundle"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["theme"] == "/srv/dex/web/themes/corp"


def test_common_labels_go_everywhere_but_selectors(knobs: dict[str, dict[str, Any]]) -> None:
    for name, obj in knobs.items():
        assert obj["metadata"]["labels"]["team"] == "platform", name
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dexkit", name
    deployment = knobs["Deployment/dex"]["spec"]
    assert deployment["selector"]["matchLabels"] == {"app.kubernetes.io/name": "dex"}
    pod_meta = deployment["template"]["metadata"]
    assert pod_meta["labels"]["sidecar.istio.io/inject"] == "false"
    assert pod_meta["annotations"]["prometheus.io/scrape"] == "true"
    assert "checksum/config" in pod_meta["annotations"]
    assert knobs["Service/dex"]["spec"]["selector"] == {"app.kubernetes.io/name": "dex"}


def test_service_account_annotations(knobs: dict[str, dict[str, Any]]) -> None:
    annotations = knobs["ServiceAccount/dex"]["metadata"]["annotations"]
    assert annotations == {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/dex"}


def test_service_annotations_and_the_telemetry_and_grpc_ports(
        knobs: dict[str, dict[str, Any]]) -> None:
    service = knobs["Service/dex"]
    assert service["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"https": 5556, "telemetry": 5558, "grpc": 5557}
    assert all("nodePort" not in p for p in service["spec"]["ports"])  # ClusterIP
    (container,) = knobs["Deployment/dex"]["spec"]["template"]["spec"]["containers"]
    assert {p["name"] for p in container["ports"]} == {"https", "telemetry", "grpc"}


def test_the_default_service_exposes_https_only() -> None:
    ports = _objects({})["Service/dex"]["spec"]["ports"]
    assert ports == [{"name": "https", "port": 5556, "targetPort": "https", "protocol": "TCP",
                      "nodePort": 32000}]


def test_ingress_with_several_hosts_and_tls_entries(knobs: dict[str, dict[str, Any]]) -> None:
    spec = knobs["Ingress/dex"]["spec"]
    assert [r["host"] for r in spec["rules"]] == ["login.example.com", "dex.example.org"]
    assert spec["rules"][0]["http"]["paths"][0]["path"] == "/dex"  # the issuer's path
    assert spec["rules"][1]["http"]["paths"][0] == {
        "path": "/", "pathType": "ImplementationSpecific",
        "backend": {"service": {"name": "dex", "port": {"name": "https"}}}}
    assert spec["tls"] == [{"hosts": ["login.example.com"], "secretName": "login-tls"},
                           {"hosts": ["dex.example.org"],
                            "secretName": "login.example.com.tls"}]


def test_ingress_hosts_must_serve_the_issuer() -> None:
    with pytest.raises(ConfigError) as info:
        make_config({"issuer": "https://login.example.com",
                     "dex": {"ingress": {"enabled": True, "hosts": [{"host": "x.example.com"}]}}})
    assert "dex.ingress.hosts" in info.value.message
    assert "login.example.com" in info.value.message


def test_service_monitor_scrapes_the_telemetry_port(knobs: dict[str, dict[str, Any]]) -> None:
    monitor = knobs["ServiceMonitor/dex"]
    validate_service_monitor(monitor)
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "telemetry", "path": "/metrics", "scheme": "http",
                        "interval": "30s", "scrapeTimeout": "10s"}
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["dex"]}


def test_a_service_monitor_turns_the_telemetry_port_on() -> None:
    objects = _objects({"dex": {"serviceMonitor": {"enabled": True}}})
    assert "telemetry" in {p["name"] for p in objects["Service/dex"]["spec"]["ports"]}


def test_the_service_monitor_schema_is_strict() -> None:
    monitor = _objects({"dex": {"serviceMonitor": {"enabled": True}}})["ServiceMonitor/dex"]
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(pytest.fail.Exception):
        validate_service_monitor(monitor)


def test_network_policy_opens_dex_ports_only(knobs: dict[str, dict[str, Any]]) -> None:
    spec = knobs["NetworkPolicy/dex"]["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "dex"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = spec["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["https", "telemetry", "grpc"]
    assert rule["from"] == CHART_KNOBS["dex"]["networkPolicy"]["ingressFrom"]
    assert spec["egress"] == CHART_KNOBS["dex"]["networkPolicy"]["egressRules"]


def test_network_policy_without_egress_rules_leaves_egress_alone() -> None:
    spec = _objects({"dex": {"networkPolicy": {"enabled": True}}})["NetworkPolicy/dex"]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert "egress" not in spec
    assert "from" not in spec["ingress"][0]


def test_grpc_is_mutual_tls_with_the_project_ca() -> None:
    dex = yaml.safe_load(render_dex_config(make_config({"dex": {"grpc": {"enabled": True}}})))
    assert dex["grpc"] == {"addr": "0.0.0.0:5557", "tlsCert": "/etc/dex-tls/tls.crt",
                           "tlsKey": "/etc/dex-tls/tls.key",
                           "tlsClientCA": "/etc/dex-tls/ca.crt", "reflection": False}
    assert "grpc" not in yaml.safe_load(render_dex_config(make_config({})))


def test_knob_defaults_render_what_dexkit_rendered_before() -> None:
    pod = _pod({})
    assert "nodeSelector" not in pod and "tolerations" not in pod and "affinity" not in pod
    assert "topologySpreadConstraints" not in pod
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                 "limits": {"memory": "256Mi"}}
    assert _objects({})["Deployment/dex"]["metadata"]["labels"] == dict(LABELS)


def test_more_replicas_still_spread_over_nodes_by_default() -> None:
    (spread,) = _pod({"dex": {"replicas": 2}})["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert "topologySpreadConstraints" not in _pod({"dex": {"replicas": 2,
                                                            "topologySpreadConstraints": []}})


@pytest.mark.parametrize(("dex", "expected"), [
    ({"commonLabels": {"app.kubernetes.io/name": "x"}}, "dexkit's own"),
    ({"commonLabels": {"bad key!": "x"}}, "not a valid label name"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "not a Kubernetes quantity"),
    ({"tolerations": [{"operator": "Exists", "value": "x"}]}, "takes no value"),
    ({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}, "RollingUpdate"),
    ({"volumes": [{"name": "tls", "emptyDir": {}}]}, "dexkit's own"),
    ({"volumes": [{"name": "a", "emptyDir": {}, "secret": {}}]}, "exactly one source"),
    ({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, "names no volume"),
    ({"envFrom": [{"prefix": "X"}]}, "exactly one of configMapRef or secretRef"),
    ({"envVars": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {}}}]}, "cannot both"),
    ({"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": 50},
      "resources": {"requests": {"memory": "64Mi"}}}, "needs a cpu request"),
    ({"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}, "below"),
    ({"serviceMonitor": {"enabled": True, "interval": "often"}}, "not a duration"),
    ({"hostAliases": [{"ip": "not-an-ip", "hostnames": ["a"]}]}, "not an IP address"),
    ({"affinity": {"nodeAfinity": {}}}, "nodeAffinity"),
])
def test_bad_knobs_are_refused_with_their_key(dex: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_config({"dex": dex})
    text = f"{info.value.message} {info.value.hint}"
    assert expected in text
    assert "test.yaml:" in info.value.message and "dex." in info.value.message


def test_user_env_may_not_replace_dexkits() -> None:
    assert "GITHUB_CLIENT_ID is set by dexkit" in _error(
        {"dex": {"env": {"GITHUB_CLIENT_ID": "x"}}})
    assert "given twice" in _error({"dex": {"env": {"A": "1"}, "envVars": [{"name": "A"}]}})


def test_user_mounts_may_not_cover_dexkits() -> None:
    data = {"dex": {"volumes": [{"name": "x", "emptyDir": {}}],
                    "volumeMounts": [{"name": "x", "mountPath": "/etc/dex-tls/extra"}]}}
    assert "would cover /etc/dex-tls" in _error(data)


def test_shared_state_is_needed_to_autoscale() -> None:
    data = {"dex": {"storage": {"type": "memory"},
                    "autoscaling": {"enabled": True, "maxReplicas": 3},
                    "resources": {"requests": {"cpu": "10m"}}}}
    assert "autoscaling" in _error(data)
