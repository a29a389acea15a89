"""The only module that imports ``kubernetes``: clients from kubeconfig, reviews, apply.

API errors are translated here, at the boundary, into :class:`ClusterError` with the server,
the verb and resource that failed and a hint; response bodies are trimmed so that secret
values never reach a message or a log.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dexkit.errors import ClusterError
from dexkit.files import read_text

if TYPE_CHECKING:
    import ssl

DEFAULT_KUBECONFIG = Path.home() / ".kube" / "config"


@dataclass(frozen=True)
class Target:
    """Which cluster: a kubeconfig (or KUBECONFIG) and a context, as kubectl picks them."""

    kubeconfig: Path | None = None
    context: str | None = None


@dataclass
class Cluster:
    """A resolved cluster: where it is and a ready API client."""

    server: str
    context: str
    api: Any = field(repr=False)


def _kubeconfig_files(target: Target) -> list[str]:
    if target.kubeconfig is not None:
        return [str(target.kubeconfig)]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [str(DEFAULT_KUBECONFIG)]


def connect(target: Target, *, bearer_token: str | None = None) -> Cluster:
    """An API client for ``target``; with ``bearer_token``, authenticated by that token alone
    (the kubeconfig's client certificate and token are dropped), as kubectl --token does.

    The files are those kubectl would read (``--kubeconfig``, else every file in
    ``KUBECONFIG``, else ``~/.kube/config``), resolved now rather than when the client library
    was imported, so a changed ``KUBECONFIG`` is honoured.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException
    from yaml import YAMLError

    _quiet_library_logging()
    files = _kubeconfig_files(target)
    existing = [f for f in files if Path(f).is_file()]
    if not existing:
        raise ClusterError(f"no kubeconfig at {', '.join(files)}",
                           "pass --kubeconfig, set KUBECONFIG, or start 'dexkit sandbox up'")
    where = ", ".join(existing)
    # The library merges an os.pathsep-separated list as kubectl does.
    merged = os.pathsep.join(existing)
    try:
        contexts, active = config.list_kube_config_contexts(config_file=merged)
        context = _pick_context(target.context, contexts, active, where)
        configuration = client.Configuration()
        config.load_kube_config(config_file=merged, context=context,
                                client_configuration=configuration)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ClusterError(f"the kubeconfig {where} is not valid YAML{line}",
                           "fix or replace the file; 'kubectl config view' shows what "
                           "kubectl makes of it") from None
    except UnicodeDecodeError:
        raise ClusterError(f"the kubeconfig {where} is not a text file",
                           "fix or replace the file; 'kubectl config view' shows what "
                           "kubectl makes of it") from None
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        # The client library trips over a section of the wrong shape (users: 5).
        raise ClusterError(f"the kubeconfig {where} is not a valid kubeconfig "
                           f"({type(exc).__name__}: {exc})",
                           "fix or replace the file; 'kubectl config view' shows what "
                           "kubectl makes of it") from None
    except (ConfigException, OSError) as exc:
        raise ClusterError(f"cannot use the kubeconfig {where}: {exc}",
                           "check the file and the --context name "
                           "('kubectl config get-contexts' lists them)") from None
    if bearer_token is not None:
        # Before the ApiClient exists: it builds its connection pool (and loads the client
        # certificate) from the configuration once, at construction.
        configuration.cert_file = None
        configuration.key_file = None
        configuration.api_key = {"authorization": f"Bearer {bearer_token}"}
        configuration.refresh_api_key_hook = None
    return Cluster(server=str(configuration.host), context=context,
                   api=client.ApiClient(configuration))


def _quiet_library_logging() -> None:
    """Keep the client libraries' log records off the terminal: dexkit reports each failure
    itself, as one error line.

    The kubernetes client logs a misbehaving exec plugin with ``logging.error`` on the root
    logger, which also runs ``logging.basicConfig()``: from then on every library's warnings
    reach stderr, urllib3's "Retrying ..." for each request among them (30 lines before a
    deploy's one error). A handler on the root logger that drops everything stops both:
    ``basicConfig`` does nothing once the root logger has a handler.
    """
    import logging

    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def _pick_context(wanted: str | None, contexts: Any, active: Any, where: str) -> str:
    """The context kubectl would use, or a clear error naming the ones there are."""
    names = [str(c.get("name")) for c in contexts or [] if isinstance(c, dict)]
    listing = ", ".join(names) or "none"
    if wanted is not None:
        if wanted not in names:
            raise ClusterError(f"context '{wanted}' is not in the kubeconfig {where}",
                               f"use one of: {listing}")
        return wanted
    if not isinstance(active, dict) or not active.get("name"):
        raise ClusterError(f"the kubeconfig {where} has no current-context",
                           f"pass --context (one of: {listing}) or run "
                           "'kubectl config use-context NAME'")
    return str(active["name"])


def translate(exc: BaseException, cluster: Cluster, action: str) -> ClusterError:
    """An exception from the kubernetes client as one readable line with a hint.

    ``action`` names what was refused as kubectl's RBAC messages do (``patch deployments.apps
    "dex" in namespace "dex"``), so a 403 always says which verb on which resource.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error
    from urllib3.exceptions import MaxRetryError, SSLError

    where = f"{cluster.server} (context {cluster.context})"
    tls_error = ClusterError(f"{action}: TLS verification of {where} failed",
                             "the kubeconfig's certificate-authority does not match the API "
                             "server's certificate (or the server's name is not in it)")
    if isinstance(exc, ApiException):
        # The client turns an SSLError it catches itself into a status-0 ApiException.
        if exc.status == 0 and str(exc.reason or "").startswith("SSLError"):
            return tls_error
        return _from_status(exc, where, action)
    if isinstance(exc, SSLError) or (isinstance(exc, MaxRetryError)
                                     and isinstance(exc.reason, SSLError)):
        return tls_error
    if isinstance(exc, Urllib3Error | OSError):
        return ClusterError(f"{action}: cannot reach the API server at {where}: "
                            f"{_network_cause(exc)}",
                            "is the cluster running and the kubeconfig's server URL right? "
                            "('dexkit sandbox status' for the sandbox)")
    return ClusterError(f"{action}: {type(exc).__name__}: {exc}", "re-run with --debug")


def _from_status(exc: Any, where: str, action: str) -> ClusterError:
    reason = _reason(exc)
    if exc.status == 401:
        return ClusterError(f"{action}: the API server at {where} did not accept the "
                            "credentials (401 Unauthorized)",
                            "the kubeconfig's client certificate or token is not valid for "
                            "this cluster; for a dexkit OIDC login 'dexkit verify' names the "
                            "broken link", status=401)
    if exc.status == 403 and "being terminated" in reason:
        return ClusterError(f"{action}: {reason}",
                            "wait until the namespace is gone ('kubectl get namespace'), "
                            "then run the command again", status=403)
    if exc.status == 403:
        return ClusterError(f"{action}: forbidden (403): {reason}",
                            "bind a Role or ClusterRole that allows it to this user or group, "
                            "or use a kubeconfig context with more rights", status=403)
    return ClusterError(f"{action}: the API server answered {exc.status}: {reason}",
                        "see the message; 'kubectl' with the same kubeconfig shows more",
                        status=exc.status or None)


def _network_cause(exc: BaseException) -> str:
    """``connection refused`` rather than urllib3's MaxRetryError wrapping it."""
    cause = getattr(exc, "reason", None) or exc
    text = str(cause)
    for marker, said in (("Connection refused", "connection refused"),
                         ("timed out", "timed out"),
                         ("Name or service not known", "unknown host"),
                         ("No route to host", "no route to host")):
        if marker in text:
            return said
    return type(cause).__name__


def _reason(exc: Any) -> str:
    """The Status message of an ApiException, trimmed; never the raw body (it may echo data).

    Validation messages can quote a field's value (``Invalid value: "..."``); for a Secret that
    value is a credential, so quoted values are always cut out.
    """
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason or "")
    message = str(body.get("message") or exc.reason or "") if isinstance(body, dict) else ""
    return _QUOTED_VALUE.sub(r"\1(value not shown)", message)[:300]


_QUOTED_VALUE = re.compile(r'(Invalid value: )"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class Identity:
    username: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


def who_am_i(cluster: Cluster) -> Identity:
    """SelfSubjectReview: how the API server sees the caller (``kubectl auth whoami``)."""
    from kubernetes import client

    api = client.AuthenticationV1Api(cluster.api)
    try:
        review = api.create_self_subject_review(client.V1SelfSubjectReview())
    except Exception as exc:
        raise translate(exc, cluster, "SelfSubjectReview") from None
    info = review.status.user_info if review.status else None
    if info is None:
        raise ClusterError("SelfSubjectReview returned no user", "is the API server >= 1.28?")
    return Identity(username=info.username or "", groups=tuple(info.groups or ()),
                    uid=info.uid or "", extra=dict(info.extra or {}))


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    namespace: str | None
    allowed: bool
    reason: str = ""


def can_i(cluster: Cluster, verb: str, resource: str, namespace: str | None = None) -> Permission:
    """SelfSubjectAccessReview: ``kubectl auth can-i VERB RESOURCE``."""
    from kubernetes import client

    # "deployments.apps" is resource "deployments" in group "apps", as kubectl spells it.
    name, _, group = resource.partition(".")
    attrs = client.V1ResourceAttributes(verb=verb, resource=name, group=group or None,
                                        namespace=namespace)
    body = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(resource_attributes=attrs))
    try:
        review = client.AuthorizationV1Api(cluster.api).create_self_subject_access_review(body)
    except Exception as exc:
        raise translate(exc, cluster, f"SelfSubjectAccessReview for {verb} {resource}") from None
    status = review.status
    if status is None:
        raise ClusterError(f"SelfSubjectAccessReview for {verb} {resource} had no status",
                           "the API server's authorizer did not answer")
    return Permission(verb=verb, resource=resource, namespace=namespace,
                      allowed=bool(status.allowed),
                      reason=str(status.reason or status.evaluation_error or ""))


# --- reviews as a bearer token, without the kubernetes client ----------------------------------
#
# `dexkit verify` sends only two requests as the Dex token (SelfSubjectReview, then
# SelfSubjectAccessReviews); importing the kubernetes client for them costs ~280 ms, most of
# verify's time. This reads the kubeconfig's cluster as kubectl does (the first file that
# defines an entry wins, current-context from the first file that sets one) and posts with
# httpx. A cluster entry with anything it does not handle (a proxy, an exec'd CA) falls back to
# the kubernetes client.

_TOKEN_CLUSTER_FIELDS = {"server", "certificate-authority", "certificate-authority-data",
                         "insecure-skip-tls-verify", "extensions"}


@dataclass
class TokenSession:
    """The API server of a kubeconfig's context, spoken to as one bearer token."""

    server: str
    context: str
    http: Any = field(repr=False)

    def post(self, path: str, body: dict[str, Any], action: str) -> dict[str, Any]:
        import httpx

        try:
            response = self.http.post(self.server.rstrip("/") + path, json=body)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ClusterError(f"{action}: cannot reach the API server at {self.server}: "
                               f"{str(exc).splitlines()[0][:200]}",
                               "is the cluster running, and is the kubeconfig's server "
                               "right?") from None
        if response.status_code == 401:
            raise ClusterError(f"{action}: the API server refused the token (401 "
                               "Unauthorized)", "the API server does not accept this Dex "
                               "token yet, or at all: see 'dexkit doctor'", status=401)
        if response.status_code != 201 and response.status_code != 200:
            raise ClusterError(f"{action}: the API server answered HTTP "
                               f"{response.status_code} at {self.server}",
                               "see the API server's log", status=response.status_code)
        try:
            data = response.json()
        except ValueError:
            raise ClusterError(f"{action}: the API server did not answer JSON",
                               "is the kubeconfig's server a Kubernetes API server?") from None
        return data if isinstance(data, dict) else {}


def token_session(target: Target, bearer_token: str) -> TokenSession | Cluster:
    """A light session for ``bearer_token`` on ``target``'s cluster, or, when its kubeconfig
    entry needs more than that handles, the kubernetes client (:func:`connect`)."""
    import ssl

    import yaml

    files = [Path(f) for f in _kubeconfig_files(target) if Path(f).is_file()]
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        try:
            data = yaml.safe_load(read_text(path, what="a kubeconfig"))
        except (OSError, yaml.YAMLError):
            return connect(target, bearer_token=bearer_token)
        docs.append((path, data if isinstance(data, dict) else {}))
    name = target.context or next((str(d["current-context"]) for _, d in docs
                                   if d.get("current-context")), None)
    context = _first_named(docs, "contexts", "context", name)
    cluster_name = (context[1] or {}).get("cluster") if context else None
    cluster = _first_named(docs, "clusters", "cluster", cluster_name)
    entry = cluster[1] if cluster else None
    if not isinstance(entry, dict) or set(entry) - _TOKEN_CLUSTER_FIELDS or not entry.get(
            "server"):
        return connect(target, bearer_token=bearer_token)
    assert cluster is not None
    try:
        context_ssl = cluster_tls(entry, cluster[0].parent)
    except (OSError, ValueError, ssl.SSLError):
        return connect(target, bearer_token=bearer_token)
    import httpx

    headers = {"Authorization": f"Bearer {bearer_token}", "User-Agent": "dexkit"}
    return TokenSession(str(entry["server"]), str(name or ""),
                        httpx.Client(verify=context_ssl, headers=headers, timeout=30))


def cluster_tls(entry: Mapping[str, Any], base: Path) -> ssl.SSLContext:
    """The TLS context for a kubeconfig cluster ``entry`` (a relative CA path is relative to
    ``base``, its file's directory): trusting only the CA it names, and the system store
    (~20 ms to load) only when it names none, as kubectl does."""
    import base64
    import ssl

    if entry.get("certificate-authority-data"):
        pem = base64.b64decode(str(entry["certificate-authority-data"])).decode()
        context = ssl.create_default_context(cadata=pem)
    elif entry.get("certificate-authority"):
        ca = Path(str(entry["certificate-authority"]))
        context = ssl.create_default_context(cafile=str(ca if ca.is_absolute() else base / ca))
    else:
        context = ssl.create_default_context()
    if entry.get("insecure-skip-tls-verify") is True:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _first_named(docs: list[tuple[Path, dict[str, Any]]], section: str, key: str,
                 name: Any) -> tuple[Path, Any] | None:
    if name is None:
        return None
    for path, doc in docs:
        for item in doc.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                return path, item.get(key)
    return None


def review_identity(session: TokenSession | Cluster) -> Identity:
    """:func:`who_am_i` through either kind of session."""
    if isinstance(session, Cluster):
        return who_am_i(session)
    data = session.post("/apis/authentication.k8s.io/v1/selfsubjectreviews",
                        {"apiVersion": "authentication.k8s.io/v1",
                         "kind": "SelfSubjectReview"}, "SelfSubjectReview")
    info = (data.get("status") or {}).get("userInfo") or {}
    if not info:
        raise ClusterError("SelfSubjectReview returned no user", "is the API server >= 1.28?")
    return Identity(username=str(info.get("username", "")),
                    groups=tuple(str(g) for g in info.get("groups") or ()),
                    uid=str(info.get("uid", "")),
                    extra={str(k): [str(x) for x in v]
                           for k, v in (info.get("extra") or {}).items()})


def review_access(session: TokenSession | Cluster, verb: str, resource: str,
                  namespace: str | None = None) -> Permission:
    """:func:`can_i` through either kind of session."""
    if isinstance(session, Cluster):
        return can_i(session, verb, resource, namespace)
    name, _, group = resource.partition(".")
    attributes = {"verb": verb, "resource": name, **({"group": group} if group else {}),
                  **({"namespace": namespace} if namespace else {})}
    data = session.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                        {"apiVersion": "authorization.k8s.io/v1",
                         "kind": "SelfSubjectAccessReview",
                         "spec": {"resourceAttributes": attributes}},
                        f"SelfSubjectAccessReview for {verb} {resource}")
    status = data.get("status") or {}
    return Permission(verb=verb, resource=resource, namespace=namespace,
                      allowed=bool(status.get("allowed")),
                      reason=str(status.get("reason") or status.get("evaluationError") or ""))


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
    from kubernetes.client.exceptions import ApiException

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
    from kubernetes.client.exceptions import ApiException

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


# --- doctor: read-only helpers (issue 7) ----------------------------------------------------
# Kept apart from the deploy helpers above: these only read, for 'dexkit doctor'.


@dataclass(frozen=True)
class ServerClock:
    """The API server's version and the moment it answered, from its ``Date`` header."""

    version: str
    date: dt.datetime | None


def server_clock(cluster: Cluster) -> ServerClock:
    """``GET /version`` (open to every authenticated user): version and ``Date`` header."""
    from email.utils import parsedate_to_datetime

    from kubernetes import client

    try:
        info, _status, headers = client.VersionApi(cluster.api).get_code_with_http_info()
    except Exception as exc:
        raise translate(exc, cluster, "get /version") from None
    raw = (headers or {}).get("Date")
    try:
        date = parsedate_to_datetime(raw) if raw else None
    except (TypeError, ValueError):
        date = None
    return ServerClock(version=str(getattr(info, "git_version", "") or ""), date=date)


def subject_can(cluster: Cluster, user: str, groups: Sequence[str], verb: str, resource: str,
                group: str = "", namespace: str | None = None) -> Permission:
    """SubjectAccessReview: may ``user`` (in ``groups``) do ``verb`` on ``resource``? Asked by
    the caller on someone else's behalf (``kubectl auth can-i --as``), e.g. Dex's
    ServiceAccount."""
    from kubernetes import client

    attrs = client.V1ResourceAttributes(verb=verb, resource=resource, group=group or None,
                                        namespace=namespace)
    body = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, groups=list(groups), resource_attributes=attrs))
    qualified = f"{resource}.{group}" if group else resource
    try:
        review = client.AuthorizationV1Api(cluster.api).create_subject_access_review(body)
    except Exception as exc:
        raise translate(exc, cluster, f"SubjectAccessReview for {user}: {verb} {qualified}") \
            from None
    status = review.status
    return Permission(verb=verb, resource=qualified, namespace=namespace,
                      allowed=bool(status and status.allowed),
                      reason=str((status.reason or status.evaluation_error or "") if status
                                 else ""))
