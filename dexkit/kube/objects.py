"""Objects: where each kind lives in the API, reads, server-side apply with its conflicts,
deletes, pod logs and the service proxy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dexkit.errors import ClusterError
from dexkit.kube.connection import Cluster, translate

if TYPE_CHECKING:
    pass


# --- objects: reads, server-side apply, deletes ---------------------------------------------

FIELD_MANAGER = "dexkit"
# (connect, read) seconds: without them a server that drops packets hangs a deploy for as
# long as the OS keeps retrying the connection. urllib3 retries a failed connect 3 times.
REQUEST_TIMEOUT = (5.0, 60.0)
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: the path segments kubectl learns from discovery."""

    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps``: how RBAC messages and kubectl name a resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        # ':' and '@' are valid in a path segment (RFC 3986 pchar); RBAC names use ':'.
        return f"{base}/{quote(name, safe=':@')}" if name else base


def _resource(kind: str, api_version: str, plural: str, namespaced: bool = True) -> Resource:
    group, _, version = api_version.rpartition("/")
    return Resource(kind, group, version, plural, namespaced)


# The kinds dexkit renders, deletes or inspects. A fixed table instead of API discovery: the
# paths of these stable kinds never move, and discovery would cost requests on every deploy.
RESOURCES: dict[str, Resource] = {r.kind: r for r in (
    _resource("Namespace", "v1", "namespaces", namespaced=False),
    _resource("ServiceAccount", "v1", "serviceaccounts"),
    _resource("Secret", "v1", "secrets"),
    _resource("ConfigMap", "v1", "configmaps"),
    _resource("Service", "v1", "services"),
    _resource("Pod", "v1", "pods"),
    _resource("Node", "v1", "nodes", namespaced=False),
    _resource("Event", "v1", "events"),
    _resource("Role", "rbac.authorization.k8s.io/v1", "roles"),
    _resource("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings"),
    _resource("ClusterRole", "rbac.authorization.k8s.io/v1", "clusterroles", namespaced=False),
    _resource("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "clusterrolebindings",
              namespaced=False),
    _resource("Deployment", "apps/v1", "deployments"),
    _resource("ReplicaSet", "apps/v1", "replicasets"),
    _resource("DaemonSet", "apps/v1", "daemonsets"),
    _resource("PodDisruptionBudget", "policy/v1", "poddisruptionbudgets"),
    _resource("Ingress", "networking.k8s.io/v1", "ingresses"),
    _resource("CustomResourceDefinition", "apiextensions.k8s.io/v1",
              "customresourcedefinitions", namespaced=False),
    _resource("EndpointSlice", "discovery.k8s.io/v1", "endpointslices"),
)}


def resource_of(kind: str, api_version: str | None = None) -> Resource:
    found = RESOURCES.get(kind)
    if found is None or (api_version is not None and found.api_version != api_version):
        raise ClusterError(f"dexkit does not know where {api_version or ''} {kind} lives in "
                           "the API", "this is a bug in dexkit: report it with the manifest")
    return found


@dataclass(frozen=True)
class ObjectRef:
    """One object: its kind and name, and its namespace when the kind is namespaced."""

    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        resource = resource_of(str(obj.get("kind")), str(obj.get("apiVersion")))
        namespace = meta.get("namespace") if resource.namespaced else None
        return cls(resource.kind, str(meta.get("name")), namespace)

    @property
    def resource(self) -> Resource:
        return resource_of(self.kind)

    @property
    def path(self) -> str:
        return self.resource.path(self.namespace, self.name)

    def describe(self) -> str:
        """``Deployment dex/dex``, ``ClusterRole dexkit:dex-crds``."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else \
            f"{self.kind} {self.name}"

    def action(self, verb: str) -> str:
        """``patch deployments.apps "dex" in namespace "dex"``, as RBAC refusals read."""
        where = f' in namespace "{self.namespace}"' if self.namespace else ""
        return f'{verb} {self.resource.qualified} "{self.name}"{where}'


def _call(cluster: Cluster, method: str, path: str, *,
          query: Sequence[tuple[str, str]] = (), body: Any = None,
          content_type: str = "application/json", accept: str = "application/json") -> Any:
    """One request through the official client (its TLS, auth and proxy settings); the decoded
    body. Non-2xx answers raise the client's ApiException, network failures urllib3's errors."""
    # The kubernetes client (~250 ms): see connection.connect.
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    api = cluster.api
    request = api.param_serialize(method=method, resource_path=path, query_params=list(query),
                                  header_params={"Content-Type": content_type, "Accept": accept},
                                  body=body, auth_settings=["BearerToken"])
    response = api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
    raw = response.read()
    text = raw.decode("utf-8", errors="replace") if raw else ""
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=text, data=None)
    if accept != "application/json":
        return text
    return json.loads(text) if text else None


def _status(exc: BaseException) -> int | None:
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    return exc.status if isinstance(exc, ApiException) else None


def get_object(cluster: Cluster, ref: ObjectRef) -> dict[str, Any] | None:
    """The live object, or None when it does not exist."""
    try:
        found: dict[str, Any] = _call(cluster, "GET", ref.path)
    except Exception as exc:
        if _status(exc) == 404:
            return None
        raise translate(exc, cluster, ref.action("get")) from None
    return found


def service_account_token(cluster: Cluster, namespace: str, name: str, *,
                          seconds: int = 86400) -> str:
    """A token for a ServiceAccount (TokenRequest, what a kubelet asks for a pod's volume)."""
    ref = ObjectRef("ServiceAccount", name, namespace)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds}}
    try:
        answer = _call(cluster, "POST", f"{ref.path}/token", body=body)
    except Exception as exc:
        raise translate(exc, cluster, ref.action("create") + " (token)") from None
    token = str(((answer or {}).get("status") or {}).get("token") or "")
    if not token:
        raise ClusterError(f"the TokenRequest for {ref.describe()} returned no token",
                           "is the API server started with --service-account-signing-key-file?")
    return token


@dataclass(frozen=True)
class FieldConflict:
    field: str
    manager: str


class ConflictError(ClusterError):
    """Server-side apply refused: fields are owned by another field manager."""

    def __init__(self, ref: ObjectRef, conflicts: list[FieldConflict]) -> None:
        fields = "; ".join(f"{c.field} (owned by {c.manager})" for c in conflicts)
        super().__init__(f"{ref.describe()}: conflicting fields: {fields}",
                         "another tool changed these fields; re-run with --force-conflicts to "
                         "take them over, or change them back with that tool")
        self.ref = ref
        self.conflicts = conflicts


@dataclass(frozen=True)
class Applied:
    """The object as the API server stored it (or would store it, in a dry run)."""

    ref: ObjectRef
    object: dict[str, Any]


def apply_object(cluster: Cluster, obj: Mapping[str, Any], *, dry_run: bool = False,
                 force: bool = False) -> Applied:
    """Server-side apply of ``obj`` with field manager ``dexkit`` (``kubectl apply
    --server-side``); with ``dry_run`` the API server validates and admits it but stores
    nothing. A field owned by another manager raises :class:`ConflictError` unless ``force``."""
    ref = ObjectRef.of(obj)
    query = [("fieldManager", FIELD_MANAGER)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    try:
        stored: dict[str, Any] = _call(cluster, "PATCH", ref.path, query=query, body=obj,
                                       content_type=APPLY_CONTENT_TYPE)
    except Exception as exc:
        if _status(exc) == 409:
            conflicts = _conflicts(exc)
            if conflicts:
                raise ConflictError(ref, conflicts) from None
        raise translate(exc, cluster, ref.action("patch")) from None
    return Applied(ref, stored)


_CONFLICT_WITH = re.compile(r'conflict with "([^"]+)"')


def _conflicts(exc: Any) -> list[FieldConflict]:
    """The field and manager of each FieldManagerConflict cause in a 409 Status."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return []
    causes = ((body.get("details") or {}).get("causes") or []) if isinstance(body, dict) else []
    found = []
    for cause in causes:
        if cause.get("reason") != "FieldManagerConflict":
            continue
        match = _CONFLICT_WITH.search(str(cause.get("message", "")))
        found.append(FieldConflict(str(cause.get("field", "?")),
                                   match.group(1) if match else "another manager"))
    return found


def list_objects(cluster: Cluster, kind: str, *, namespace: str | None = None,
                 labels: str = "", fields: str = "") -> list[dict[str, Any]]:
    """Objects of ``kind`` (in ``namespace``, or cluster-wide), filtered by label and field
    selectors; the items of the list, each with its kind set (lists leave it out)."""
    resource = resource_of(kind)
    query = [(k, v) for k, v in (("labelSelector", labels), ("fieldSelector", fields)) if v]
    where = f" in namespace \"{namespace}\"" if namespace and resource.namespaced else ""
    try:
        listed = _call(cluster, "GET", resource.path(namespace), query=query)
    except Exception as exc:
        raise translate(exc, cluster, f"list {resource.qualified}{where}") from None
    items: list[dict[str, Any]] = listed.get("items") or []
    for item in items:
        item.setdefault("kind", kind)
        item.setdefault("apiVersion", resource.api_version)
    return items


def delete_object(cluster: Cluster, ref: ObjectRef) -> bool:
    """Delete ``ref``, its dependents in the background (as kubectl does); False when it was
    already gone."""
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    try:
        _call(cluster, "DELETE", ref.path, body=body)
    except Exception as exc:
        if _status(exc) == 404:
            return False
        raise translate(exc, cluster, ref.action("delete")) from None
    return True


def pod_log(cluster: Cluster, namespace: str, pod: str, container: str, *,
            previous: bool = False, tail: int = 10) -> str:
    """The last ``tail`` lines a container logged (of its previous run with ``previous``)."""
    ref = ObjectRef("Pod", pod, namespace)
    query = [("container", container), ("tailLines", str(tail))]
    if previous:
        query.append(("previous", "true"))
    try:
        text: str = _call(cluster, "GET", f"{ref.path}/log", query=query, accept="*/*")
    except Exception as exc:
        raise translate(exc, cluster, f'get pods/log "{pod}" in namespace "{namespace}"') \
            from None
    return text


def service_proxy_get(cluster: Cluster, namespace: str, service: str, path: str) -> str:
    """GET ``path`` of a Service through the API server's proxy (``service`` may name the
    scheme and port: ``https:dex:https``); the body. The proxy does not verify the Service's
    certificate, so this proves reachability, not identity."""
    ref = ObjectRef("Service", service, namespace)
    resource_path = f"{ref.resource.path(namespace, None)}/{quote(service, safe=':')}/proxy" \
        f"{path}"
    try:
        text: str = _call(cluster, "GET", resource_path, accept="*/*")
    except Exception as exc:
        raise translate(exc, cluster, f'get services/proxy "{service}" in namespace '
                        f'"{namespace}"') from None
    return text
