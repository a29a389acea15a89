"""After ``dexkit deploy``'s rollout: wait until a login through the new Pods works.

A Deployment reported available is not yet a Dex that answers: kube-proxy follows the new
endpoints a moment later (measured on the node sandbox: "connection refused" on the NodePort
right after "1 of 1 replicas available", in 2 of 6 rotate-and-deploy cycles), and an API server
that tried the issuer's discovery before Dex served retries only every 10 s ("authenticator not
initialized"). Rules, in the order they act, each polled until it holds within one deadline:

1. Endpoints: the Service's EndpointSlices list at least one ready endpoint, and every ready
   endpoint is a Pod of the Deployment's current ReplicaSet (its ``pod-template-hash``): no
   old Pod is left behind the Service.
2. TLS through the Service: handshakes with the NodePort present ``ssl/cert.pem`` for the
   issuer's host, every one of at least :data:`HANDSHAKES` in a row over at least
   :data:`SETTLE` seconds. kube-proxy follows the EndpointSlices of rule 1 some time later
   (measured on the node sandbox: 0.4 to 0.9 s; ``minSyncPeriod`` is 1 s on kubeadm and kind),
   and until it has, a connection may land on a Pod that is gone (refused, or timed out when
   its address is dead) or terminating (the old certificate); any such handshake starts the
   count again. The address judged is the first that answers (each node's InternalIP, then
   127.0.0.1), and it stays the one judged: a time-out there is a connection that went
   nowhere, not a node out of reach. Where no address answers at all (a ClusterIP Service,
   nodes not reachable from here), discovery is fetched through the API server's service
   proxy instead: it proves that Dex serves through the Service, not which certificate (the
   proxy does not show it), and not what kube-proxy does (the proxy sends to the endpoints).
3. The API server: where its log can be read (the project's sandbox, or a kube-apiserver Pod
   in kube-system, as on kubeadm and kind), a probe token for the issuer and client (signed by
   a throwaway key, refused either way) is sent until the log no longer answers it with
   "authenticator not initialized". Where it cannot be read, the step is skipped and said:
   ``dexkit verify`` proves the login there.
"""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dexkit import kube
from dexkit.config import Config
from dexkit.errors import ClusterError, DexkitError
from dexkit.oidc.discovery import handshake
from dexkit.oidc.tokens import probe_token
from dexkit.render.dex import NAME, SELECTOR

# kube-apiserver's JWT authenticator before its first successful discovery of the issuer.
NOT_INITIALIZED = "authenticator not initialized"
HANDSHAKES = 10  # good handshakes in a row through the NodePort (rule 2)
SETTLE = 2.0  # s the good handshakes must span: longer than kube-proxy takes to follow
BURST = 4  # handshakes per poll
HANDSHAKE_TIMEOUT = 2.0  # s: a connection to a dead Pod address times out; do not wait long
POLL = 0.5
APISERVER_LABEL = "component=kube-apiserver"
LOG_TAIL = 50


@dataclass
class Edges:
    """What the waits touch besides the cluster: a clock, a sleep, the TLS handshake and the
    API server's log (fakes in unit tests)."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    handshake: Callable[[str, int, str, ssl.SSLContext], bytes] = field(
        default_factory=lambda: served_certificate)


@dataclass(frozen=True)
class Target:
    """Where the project's Dex and API server are."""

    config: Config
    cluster: kube.Target  # how to reach the API server (the probe token goes there)
    cert_pem: bytes  # ssl/cert.pem: what Dex must present
    ca_pem: bytes
    # The sandbox's kube-apiserver log, when the cluster is the project's sandbox.
    apiserver_log: Path | None = None


class NotServing(ClusterError):
    """Dex did not come to serve logins in time; the message says which rule waited."""


def wait_until_serving(cluster: kube.Cluster, target: Target, *, timeout: float,
                       on_step: Callable[[str, str], None],
                       edges: Edges | None = None) -> list[str]:
    """By the module's rules; the notes of skipped steps. ``on_step(step, detail)`` is told
    what is waited for and when each step holds."""
    e = edges or Edges()
    deadline = e.clock() + timeout
    notes: list[str] = []
    hashes = _poll(e, deadline, "endpoints", lambda: _endpoints(cluster, target.config),
                   on_step)
    on_step("endpoints", f"the Service's ready endpoints are the new Pods ({hashes})")
    streak = Streak()
    on_step("tls", _poll(e, deadline, "tls",
                         lambda: _through_service(cluster, target, e, streak), on_step))
    log = _apiserver_log(cluster, target)
    if log is None:
        notes.append("the API server's log cannot be read here: whether it accepts Dex's "
                      "tokens yet is for 'dexkit verify' to prove")
        return notes
    on_step("apiserver", _poll(e, deadline, "apiserver",
                               lambda: _authenticator(cluster, target, log, e), on_step))
    return notes


def _poll(e: Edges, deadline: float, step: str, check: Callable[[], tuple[bool, str]],
          on_step: Callable[[str, str], None]) -> str:
    said = ""
    while True:
        try:
            done, detail = check()
        except ClusterError as exc:
            done, detail = False, exc.message
        if done:
            return detail
        if detail != said:
            on_step(step, f"waiting: {detail}")
            said = detail
        if e.clock() >= deadline:
            raise NotServing(f"Dex is rolled out but does not serve logins yet ({step}): "
                             f"{detail}", _HINTS[step])
        e.sleep(POLL)


_HINTS = {
    "endpoints": "'kubectl -n <namespace> get endpointslices -l "
                 "kubernetes.io/service-name=dex' shows them; a longer --timeout may do",
    "tls": "is kube-proxy running on the nodes? 'dexkit doctor' checks the Service and the "
           "certificate",
    "apiserver": "the API server retries the issuer's discovery every 10 s: is the issuer "
                 "reachable from its node? 'dexkit doctor' names the broken link",
}


# --- 1. endpoints ------------------------------------------------------------------------------


def current_hash(replica_sets: Sequence[Mapping[str, Any]], deployment: Mapping[str, Any]) -> str:
    """The ``pod-template-hash`` of the Deployment's current ReplicaSet (its revision)."""
    revision = ((deployment.get("metadata") or {}).get("annotations") or {}).get(
        "deployment.kubernetes.io/revision")
    for rs in replica_sets:
        meta = rs.get("metadata") or {}
        if (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision") == revision:
            return str((meta.get("labels") or {}).get("pod-template-hash", ""))
    return ""


def ready_pods(slices: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Pods behind the ready endpoints of EndpointSlices."""
    found = []
    for piece in slices:
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            ref = endpoint.get("targetRef") or {}
            if ref.get("kind") == "Pod":
                found.append(str(ref.get("name")))
    return found


def _endpoints(cluster: kube.Cluster, config: Config) -> tuple[bool, str]:
    ns = config.namespace
    deployment = kube.get_object(cluster, kube.ObjectRef("Deployment", NAME, ns))
    if deployment is None:
        return False, f"Deployment {ns}/{NAME} does not exist"
    selector = ",".join(f"{k}={v}" for k, v in SELECTOR.items())
    wanted = current_hash(kube.list_objects(cluster, "ReplicaSet", namespace=ns,
                                            labels=selector), deployment)
    slices = kube.list_objects(cluster, "EndpointSlice", namespace=ns,
                               labels=f"kubernetes.io/service-name={NAME}")
    names = ready_pods(slices)
    if not names:
        return False, f"Service {ns}/{NAME} has no ready endpoint"
    pods = {p["metadata"]["name"]: p for p in kube.list_objects(cluster, "Pod", namespace=ns,
                                                                 labels=selector)}
    old = [n for n in names if ((pods.get(n) or {}).get("metadata") or {}).get(
        "labels", {}).get("pod-template-hash") != wanted]
    if old:
        return False, f"Service {ns}/{NAME} still sends to old Pods: {', '.join(sorted(old))}"
    return True, f"{len(names)} Pod(s) of pod-template-hash {wanted}"


# --- 2. TLS through the Service ----------------------------------------------------------------


def served_certificate(address: str, port: int, server_name: str,
                       context: ssl.SSLContext) -> bytes:
    """The DER certificate ``address:port`` presents for ``server_name`` (verified)."""
    der, _ = handshake(address, port, server_name, context, timeout=HANDSHAKE_TIMEOUT)
    if not der:
        raise ssl.SSLError("no certificate presented")
    return der


@dataclass
class Streak:
    """Rule 2 across polls: the address judged, and the good handshakes in a row there."""

    address: str = ""
    good: int = 0
    since: float | None = None

    def reset(self) -> None:
        self.good, self.since = 0, None


def _through_service(cluster: kube.Cluster, target: Target, e: Edges,
                     streak: Streak | None = None) -> tuple[bool, str]:
    config = target.config
    service = config.dex.service
    if service.type == "NodePort":
        answered, detail = _nodeport(cluster, target, e, streak or Streak())
        if answered:
            return detail == "ok", detail if detail != "ok" else (
                f"the NodePort {service.node_port} presents ssl/cert.pem ({HANDSHAKES}+ "
                f"handshakes in a row over {SETTLE:g} s)")
    return _through_proxy(cluster, config)


def _nodeport(cluster: kube.Cluster, target: Target, e: Edges,
              streak: Streak) -> tuple[bool, str]:
    """(whether an address answers, "ok" or why not yet), by rule 2. A node address that
    refuses answers (its kube-proxy has not caught up); this machine's loopback that refuses
    proves nothing. Addresses that never answered (no route, time-outs) leave the proof to
    the API server's proxy."""
    config = target.config
    port = config.dex.service.node_port
    wanted = hashlib.sha256(ssl.PEM_cert_to_DER_cert(target.cert_pem.decode())).hexdigest()
    context = ssl.create_default_context(cadata=target.ca_pem.decode())
    nodes = _node_addresses(cluster)
    why = ""
    for address in [streak.address] if streak.address else [*nodes, "127.0.0.1"]:
        for _ in range(BURST):
            try:
                served = e.handshake(address, port, config.issuer_host, context)
            except ConnectionRefusedError as exc:
                if streak.address or address in nodes:
                    streak.address = address
                    streak.reset()
                    return True, f"{address}:{port}: {exc.strerror or exc}"
                break
            except (OSError, ssl.SSLError) as exc:
                if streak.address:
                    streak.reset()
                    return True, (f"{address}:{port}: {exc} (kube-proxy may still send "
                                  "connections to a Pod that is gone)")
                why = why or f"{address}:{port}: {exc}"
                break
            streak.address = address
            if hashlib.sha256(served).hexdigest() != wanted:
                streak.reset()
                return True, (f"{address}:{port} presents another certificate than "
                              "ssl/cert.pem (an old Pod, or something else on that port)")
            streak.good += 1
            streak.since = e.clock() if streak.since is None else streak.since
        if streak.address:
            if streak.since is not None and streak.good >= HANDSHAKES and \
                    e.clock() - streak.since >= SETTLE:
                return True, "ok"
            # the same words on every poll: said once
            return True, (f"{address}:{port} presents ssl/cert.pem; {HANDSHAKES} handshakes "
                          f"in a row over {SETTLE:g} s show that kube-proxy has caught up")
    return False, why


def _node_addresses(cluster: kube.Cluster) -> list[str]:
    with contextlib.suppress(ClusterError):
        return [a["address"] for node in kube.list_objects(cluster, "Node")
                for a in (node.get("status") or {}).get("addresses") or []
                if a.get("type") == "InternalIP"]
    return []


def _through_proxy(cluster: kube.Cluster, config: Config) -> tuple[bool, str]:
    path = urlpath(config)
    text = kube.service_proxy_get(cluster, config.namespace, f"https:{NAME}:https", path)
    if f'"issuer":"{config.issuer}"' not in text.replace(" ", ""):
        return False, f"the Service answered {path} without the issuer {config.issuer}"
    return True, "the Service serves the issuer's discovery (through the API server's proxy)"


def urlpath(config: Config) -> str:
    return urlsplit(config.issuer).path.rstrip("/") + "/.well-known/openid-configuration"


# --- 3. the API server -------------------------------------------------------------------------


def _apiserver_log(cluster: kube.Cluster, target: Target) -> Callable[[], str] | None:
    """How to read the API server's recent log, or None where it cannot be read."""
    if target.apiserver_log is not None:
        path = target.apiserver_log
        return lambda: _tail(path)
    try:
        pods = kube.list_objects(cluster, "Pod", namespace="kube-system",
                                 labels=APISERVER_LABEL)
    except ClusterError:
        return None
    if not pods:
        return None

    def read() -> str:
        return "\n".join(kube.pod_log(cluster, "kube-system", p["metadata"]["name"],
                                      "kube-apiserver", tail=LOG_TAIL) for p in pods)
    return read


def _tail(path: Path, size: int = 64 * 1024) -> str:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - size))
        return handle.read().decode(errors="replace")


def _authenticator(cluster: kube.Cluster, target: Target, log: Callable[[], str],
                   e: Edges) -> tuple[bool, str]:
    config = target.config
    probe = probe_token(config.issuer, config.api_server.client_id)
    marker = hashlib.sha256(probe.encode()).hexdigest()[:8]
    with contextlib.suppress(DexkitError):  # a 401 is the expected answer
        kube.who_am_i(kube.connect(target.cluster, bearer_token=probe))
    until = e.clock() + 3.0
    while True:
        lines = [line for line in log().splitlines() if "Unable to authenticate" in line]
        if lines:
            if NOT_INITIALIZED in lines[-1]:
                return False, (f"the API server has not fetched {config.issuer}'s discovery "
                               "yet ('authenticator not initialized'; it retries every 10 s)")
            return True, "the API server's OIDC authenticator for the issuer is initialized"
        if e.clock() >= until:
            return True, (f"the API server logged no refusal of the probe ({marker}): it does "
                          "not judge tokens of this issuer by its log")
        e.sleep(0.2)
