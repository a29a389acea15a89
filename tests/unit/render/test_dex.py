"""Dex's config and manifests: the rules of dexkit.render.dex, one test each."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import yaml

from dexkit.errors import ConfigError
from dexkit.render.dex import (
    LABELS,
    config_checksum,
    credential_envs,
    render_connector_ca_secret,
    render_dex_config,
    render_manifests,
    tls_secret_name,
)
from tests.unit.render.helpers import GUIDE_HASH, documents, make_config

STATIC = {"connectors": [], "staticUsers": [{
    "email": "admin@example.com", "username": "admin", "userID": "1", "hash": GUIDE_HASH,
    "groups": ["team-a", "team-a/admins"]}]}


def _objects(data: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    config = make_config(data)
    return {f"{doc['kind']}/{doc['metadata']['name']}": doc
            for m in render_manifests(config) for doc in documents(m.text)}


def _dex(data: dict[str, Any] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(render_dex_config(make_config(data)))
    return loaded


def _deployment(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return _objects(data)["Deployment/dex"]


def test_dex_config_has_the_guides_shape() -> None:
    dex = _dex()
    assert dex["issuer"] == "https://dex.example.com:32000"
    # dexkit applies the CRDs (Dex v2.45.1 has crdHandling): Dex only checks them.
    assert dex["storage"] == {"type": "kubernetes", "config": {"inCluster": True,
                                                               "crdHandling": "check"}}
    assert dex["web"] == {"https": "0.0.0.0:5556", "tlsCert": "/etc/dex-tls/tls.crt",
                          "tlsKey": "/etc/dex-tls/tls.key"}
    assert dex["telemetry"] == {"http": "0.0.0.0:5558"}
    assert dex["oauth2"] == {"skipApprovalScreen": True}
    github = dex["connectors"][0]
    assert github["type"] == "github"
    assert github["config"]["clientID"] == "$GITHUB_CLIENT_ID"
    assert github["config"]["clientSecret"] == "$GITHUB_CLIENT_SECRET"
    assert github["config"]["redirectURI"] == "https://dex.example.com:32000/callback"
    assert dex["enablePasswordDB"] is False


def test_the_github_secret_is_the_guides() -> None:
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]
           for e in _deployment()["spec"]["template"]["spec"]["containers"][0]["env"]
           if "secretKeyRef" in e["valueFrom"]}
    assert env == {"GITHUB_CLIENT_ID": {"name": "github-client", "key": "client-id"},
                   "GITHUB_CLIENT_SECRET": {"name": "github-client", "key": "client-secret"}}


def test_static_users_get_the_password_db_and_grant() -> None:
    dex = _dex(STATIC)
    assert dex["enablePasswordDB"] is True
    assert dex["oauth2"]["passwordConnector"] == "local"
    (user,) = dex["staticPasswords"]
    assert user == {"email": "admin@example.com", "hash": GUIDE_HASH, "username": "admin",
                    "userID": "1", "groups": ["team-a", "team-a/admins"]}
    assert "connectors" not in dex


def test_ldap_is_the_password_connector_and_its_password_comes_from_a_secret() -> None:
    dex = _dex({"connectors": [{"type": "ldap", "id": "corp"}]})
    assert dex["oauth2"]["passwordConnector"] == "corp"
    assert dex["connectors"][0]["config"]["bindPW"] == "$CORP_BIND_PASSWORD"
    assert credential_envs(make_config({"connectors": [{"type": "ldap", "id": "corp"}]})) \
        .connectors["corp"]["bind_password"].secret == "ldap-bind"


def test_no_secret_value_is_ever_rendered() -> None:
    for manifest in render_manifests(make_config({
            "connectors": [{"type": "github"}, {"type": "oidc"}, {"type": "ldap"}],
            "dex": {"storage": {"type": "postgres", "host": "db"}},
            "clients": [{"id": "kubernetes"}, {"id": "web", "public": False,
                                                "secretName": "web-client"}]})):
        for doc in documents(manifest.text):
            assert "data" not in doc  # Secrets carry stringData we can read, never data
    dex = _dex({"clients": [{"id": "kubernetes"}, {"id": "web", "public": False,
                                                   "secretName": "web-client"}]})
    web = next(c for c in dex["staticClients"] if c["id"] == "web")
    assert web["secretEnv"] == "DEX_CLIENT_WEB_SECRET" and "secret" not in web
    assert "public" not in web


def test_clients_get_the_device_callback_and_the_keyboard_uri_once() -> None:
    uri = "/device/callback"  # relative, as Dex compares it
    oob = "urn:ietf:wg:oauth:2.0:oob"
    dex = _dex({"clients": [{"id": "kubernetes", "redirectURIs": [oob, uri]}]})
    assert dex["staticClients"][0]["redirectURIs"] == [oob, uri]
    dex = _dex()
    assert dex["staticClients"][0]["redirectURIs"][-2:] == [uri, oob]
    assert "http://127.0.0.1:8000/callback" in dex["staticClients"][0]["redirectURIs"]


def test_a_confidential_client_gets_no_out_of_band_uri() -> None:
    dex = _dex({"clients": [{"id": "web", "public": False, "secretName": "web-client"},
                            {"id": "kubernetes"}]})
    assert "urn:ietf:wg:oauth:2.0:oob" not in dex["staticClients"][0]["redirectURIs"]


@pytest.mark.parametrize(("storage", "expected"), [
    ({"type": "memory"}, {"type": "memory"}),
    ({"type": "sqlite3"}, {"type": "sqlite3", "config": {"file": "/var/dex/dex.db"}}),
    ({"type": "postgres", "host": "db"}, {"type": "postgres", "config": {
        "host": "db", "port": 5432, "database": "dex", "user": "dex",
        "password": "$DEX_POSTGRES_PASSWORD", "ssl": {"mode": "verify-full"}}}),
])
def test_storage_options(storage: dict[str, Any], expected: dict[str, Any]) -> None:
    data = {"dex": {"storage": storage}}
    assert _dex(data)["storage"] == expected
    objects = _objects(data)
    # RBAC and the service-account token exist only for the kubernetes storage.
    assert not any(k.split("/")[0] in ("Role", "ClusterRole") for k in objects)
    assert objects["Deployment/dex"]["spec"]["template"]["spec"][
        "automountServiceAccountToken"] is False


def test_sqlite_gets_a_writable_directory() -> None:
    pod = _deployment({"dex": {"storage": {"type": "sqlite3"}}})["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/var/dex"] == "data"
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]


@pytest.mark.parametrize("storage", ["memory", "sqlite3"])
def test_single_pod_storage_refuses_replicas(storage: str) -> None:
    with pytest.raises(ConfigError, match="its own users, keys and sessions"):
        render_dex_config(make_config({"dex": {"replicas": 2, "storage": {"type": storage}}}))


def test_storage_rbac_is_least_privilege() -> None:
    objects = _objects()
    role = objects["Role/dex"]
    assert role["metadata"]["namespace"] == "dex"
    (rule,) = role["rules"]
    assert rule["apiGroups"] == ["dex.coreos.com"]
    # Dex v2.45.1's ten kinds (storage/kubernetes/types.go at 11d2eeb52b42).
    assert rule["resources"] == ["authcodes", "authrequests", "connectors", "devicerequests",
                                 "devicetokens", "oauth2clients", "offlinesessionses",
                                 "passwords", "refreshtokens", "signingkeies"]
    assert "*" not in rule["resources"] and "*" not in rule["verbs"]
    assert rule["verbs"] == ["create", "delete", "get", "list", "update"]
    # dexkit applies the CRDs: Dex has no cluster-wide right at all.
    assert not [k for k in objects if k.startswith(("ClusterRole/", "ClusterRoleBinding/"))]
    crds = {k: v for k, v in objects.items() if k.startswith("CustomResourceDefinition/")}
    assert sorted(c["spec"]["names"]["plural"] for c in crds.values()) == rule["resources"]
    assert objects["RoleBinding/dex"]["roleRef"]["kind"] == "Role"


@pytest.mark.parametrize(("image", "kinds", "crds_by_dexkit"), [
    ("ghcr.io/dexidp/dex:v2.45.1", 10, True),
    ("ghcr.io/dexidp/dex:v2.45.0-distroless", 10, True),
    # Dex's name for a commit of its main branch on the way to 2.46.0 (ab64ed778070).
    ("dexkit.local/dex:v2.46.0-20260806171424-ab64ed77", 12, True),
    ("ghcr.io/dexidp/dex:v2.46.0", 12, True),
    ("ghcr.io/dexidp/dex:latest", 12, True),  # no release named: the newest dexkit knows
    ("ghcr.io/dexidp/dex@sha256:" + "a" * 64, 12, True),
    ("ghcr.io/dexidp/dex:v2.44.0", 10, False),  # no crdHandling: Dex creates its CRDs
])
def test_rbac_and_crds_follow_the_dex_version(image: str, kinds: int,
                                              crds_by_dexkit: bool) -> None:
    objects = _objects({"dex": {"image": image}})
    (rule,) = objects["Role/dex"]["rules"]
    assert len(rule["resources"]) == kinds
    assert ({"useridentities", "authsessions"} <= set(rule["resources"])) == (kinds == 12)
    crds = [v for k, v in objects.items() if k.startswith("CustomResourceDefinition/")]
    storage = _dex({"dex": {"image": image}})["storage"]["config"]
    if crds_by_dexkit:
        assert len(crds) == kinds and storage.get("crdHandling") == "check"
        assert "ClusterRole/dexkit:dex-crds" not in objects
        for crd in crds:
            plural = crd["spec"]["names"]["plural"]
            assert crd["metadata"]["name"] == f"{plural}.dex.coreos.com"
            assert crd["spec"]["scope"] == "Namespaced"
            (version,) = crd["spec"]["versions"]
            assert version["schema"]["openAPIV3Schema"] == {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}
    else:
        assert not crds and "crdHandling" not in storage
        cluster_role = objects["ClusterRole/dexkit:dex-crds"]
        assert cluster_role["rules"] == [{"apiGroups": ["apiextensions.k8s.io"],
                                          "resources": ["customresourcedefinitions"],
                                          "verbs": ["create"]}]
        binding = objects["ClusterRoleBinding/dexkit:dex-crds:dex"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dex",
                                        "namespace": "dex"}]


def test_an_image_without_a_release_is_warned_about() -> None:
    assert not [w for w in make_config().warnings() if "names no Dex release" in w]
    (warning,) = [w for w in make_config({"dex": {"image": "ghcr.io/dexidp/dex:master"}})
                  .warnings() if "names no Dex release" in w]
    assert "newest Dex dexkit knows" in warning


def test_deployment_is_locked_down() -> None:
    deployment = _deployment()
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/dexidp/dex:v2.45.1"
    assert container["command"] == ["dex", "serve", "/etc/dex/cfg/config.yaml"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "https": 5556, "telemetry": 5558}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready",
                                                      "port": "telemetry"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz/live",
                                                     "port": "telemetry"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "dex.example.com.tls"
    assert volumes["config"]["secret"]["secretName"] == "dex-config"
    assert deployment["spec"]["replicas"] == 1
    assert "topologySpreadConstraints" not in pod


def test_checksum_is_the_sha256_of_the_rendered_config() -> None:
    config = make_config()
    annotations = _deployment()["spec"]["template"]["metadata"]["annotations"]
    expected = hashlib.sha256(render_dex_config(config).encode()).hexdigest()
    assert annotations["checksum/config"] == expected == config_checksum(render_dex_config(config))
    other = _deployment({"dex": {"logLevel": "debug"}})["spec"]["template"]["metadata"]
    assert other["annotations"]["checksum/config"] != expected


def test_config_secret_carries_the_config() -> None:
    config = make_config()
    secret = _objects()["Secret/dex-config"]
    assert secret["stringData"]["config.yaml"] == render_dex_config(config)


def test_replicas_bring_a_budget_and_spread() -> None:
    objects = _objects({"dex": {"replicas": 3}})
    pod = objects["Deployment/dex"]["spec"]["template"]["spec"]
    assert objects["Deployment/dex"]["spec"]["replicas"] == 3
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    budget = objects["PodDisruptionBudget/dex"]
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "dex"}
    assert "PodDisruptionBudget/dex" not in _objects()


@pytest.mark.parametrize("kind", ["ClusterIP", "LoadBalancer"])
def test_service_types(kind: str) -> None:
    service = _objects({"dex": {"service": {"type": kind}}})["Service/dex"]
    assert service["spec"]["type"] == kind
    assert "nodePort" not in service["spec"]["ports"][0]


def test_node_port_service_is_the_guides() -> None:
    (port,) = _objects()["Service/dex"]["spec"]["ports"]
    assert port == {"name": "https", "port": 5556, "targetPort": "https", "protocol": "TCP",
                    "nodePort": 32000}


def test_ingress_follows_the_issuer() -> None:
    ingress = _objects({"issuer": "https://dex.example.com/dex",
                        "dex": {"ingress": {"enabled": True}}})["Ingress/dex"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "dex.example.com"
    assert rule["http"]["paths"][0]["path"] == "/dex"
    assert ingress["spec"]["tls"] == [{"hosts": ["dex.example.com"],
                                       "secretName": "dex.example.com.tls"}]
    ip_ingress = _objects({"issuer": "https://10.0.0.5:32000",
                           "dex": {"ingress": {"enabled": True}}})["Ingress/dex"]
    assert "host" not in ip_ingress["spec"]["rules"][0]
    assert "Ingress/dex" not in _objects()


def test_everything_is_labelled() -> None:
    for key, obj in _objects({**STATIC, "dex": {"replicas": 2, "ingress": {"enabled": True}},
                              "rbac": [{"group": "g", "clusterRole": "view"}]}).items():
        labels = obj["metadata"]["labels"]
        assert {k: labels[k] for k in LABELS} == dict(LABELS), key


def test_builtin_namespace_is_not_rendered() -> None:
    objects = _objects({"namespace": "kube-system"})
    assert not any(k.startswith("Namespace/") for k in objects)
    assert objects["Deployment/dex"]["metadata"]["namespace"] == "kube-system"


def test_user_rbac_applies_the_api_servers_prefixes() -> None:
    objects = _objects({"rbac": [{"group": "team-a/admins", "clusterRole": "cluster-admin"},
                                 {"user": "jane@example.com", "clusterRole": "view"}],
                        "apiServer": {"groupsPrefix": "dex:"}})
    bindings = [o for k, o in objects.items() if k.startswith("ClusterRoleBinding/dexkit:")
                and "dex-crds" not in k]
    subjects = sorted((b["subjects"][0]["kind"], b["subjects"][0]["name"]) for b in bindings)
    assert subjects == [("Group", "dex:team-a/admins"), ("User", "jane@example.com")]
    sub = _objects({"rbac": [{"user": "1234", "clusterRole": "view"}],
                    "apiServer": {"usernameClaim": "sub"}})
    (binding,) = [o for k, o in sub.items() if k.startswith("ClusterRoleBinding/dexkit:view")]
    assert binding["subjects"][0]["name"] == "https://dex.example.com:32000#1234"


@pytest.mark.parametrize(("issuer", "name"), [
    ("https://dex.example.com:32000", "dex.example.com.tls"),
    ("https://127.0.0.1:32000", "127.0.0.1.tls"),
    ("https://[::1]:32000", "ip-0000-0000-0000-0000-0000-0000-0000-0001.tls"),
])
def test_tls_secret_name(issuer: str, name: str) -> None:
    assert tls_secret_name(make_config({"issuer": issuer})) == name


def test_connector_ca_from_the_project_travels_in_a_secret() -> None:
    data = {"connectors": [{"type": "ldap", "rootCA": "certs/ldap-ca.pem"},
                           {"type": "oidc", "rootCA": "/etc/ssl/upstream.pem"}]}
    config = make_config(data)
    dex = _dex(data)
    assert dex["connectors"][0]["config"]["rootCA"] == "/etc/dex-connector-ca/ldap.pem"
    assert dex["connectors"][1]["config"]["rootCAs"] == ["/etc/ssl/upstream.pem"]
    secret = yaml.safe_load(render_connector_ca_secret(config, {"ldap": "PEM\n"}) or "")
    assert secret["stringData"] == {"ldap.pem": "PEM\n"}
    with pytest.raises(ConfigError, match="rootCA of connector 'ldap'"):
        render_manifests(config)


def test_invalid_secret_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="not a valid Secret name"):
        render_dex_config(make_config({"connectors": [
            {"type": "github", "credentialsSecret": "GitHub_Client"}]}))


def test_colliding_environment_variables_are_refused() -> None:
    with pytest.raises(ConfigError, match="GH_X_CLIENT_ID"):
        render_dex_config(make_config({"connectors": [{"type": "github", "id": "gh-x"},
                                                      {"type": "github", "id": "gh_x"}]}))
