"""The only module that imports ``kubernetes``: clients from kubeconfig, reviews, apply.

API errors are translated here, at the boundary, into :class:`ClusterError` with the server,
the verb and resource that failed and a hint; response bodies are trimmed so that secret
values never reach a message or a log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dexkit.errors import ClusterError

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
    (the kubeconfig's client certificate and token are dropped), as kubectl --token does."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    files = _kubeconfig_files(target)
    existing = [f for f in files if Path(f).is_file()]
    if not existing:
        raise ClusterError(f"no kubeconfig at {', '.join(files)}",
                           "pass --kubeconfig, set KUBECONFIG, or start 'dexkit sandbox up'")
    path = str(target.kubeconfig) if target.kubeconfig else None  # None: KUBECONFIG rules
    try:
        api = config.new_client_from_config(config_file=path, context=target.context)
        _contexts, active = config.list_kube_config_contexts(config_file=path)
    except (ConfigException, KeyError, ValueError, TypeError, OSError) as exc:
        raise ClusterError(f"cannot use the kubeconfig {', '.join(existing)}: {exc}",
                           "check the file and the --context name "
                           "('kubectl config get-contexts' lists them)") from None
    context = target.context or str(active["name"])
    configuration = api.configuration
    if bearer_token is not None:
        configuration.cert_file = None
        configuration.key_file = None
        configuration.api_key = {"authorization": f"Bearer {bearer_token}"}
        configuration.refresh_api_key_hook = None
    return Cluster(server=str(configuration.host), context=context, api=api)


def translate(exc: BaseException, cluster: Cluster, action: str) -> ClusterError:
    """An exception from the kubernetes client as one readable line with a hint."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError as Urllib3Error
    from urllib3.exceptions import MaxRetryError, SSLError

    where = f"{cluster.server} (context {cluster.context})"
    if isinstance(exc, ApiException):
        reason = _reason(exc)
        if exc.status == 401:
            return ClusterError(f"{action}: the API server at {where} did not accept the "
                                f"credentials (401 Unauthorized)",
                                "for an OIDC token: check the issuer, audience and CA the API "
                                "server was given ('dexkit doctor' names the broken link)")
        if exc.status == 403:
            return ClusterError(f"{action}: forbidden (403): {reason}",
                                "bind a Role or ClusterRole to this user or group")
        return ClusterError(f"{action}: the API server answered {exc.status}: {reason}",
                            "see the message; 'kubectl' with the same kubeconfig shows more")
    if (isinstance(exc, MaxRetryError) and isinstance(exc.reason, SSLError)) or \
            isinstance(exc, SSLError):
        return ClusterError(f"{action}: TLS verification of {where} failed",
                            "the kubeconfig's certificate-authority does not match the API "
                            "server's certificate")
    if isinstance(exc, Urllib3Error | OSError):
        return ClusterError(f"{action}: cannot reach the API server at {where}: "
                            f"{type(exc).__name__}",
                            "is the cluster running? ('dexkit sandbox status' for the sandbox)")
    return ClusterError(f"{action}: {type(exc).__name__}: {exc}", "re-run with --debug")


def _reason(exc: Any) -> str:
    """The Status message of an ApiException, trimmed; never the raw body (it may echo data)."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return str(exc.reason or "")
    return str(body.get("message") or exc.reason or "")[:300]


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
