"""What a cluster says about a caller: who it is, what it may do (for itself or another
subject), asked as a bearer token without the client library where it can; and its clock.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dexkit.errors import ClusterError
from dexkit.files import read_text
from dexkit.kube.connection import Cluster, Target, _kubeconfig_files, connect, translate

if TYPE_CHECKING:
    import ssl


@dataclass(frozen=True)
class Identity:
    username: str
    groups: tuple[str, ...]
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


def who_am_i(cluster: Cluster) -> Identity:
    """SelfSubjectReview: how the API server sees the caller (``kubectl auth whoami``)."""
    # The kubernetes client (~250 ms): see connection.connect.
    from kubernetes import client  # noqa: PLC0415

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
    from kubernetes import client  # noqa: PLC0415

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
        # httpx (~45 ms): only the token-only path (no kubernetes client) needs it.
        import httpx  # noqa: PLC0415

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
    # ssl (~10 ms) only for a kubeconfig entry's own CA.
    import ssl  # noqa: PLC0415

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
    import httpx  # noqa: PLC0415

    headers = {"Authorization": f"Bearer {bearer_token}", "User-Agent": "dexkit"}
    return TokenSession(str(entry["server"]), str(name or ""),
                        httpx.Client(verify=context_ssl, headers=headers, timeout=30))


def cluster_tls(entry: Mapping[str, Any], base: Path) -> ssl.SSLContext:
    """The TLS context for a kubeconfig cluster ``entry`` (a relative CA path is relative to
    ``base``, its file's directory): trusting only the CA it names, and the system store
    (~20 ms to load) only when it names none, as kubectl does."""
    import ssl  # noqa: PLC0415

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


# --- doctor: read-only helpers (issue 7) ----------------------------------------------------
# Kept apart from the deploy helpers above: these only read, for 'dexkit doctor'.


@dataclass(frozen=True)
class ServerClock:
    """The API server's version and the moment it answered, from its ``Date`` header."""

    version: str
    date: dt.datetime | None


def server_clock(cluster: Cluster) -> ServerClock:
    """``GET /version`` (open to every authenticated user): version and ``Date`` header."""
    # email.utils (~10 ms) parses the Date header only here.
    from email.utils import parsedate_to_datetime  # noqa: PLC0415

    from kubernetes import client  # noqa: PLC0415

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
    from kubernetes import client  # noqa: PLC0415

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
