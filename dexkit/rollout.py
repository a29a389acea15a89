"""Waiting for a Deployment to roll out, and saying why when it does not.

Rules (those of ``kubectl rollout status``):

- Done when the deployment controller has observed the current generation and every desired
  replica is updated and available, with no old replica left.
- A ``Progressing`` condition with reason ``ProgressDeadlineExceeded`` fails at once.
- On timeout or failure, the diagnosis names what blocks: a controller that never observed the
  Deployment, each pod's phase and scheduling, each container's waiting or terminated reason
  (``ImagePullBackOff``, ``CrashLoopBackOff`` with its last log lines), and the recent events of
  the Deployment, its ReplicaSets and pods.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dexkit import kube
from dexkit.errors import ClusterError, DexkitError

LOG_LINES = 10
EVENTS = 10
# Container states worth showing the previous run's log for.
_CRASHING = ("CrashLoopBackOff", "Error", "RunContainerError")


@dataclass(frozen=True)
class RolloutStatus:
    desired: int
    updated: int
    available: int
    total: int
    observed: bool
    done: bool
    message: str
    failed: str = ""


def rollout_status(deployment: Mapping[str, Any]) -> RolloutStatus:
    """Where a rollout stands, from the Deployment alone (pure)."""
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    status = deployment.get("status") or {}
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0) >= generation
    done, failed = False, ""
    if not observed:
        message = f"waiting for the deployment controller to observe generation {generation}"
    elif deadline := _deadline_exceeded(status):
        message, failed = "progress deadline exceeded", deadline
    elif updated < desired:
        message = f"{updated} of {desired} replicas updated"
    elif total > updated:
        message = f"{total - updated} old replicas pending termination"
    elif available < updated:
        message = f"{available} of {updated} updated replicas available"
    else:
        message, done = f"{available} of {desired} replicas available", True
    return RolloutStatus(desired, updated, available, total, observed, done, message, failed)


def not_serving(deployment: Mapping[str, Any]) -> str:
    """Why no Pod of the Deployment can answer, in a few words, or "" when one is available
    (pure). A Deployment scaled to 0 says so: its status then looks healthy."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    if "replicas" in spec and int(spec["replicas"]) == 0:
        return "is scaled to 0 replicas"
    available = int(status.get("availableReplicas") or 0)
    if available >= 1:
        return ""
    return f"has 0 of {int(spec.get('replicas', 1))} replicas available"


def _deadline_exceeded(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and \
                condition.get("reason") == "ProgressDeadlineExceeded":
            return str(condition.get("message") or "progress deadline exceeded")
    return ""


class RolloutError(DexkitError):
    """The rollout did not finish; ``details`` says why, one line each."""

    def __init__(self, message: str, hint: str, details: Sequence[str]) -> None:
        super().__init__(message, hint)
        self.details = list(details)


@dataclass
class Waiter:
    """The edges of waiting: a clock, a sleep and the poll interval (fakes in unit tests)."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    interval: float = 1.0


def wait_for_rollout(cluster: kube.Cluster, ref: kube.ObjectRef, *, timeout: float,
                     on_status: Callable[[RolloutStatus], None],
                     waiter: Waiter | None = None) -> RolloutStatus:
    """Poll the Deployment until it is rolled out; RolloutError with a diagnosis otherwise."""
    w = waiter or Waiter()
    deadline = w.clock() + timeout
    while True:
        deployment = kube.get_object(cluster, ref)
        if deployment is None:
            raise ClusterError(f"{ref.describe()} disappeared during the rollout",
                               "something deleted it; run 'dexkit deploy' again")
        status = rollout_status(deployment)
        on_status(status)
        if status.done:
            return status
        if status.failed or w.clock() >= deadline:
            break
        w.sleep(min(w.interval, max(0.0, deadline - w.clock())))
    reason = status.failed or f"timed out after {timeout:g}s: {status.message}"
    raise RolloutError(f"the rollout of {ref.describe()} did not finish: {reason}",
                       "the lines above say what blocks it; fix that and run 'dexkit deploy' "
                       "again (it changes nothing that is already right)",
                       diagnose(cluster, ref, deployment))


# --- diagnosis ------------------------------------------------------------------------------


@dataclass
class _Seen:
    """Names of the Deployment's ReplicaSets and pods, to pick their events."""

    names: set[str] = field(default_factory=set)


def diagnose(cluster: kube.Cluster, ref: kube.ObjectRef,
             deployment: Mapping[str, Any]) -> list[str]:
    """Why ``deployment`` is not rolled out, one finding per line; a read that is refused
    becomes a line, never a second error."""
    lines = describe_deployment(deployment)
    seen = _Seen({ref.name})
    selector = _selector(deployment)
    namespace = ref.namespace or ""
    lines += _guarded(lambda: _replica_sets(cluster, namespace, selector, seen))
    lines += _guarded(lambda: _pods(cluster, namespace, selector, seen))
    lines += _guarded(lambda: _events(cluster, namespace, seen))
    return lines


def _guarded(read: Callable[[], list[str]]) -> list[str]:
    try:
        return read()
    except DexkitError as exc:
        return [f"(could not look: {exc.message})"]


def _selector(deployment: Mapping[str, Any]) -> str:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def describe_deployment(deployment: Mapping[str, Any]) -> list[str]:
    status = rollout_status(deployment)
    lines = [f"deployment: {status.updated}/{status.desired} updated, "
             f"{status.available}/{status.desired} available ({status.message})"]
    if not status.observed:
        lines.append("the deployment controller has not seen this version of the Deployment: "
                     "is kube-controller-manager running?")
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True" or condition.get("type") == "ReplicaFailure":
            lines.append(f"condition {condition.get('type')}={condition.get('status')}: "
                         f"{condition.get('reason', '')} {condition.get('message', '')}".strip())
    return lines


def _replica_sets(cluster: kube.Cluster, namespace: str, selector: str,
                  seen: _Seen) -> list[str]:
    found = kube.list_objects(cluster, "ReplicaSet", namespace=namespace, labels=selector)
    lines = []
    for rs in found:
        name = str(rs["metadata"]["name"])
        seen.names.add(name)
        status = rs.get("status") or {}
        lines.append(f"replicaset {name}: {status.get('readyReplicas') or 0}/"
                     f"{(rs.get('spec') or {}).get('replicas', 0)} ready")
    return lines


def _pods(cluster: kube.Cluster, namespace: str, selector: str, seen: _Seen) -> list[str]:
    pods = kube.list_objects(cluster, "Pod", namespace=namespace, labels=selector)
    if not pods:
        return ["no pods: the ReplicaSet controller has not created any (is "
                "kube-controller-manager running? are there quota or admission errors in the "
                "events?)"]
    lines = []
    for pod in pods:
        seen.names.add(str(pod["metadata"]["name"]))
        lines += describe_pod(pod)
        for container, previous in crashing_containers(pod):
            lines += _log_lines(cluster, namespace, str(pod["metadata"]["name"]), container,
                                previous)
    return lines


def describe_pod(pod: Mapping[str, Any]) -> list[str]:
    """Phase, scheduling and each container's state of one pod (pure)."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    node = (pod.get("spec") or {}).get("nodeName")
    lines = [f"pod {name}: {status.get('phase', 'Unknown')}"
             + (f" on {node}" if node else ", not scheduled to a node")]
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            lines.append(f"  not scheduled: {condition.get('reason', '')} "
                         f"{condition.get('message', '')}".rstrip())
    for cs in [*(status.get("initContainerStatuses") or []),
               *(status.get("containerStatuses") or [])]:
        lines += _container_lines(cs)
    return lines


def _container_lines(cs: Mapping[str, Any]) -> list[str]:
    state = cs.get("state") or {}
    restarts = int(cs.get("restartCount") or 0)
    again = f" (restarted {restarts} times)" if restarts else ""
    if "waiting" in state:
        waiting = state["waiting"] or {}
        return [f"  container {cs.get('name')}: waiting: {waiting.get('reason', '')}"
                f"{': ' + waiting['message'] if waiting.get('message') else ''}{again}"]
    if "terminated" in state:
        done = state["terminated"] or {}
        return [f"  container {cs.get('name')}: terminated: {done.get('reason', '')} "
                f"(exit code {done.get('exitCode')}){again}"]
    if not cs.get("ready"):
        return [f"  container {cs.get('name')}: running, not ready{again}"]
    return []


def crashing_containers(pod: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """(container, whether its previous run holds the log) for those worth a log excerpt."""
    found = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        reason = str((state.get("waiting") or state.get("terminated") or {}).get("reason", ""))
        if reason in _CRASHING or int(cs.get("restartCount") or 0) > 0:
            # A container that is terminated now holds the crash's log itself; its "previous"
            # run may already be removed (the kubelet keeps one dead container).
            previous = bool(cs.get("lastState", {}).get("terminated")) and \
                not state.get("terminated")
            found.append((str(cs.get("name")), previous))
    return found


def _log_lines(cluster: kube.Cluster, namespace: str, pod: str, container: str,
               previous: bool) -> list[str]:
    try:
        text = kube.pod_log(cluster, namespace, pod, container, previous=previous,
                            tail=LOG_LINES)
    except DexkitError as exc:
        return [f"  last log lines of {container}: unavailable ({exc.message})"]
    lines = text.rstrip("\n").splitlines()[-LOG_LINES:]
    return [f"  last log lines of {container}:"] + [f"    | {line}" for line in lines]


def _events(cluster: kube.Cluster, namespace: str, seen: _Seen) -> list[str]:
    events = kube.list_objects(cluster, "Event", namespace=namespace)
    return recent_events(events, seen.names)


def recent_events(events: Sequence[Mapping[str, Any]], names: set[str]) -> list[str]:
    """The last events about the named objects, oldest first (pure)."""
    mine = [e for e in events if (e.get("involvedObject") or {}).get("name") in names]
    mine.sort(key=_event_time)
    if not mine:
        return ["no events about the Deployment, its ReplicaSets or pods"]
    lines = ["recent events:"]
    for event in mine[-EVENTS:]:
        involved = event.get("involvedObject") or {}
        count = int(event.get("count") or 1)
        lines.append(f"  {event.get('type', '')} {event.get('reason', '')} "
                     f"{str(involved.get('kind', '')).lower()}/{involved.get('name')}: "
                     f"{str(event.get('message', '')).strip()}"
                     + (f" (x{count})" if count > 1 else ""))
    return lines


def _event_time(event: Mapping[str, Any]) -> str:
    # RFC 3339 timestamps in UTC sort as text.
    series = event.get("series") or {}
    return str(series.get("lastObservedTime") or event.get("lastTimestamp")
               or event.get("eventTime") or event.get("firstTimestamp")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")
