"""``dexkit deploy``: every rendered object and the Secrets Dex needs, server-side applied.

Rules, in the order they act:

1. The project is loaded and checked first (config, TLS files that verify, render): a broken
   project never reaches the cluster.
2. The live state of every object is read (concurrently). A namespace that is being deleted, or
   a credential that is neither in the environment nor in the cluster, is an error here,
   before anything is changed.
3. Every object whose namespace exists goes through a server-side dry run first (validation,
   admission, field conflicts): all conflicts are reported together, by object, field and
   manager, and need ``force_conflicts``. ``dry_run`` stops here and reports what would change.
4. Objects are applied with field manager ``dexkit`` in dependency order (namespace, service
   account and roles, bindings, Secrets, Deployment, Service and the rest), the objects of one
   step concurrently since none of them refers to another.
5. Each object is reported created (it did not exist), unchanged (its resourceVersion did not
   move: the API server found nothing to store) or updated, with the fields that changed.

What deploy adds to the rendered objects, and why:

- ``app.kubernetes.io/instance: <namespace>`` on every object but the shared ClusterRole, so
  that ``destroy`` finds the cluster-scoped objects of this installation and not those of
  another namespace.
- On the pod template, ``checksum/tls`` (the certificate and CA) and ``checksum/credentials``
  (a keyed digest of the credential values): a rotated certificate or secret changes the
  template, so the Deployment rolls and Dex reads the new files and environment.
- Secrets are sent with ``data``, not ``stringData``: the API server folds ``stringData`` into
  ``data`` on write, so server-side apply would track fields that never exist.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from dexkit import credentials, files, kube, pki
from dexkit.artefacts import read_render_inputs
from dexkit.config import (
    Config,
    KubernetesStorage,
    MemoryStorage,
    SQLiteStorage,
    load_config,
)
from dexkit.errors import ClusterError, DexkitError, TLSError
from dexkit.labels import INSTANCE_LABEL as INSTANCE_LABEL
from dexkit.layout import tls_paths
from dexkit.render.dex import render_manifests

TLS_CHECKSUM = "checksum/tls"
CREDENTIALS_CHECKSUM = "checksum/credentials"
# Apply order: each step only refers to objects of earlier steps.
STEPS: Mapping[str, int] = {
    "CustomResourceDefinition": 0, "Namespace": 0,
    "ServiceAccount": 1, "ClusterRole": 1, "Role": 1,
    "RoleBinding": 2, "ClusterRoleBinding": 2,
    "Secret": 3, "ConfigMap": 3,
    "Deployment": 4,
    "Service": 5, "PodDisruptionBudget": 5, "Ingress": 5,
}
# One object for every installation (the CRD ClusterRole, Dex's CRDs): an instance label would
# flip between namespaces on every deploy; destroy deletes the ClusterRole only once nothing is
# bound to it, and the CRDs (with every object stored in them) only when asked to.
SHARED_KINDS = frozenset({"ClusterRole", "CustomResourceDefinition"})
# Dex (crdHandling: check) lists its kinds once at start and exits if one is not served yet.
CRD_ESTABLISHED_TIMEOUT = 60.0
# Fields that differ between a read and an apply without meaning a change.
_VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation")
WORKERS = 8

T = TypeVar("T")
R = TypeVar("R")


# --- the project ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    """What deploy needs from disk: the config, the rendered objects and the TLS files."""

    config: Config
    objects: list[dict[str, Any]]
    tls: credentials.TLSMaterial
    warnings: list[str] = field(default_factory=list)


def load_project(directory: Path, now: dt.datetime | None = None) -> Project:
    loaded = load_config(directory)
    config = loaded.config
    inputs = read_render_inputs(directory, config)
    objects = [yaml.safe_load(m.text) for m in render_manifests(config, inputs.connector_ca_pems)]
    tls, tls_warnings = read_tls(directory, config, now or dt.datetime.now(dt.UTC))
    return Project(config, objects, tls, [*loaded.warnings, *tls_warnings])


def read_tls(directory: Path, config: Config,
             now: dt.datetime) -> tuple[credentials.TLSMaterial, list[str]]:
    """The serving certificate, key and CA, refused if Dex could not serve with them."""
    paths = tls_paths(directory, config)
    for path in (paths.cert, paths.key, paths.ca):
        if not path.is_file():
            raise TLSError(f"{path} does not exist",
                           f"run 'dexkit init --dir {directory}' to create the TLS files")
    problems = pki.check_assets(paths, issuer_host=config.issuer_host, within_days=30, now=now)
    fatal = [p for p in problems if p.severity == "fail" and p.code != "expiring"]
    if fatal:
        raise TLSError(fatal[0].message, fatal[0].hint)
    # key.pem goes into a Secret in the cluster: read as a secret (never through a link)
    material = credentials.TLSMaterial(files.read_limited(paths.cert),
                                       files.read_limited(paths.key, secret=True),
                                       files.read_limited(paths.ca))
    return material, [p.message for p in problems if p.code == "expiring"]


# --- the objects (pure) ---------------------------------------------------------------------


def step_of(obj: Mapping[str, Any]) -> int:
    return STEPS.get(str(obj.get("kind")), max(STEPS.values()) + 1)


def order(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dependency order; objects of one step keep the order they came in."""
    return sorted(objects, key=step_of)


def prepared(obj: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """A copy with the instance label, and a Secret's ``stringData`` folded into ``data``."""
    out = copy.deepcopy(dict(obj))
    meta = out.setdefault("metadata", {})
    if out.get("kind") not in SHARED_KINDS:
        meta["labels"] = {**(meta.get("labels") or {}), INSTANCE_LABEL: config.namespace}
    if out.get("kind") == "Secret" and out.get("stringData"):
        data = dict(out.get("data") or {})
        for key, value in out.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        out["data"] = dict(sorted(data.items()))
    return out


def annotate_pod_template(deployment: dict[str, Any], checksums: Mapping[str, str]) -> None:
    template_meta = deployment["spec"]["template"].setdefault("metadata", {})
    template_meta["annotations"] = {**(template_meta.get("annotations") or {}), **checksums}


def build_objects(project: Project,
                  resolved: Sequence[credentials.ResolvedSecret]) -> list[dict[str, Any]]:
    """Everything to apply, in order: the rendered objects, the TLS Secret, the credential
    Secrets that have values from the environment, and the checksums on the pod template."""
    config = project.config
    rendered = [prepared(obj, config) for obj in project.objects]
    ours = [credentials.tls_secret(config, project.tls)]
    ours += [credentials.credential_secret(config, r) for r in resolved if not r.untouched]
    checksums = {TLS_CHECKSUM: credentials.tls_checksum(project.tls)}
    if resolved:
        checksums[CREDENTIALS_CHECKSUM] = credentials.credentials_checksum(project.tls,
                                                                          list(resolved))
    for obj in rendered:
        if obj.get("kind") == "Deployment":
            annotate_pod_template(obj, checksums)
    # Our Secrets go before the rendered ones of their step: the config names them.
    first = [o for o in rendered if step_of(o) < STEPS["Secret"]]
    rest = [o for o in rendered if step_of(o) >= STEPS["Secret"]]
    return order([*first, *(prepared(o, config) for o in ours), *rest])


def namespace_ref(config: Config) -> kube.ObjectRef:
    return kube.ObjectRef("Namespace", config.namespace)


def refs_to_read(project: Project) -> list[kube.ObjectRef]:
    """Every object whose live state decides the plan: the namespace, each rendered object,
    the TLS Secret and each credentials Secret."""
    config = project.config
    refs = [namespace_ref(config)] + [kube.ObjectRef.of(o) for o in project.objects]
    refs.append(kube.ObjectRef("Secret", config.tls_secret_name, config.namespace))
    refs += [kube.ObjectRef("Secret", s.name, config.namespace)
             for s in credentials.credential_secrets(config)]
    return list(dict.fromkeys(refs))


def secret_data(live: Mapping[str, Any] | None) -> dict[str, bytes]:
    if not live:
        return {}
    return {k: base64.b64decode(v) for k, v in (live.get("data") or {}).items()}


def changed_fields(before: Any, after: Any, path: str = "") -> list[str]:
    """Dotted paths where ``after`` differs from ``before`` (status and bookkeeping ignored).
    Paths only, never values: for a Secret they name keys, not what the keys hold."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            if (not path and key == "status") or (path == "metadata" and
                                                  key in _VOLATILE_METADATA):
                continue
            found += changed_fields(before.get(key), after.get(key),
                                    f"{path}.{key}" if path else str(key))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [p for i, (b, a) in enumerate(zip(before, after, strict=True))
                for p in changed_fields(b, a, f"{path}[{i}]")]
    return [] if before == after else [path]


# --- results ----------------------------------------------------------------------------------


ACTIONS = ("created", "updated", "unchanged", "kept")


@dataclass(frozen=True)
class Change:
    """What happened to one object (or would, in a dry run)."""

    ref: kube.ObjectRef
    action: str  # created | updated | unchanged | kept
    fields: tuple[str, ...] = ()
    note: str = ""


def classify(ref: kube.ObjectRef, before: Mapping[str, Any] | None,
             after: Mapping[str, Any], *, dry_run: bool) -> Change:
    """created / updated / unchanged. A real apply is judged by the resourceVersion (the API
    server bumps it only when it stores something); a dry run stores nothing, so by content."""
    if before is None:
        return Change(ref, "created")
    fields = tuple(changed_fields(before, after))
    if dry_run:
        return Change(ref, "updated" if fields else "unchanged", fields)
    before_rv = (before.get("metadata") or {}).get("resourceVersion")
    if before_rv == (after.get("metadata") or {}).get("resourceVersion"):
        return Change(ref, "unchanged")
    return Change(ref, "updated", fields, "" if fields else "field ownership only")


class Reporter(Protocol):
    def change(self, change: Change) -> None: ...

    def step(self, verb: str, what: str) -> None: ...

    def warn(self, message: str, hint: str = "") -> None: ...


@dataclass(frozen=True)
class DeployRequest:
    project: Project
    env: Mapping[str, str]
    dry_run: bool = False
    force_conflicts: bool = False
    wait: bool = False  # the caller means to wait for the rollout and a login
    pods_run: bool = True  # False: the cluster is a sandbox without a node (no kubelet)


@dataclass
class DeployResult:
    changes: list[Change]
    deployment: kube.ObjectRef | None
    dry_run: bool
    wait: bool = False  # whether the caller waits (see deploy())

    def counts(self) -> dict[str, int]:
        """How many objects each action touched, in a fixed order, zeros left out."""
        counted = {action: 0 for action in ACTIONS}
        for change in self.changes:
            counted[change.action] += 1
        return {action: n for action, n in counted.items() if n}


# --- against the cluster ----------------------------------------------------------------------


def _parallel(pool: ThreadPoolExecutor, fn: Callable[[T], R],
              items: Sequence[T]) -> list[R | BaseException]:
    """``fn`` over ``items`` concurrently; results (or the exception raised) in input order."""
    def guarded(item: T) -> R | BaseException:
        try:
            return fn(item)
        except Exception as exc:
            return exc
    return list(pool.map(guarded, items))


def _first_error(results: Sequence[object]) -> None:
    for result in results:
        if isinstance(result, BaseException):
            raise result


def read_live(pool: ThreadPoolExecutor, cluster: kube.Cluster,
              refs: Sequence[kube.ObjectRef]) -> dict[kube.ObjectRef, dict[str, Any] | None]:
    results = _parallel(pool, lambda ref: kube.get_object(cluster, ref), refs)
    _first_error(results)
    return {ref: r for ref, r in zip(refs, results, strict=True)
            if not isinstance(r, BaseException)}


def check_namespace(config: Config, live: Mapping[kube.ObjectRef, Any]) -> None:
    namespace = live.get(namespace_ref(config))
    if namespace and (namespace.get("status") or {}).get("phase") == "Terminating":
        raise ClusterError(f'namespace "{config.namespace}" is being deleted (Terminating); '
                           "nothing was changed",
                           "wait until it is gone ('kubectl get namespace "
                           f"{config.namespace}'), or deploy into another namespace")


@dataclass(frozen=True)
class Plan:
    """What to apply, decided from the project, the environment and the live state."""

    objects: list[dict[str, Any]]
    live: Mapping[kube.ObjectRef, dict[str, Any] | None]
    kept: list[Change]
    namespace_exists: bool


def plan(pool: ThreadPoolExecutor, request: DeployRequest, cluster: kube.Cluster) -> Plan:
    """Read the cluster and decide; every refusal here comes before any change."""
    config = request.project.config
    live = read_live(pool, cluster, refs_to_read(request.project))
    check_namespace(config, live)
    wanted = credentials.credential_secrets(config)
    existing = {s.name: secret_data(live.get(kube.ObjectRef("Secret", s.name, config.namespace)))
                for s in wanted}
    resolved = credentials.resolve_credentials(wanted, request.env, existing)
    kept = [Change(kube.ObjectRef("Secret", r.secret.name, config.namespace), "kept",
                   note=f"{', '.join(r.secret.variables)} not set: the cluster's values are used")
            for r in resolved if r.untouched]
    return Plan(build_objects(request.project, resolved), live, kept,
                live.get(namespace_ref(config)) is not None)


NO_NODE = ("the project's sandbox runs no node (kubelet), so Dex's Pods cannot start there: "
           "not waiting for the rollout",
           "the sandbox already runs Dex as a process; for Dex as a Pod start "
           "'dexkit sandbox up --node'")


def deploy(request: DeployRequest, cluster: kube.Cluster, reporter: Reporter) -> DeployResult:
    """Apply the project to ``cluster`` by the module's rules; report each object.

    The result says whether the caller waits for the rollout and a login: when asked, except
    where Pods cannot run (a sandbox without a node: said first), after a dry run, or when no
    Deployment was applied."""
    wait = request.wait
    if wait and not request.pods_run:
        reporter.warn(*NO_NODE)
        wait = False
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        decided = plan(pool, request, cluster)
        checked = preflight(pool, cluster, decided.objects,
                            namespace_exists=decided.namespace_exists,
                            force=request.force_conflicts, reporter=reporter)
        if request.dry_run:
            changes = with_kept(_dry_run_changes(decided.objects, decided.live, checked,
                                                 request.project.config), decided.kept)
            _report(reporter, changes)
        else:
            if wait:
                wait_for_cluster_network(cluster, reporter, needs=(SERVICE_NETWORK,))
            changes = apply_all(pool, cluster, decided.objects, decided.live,
                                request.force_conflicts, reporter, decided.kept)
    deployment = next((kube.ObjectRef.of(o) for o in decided.objects
                       if o.get("kind") == "Deployment"), None)
    return DeployResult(changes, deployment, request.dry_run,
                        wait=wait and not request.dry_run and deployment is not None)


# The cluster's network before Dex's Pods. Dex on kubernetes storage reaches the API server at
# the `kubernetes` Service, which kube-proxy programs on each node; Dex resolves its upstreams
# (GitHub's issuer for token exchange, an OIDC or LDAP host, postgres by Service name) through
# the cluster's DNS. `kind create cluster --wait` returns when the node is Ready, seconds before
# kube-proxy's Pod runs and CoreDNS is ready. Measured on kind 1.37 here: a Dex started first
# waited 15 s for its first request ("cannot get kubernetes version: ... Client.Timeout
# exceeded"), exited and was restarted (available 31 s after it was applied, against ~10 s
# once kube-proxy runs); with kube-proxy waited for but not CoreDNS, the first token exchange
# failed after 10 s (Dex could not resolve GitHub's issuer: "no connector 'ci' that takes
# token exchanges"). Only when the caller waits anyway; a cluster without them (a CNI that
# replaces kube-proxy, another DNS) or a user who may not read kube-system has nothing to wait
# for.
KUBE_PROXY = kube.ObjectRef("DaemonSet", "kube-proxy", "kube-system")
CLUSTER_DNS = kube.ObjectRef("Deployment", "coredns", "kube-system")
CLUSTER_NETWORK_TIMEOUT = 60.0


@dataclass(frozen=True)
class _Needed:
    ref: kube.ObjectRef
    ready: Callable[[Mapping[str, Any] | None], bool]
    waiting: str  # said once while it is not ready
    done: str


def daemonset_ready(daemonset: Mapping[str, Any] | None) -> bool:
    """The DaemonSet's current Pods are ready on every node it schedules to (a missing one is
    ready: nothing to wait for)."""
    if daemonset is None:
        return True
    status = daemonset.get("status") or {}
    desired = int(status.get("desiredNumberScheduled") or 0)
    return _observed(daemonset) and desired > 0 and \
        int(status.get("numberReady") or 0) >= desired and \
        int(status.get("updatedNumberScheduled") or 0) >= desired


def deployment_serves(deployment: Mapping[str, Any] | None) -> bool:
    """At least one of the Deployment's Pods is ready: its Service answers (a missing one
    serves: nothing to wait for)."""
    if deployment is None:
        return True
    status = deployment.get("status") or {}
    return _observed(deployment) and int(status.get("readyReplicas") or 0) >= 1


def _observed(obj: Mapping[str, Any]) -> bool:
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    return int((obj.get("status") or {}).get("observedGeneration") or 0) >= generation


# kube-proxy before Dex starts (its storage needs the API server at once); the DNS only before
# deploy returns (Dex resolves an upstream when a login first uses it), so that its wait runs
# beside the rollout's and the login checks'.
SERVICE_NETWORK = _Needed(
    KUBE_PROXY, daemonset_ready,
    f"kube-proxy is not running on every node yet ({KUBE_PROXY.describe()}); Dex reaches the "
    "API server through the Service network it programs",
    "kube-proxy runs on every node")
DNS = _Needed(
    CLUSTER_DNS, deployment_serves,
    f"the cluster's DNS has no ready Pod yet ({CLUSTER_DNS.describe()}); Dex resolves its "
    "upstreams through it",
    "the cluster's DNS answers")
CLUSTER_NETWORK = (SERVICE_NETWORK, DNS)


def needs_cluster_dns(config: Config) -> bool:
    """Whether a login makes Dex resolve a name: an upstream connector (GitHub, OIDC, LDAP, a CI
    system's issuer), appended ones included, or a database by host name. Static users on
    kubernetes, memory or sqlite storage resolve nothing."""
    return bool(config.connectors or config.dex.extra_config.get("connectors")) or \
        not isinstance(config.dex.storage, KubernetesStorage | MemoryStorage | SQLiteStorage)


def wait_for_cluster_network(cluster: kube.Cluster, reporter: Reporter, *,
                             needs: Sequence[_Needed] = CLUSTER_NETWORK,
                             timeout: float = CLUSTER_NETWORK_TIMEOUT,
                             clock: Callable[[], float] = time.monotonic,
                             sleep: Callable[[float], None] = time.sleep) -> None:
    """Until each of ``needs`` is ready (kube-proxy on every node, the cluster's DNS answering),
    where the cluster has it; each said once if it is not ready yet, warned (never failed)
    after ``timeout``: the rollout wait and the login checks judge Dex."""
    started = clock()
    for needed in needs:
        said = False
        while True:
            try:
                ready = needed.ready(kube.get_object(cluster, needed.ref))
            except ClusterError:
                break  # not ours to read: the rollout wait still names a Dex that fails
            if ready:
                if said:
                    reporter.step("network", f"{needed.done} after {clock() - started:.0f}s")
                break
            if not said:
                reporter.step("network", f"waiting: {needed.waiting}")
                said = True
            if clock() - started >= timeout:
                reporter.warn(f"still waiting for {needed.ref.describe()} after "
                              f"{timeout:.0f}s; deploying anyway",
                              f"see 'kubectl -n {needed.ref.namespace} get pods'")
                return
            sleep(0.5)


def with_kept(changes: Sequence[Change], kept: Sequence[Change]) -> list[Change]:
    """``kept`` Secrets listed right after the last Secret, where a reader looks for them."""
    last = max((i for i, c in enumerate(changes) if c.ref.kind == "Secret"),
               default=len(changes) - 1)
    return [*changes[:last + 1], *kept, *changes[last + 1:]]


def _report(reporter: Reporter, changes: Sequence[Change]) -> None:
    for change in changes:
        reporter.change(change)


def preflight(pool: ThreadPoolExecutor, cluster: kube.Cluster, objects: Sequence[dict[str, Any]],
              *, namespace_exists: bool, force: bool,
              reporter: Reporter) -> dict[kube.ObjectRef, dict[str, Any]]:
    """Server-side dry run of every object the API server can check now (a namespaced object
    needs its namespace to exist); all field conflicts raised together unless ``force``."""
    checkable = [o for o in objects
                 if namespace_exists or not kube.ObjectRef.of(o).namespace]
    results = _parallel(pool, lambda o: kube.apply_object(cluster, o, dry_run=True), checkable)
    conflicts = [r for r in results if isinstance(r, kube.ConflictError)]
    _first_error([r for r in results if not isinstance(r, kube.ConflictError)])
    if conflicts and not force:
        raise _all_conflicts(conflicts)
    for conflict in conflicts:
        for c in conflict.conflicts:
            reporter.warn(f"taking over {c.field} of {conflict.ref.describe()} from "
                          f"{c.manager} (--force-conflicts)")
    forced = [o for o in checkable
              if any(kube.ObjectRef.of(o) == c.ref for c in conflicts)]
    again = _parallel(pool, lambda o: kube.apply_object(cluster, o, dry_run=True, force=True),
                      forced)
    _first_error(again)
    return {r.ref: r.object for r in [*results, *again] if isinstance(r, kube.Applied)}


def _all_conflicts(errors: Sequence[kube.ConflictError]) -> ClusterError:
    parts = [f"{e.ref.describe()}: " + ", ".join(f"{c.field} (owned by {c.manager})"
                                                 for c in e.conflicts) for e in errors]
    return ClusterError("field conflicts with other managers, nothing was changed: "
                        + "; ".join(parts),
                        "another tool changed these fields; re-run with --force-conflicts to "
                        "take them over (dexkit's values win), or change them back with that "
                        "tool")


def _dry_run_changes(objects: Sequence[dict[str, Any]],
                     live: Mapping[kube.ObjectRef, dict[str, Any] | None],
                     checked: Mapping[kube.ObjectRef, dict[str, Any]],
                     config: Config) -> list[Change]:
    changes = []
    for obj in objects:
        ref = kube.ObjectRef.of(obj)
        if ref in checked:
            changes.append(classify(ref, live.get(ref), checked[ref], dry_run=True))
        else:
            changes.append(Change(ref, "created", note=f'namespace "{config.namespace}" does '
                                  "not exist yet, so the API server could not check this one"))
    return changes


def apply_all(pool: ThreadPoolExecutor, cluster: kube.Cluster, objects: Sequence[dict[str, Any]],
              live: Mapping[kube.ObjectRef, dict[str, Any] | None], force: bool,
              reporter: Reporter, kept: Sequence[Change] = ()) -> list[Change]:
    """Apply step by step; within a step concurrently. Stops at the first failing step."""
    changes: list[Change] = []
    for step in sorted({step_of(o) for o in objects}):
        batch = [o for o in objects if step_of(o) == step]
        results = _parallel(pool, lambda o: kube.apply_object(cluster, o, force=force), batch)
        done = [classify(r.ref, live.get(r.ref), r.object, dry_run=False)
                for r in results if isinstance(r, kube.Applied)]
        if step == STEPS["Secret"]:
            done += kept
        _report(reporter, done)
        changes += done
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            _raise_partial(failed[0], changes)
        crds = [kube.ObjectRef.of(o) for o in batch if o.get("kind") == "CustomResourceDefinition"]
        if crds:
            wait_established(cluster, crds)
    return changes


def wait_established(cluster: kube.Cluster, crds: Sequence[kube.ObjectRef], *,
                     timeout: float = CRD_ESTABLISHED_TIMEOUT,
                     clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    """Until every CRD is Established (its kind served), or a ClusterError naming those not."""
    deadline = clock() + timeout
    waiting = list(crds)
    while True:
        waiting = [ref for ref in waiting if not crd_established(kube.get_object(cluster, ref))]
        if not waiting:
            return
        if clock() >= deadline:
            names = ", ".join(ref.name for ref in waiting)
            raise ClusterError(f"the API server did not establish {names} within {timeout:.0f}s",
                               "see 'kubectl get crd -o yaml' for their conditions (a name "
                               "conflict with another CRD?)")
        sleep(0.2)


def crd_established(crd: Mapping[str, Any] | None) -> bool:
    conditions = ((crd or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _raise_partial(error: BaseException, changes: Sequence[Change]) -> None:
    if not isinstance(error, DexkitError):
        raise error
    applied = sum(1 for c in changes if c.action != "unchanged")
    if applied:
        error.hint = (f"{error.hint}; {applied} object(s) were already changed (listed above), "
                      "a new deploy continues from there")
    raise error
