"""Reaching a cluster as kubectl would (kubeconfig files, context), and turning the client's
errors into :class:`ClusterError`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yaml import YAMLError

from dexkit.errors import ClusterError

if TYPE_CHECKING:
    pass


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
    # The kubernetes client (~250 ms) loads when a cluster is first contacted, not with kube.
    from kubernetes import client, config  # noqa: PLC0415
    from kubernetes.config.config_exception import ConfigException  # noqa: PLC0415

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
    # kubernetes and urllib3 (~250 ms) are loaded here only if connect() has not run.
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError as Urllib3Error  # noqa: PLC0415
    from urllib3.exceptions import MaxRetryError, SSLError  # noqa: PLC0415

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
