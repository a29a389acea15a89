"""Cluster checks: what runs Dex in Kubernetes, compared with what dexkit renders now.

Secret values never leave this module: certificates are named by subject and fingerprint, and
the Dex config drift is shown as a diff in which every credential-like value (password
hashes, client secrets, bind passwords) is replaced by a marker that only says whether it
changed.
"""

from __future__ import annotations

import base64
import difflib
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from dexkit import kube
from dexkit.config import (
    PROVEN_MINORS,
    SUPPORTED_MINORS,
    Config,
    KubernetesStorage,
    version_warnings,
)
from dexkit.deploy import crd_established
from dexkit.doctor.apiserver import sandbox_view
from dexkit.doctor.core import Context, Result, Skip, check, fail, ok, warn
from dexkit.kube import ObjectRef, ServerClock
from dexkit.pki import fingerprint, key_matches
from dexkit.render.apiserver import authentication_api_version
from dexkit.render.dex import (
    CONFIG_FILE,
    CONFIG_SECRET,
    CRD_GROUP,
    NAME,
    STORAGE_VERBS,
    crd_resources,
    dexkit_applies_crds,
    render_dex_config,
    render_service,
    storage_kinds,
)
from dexkit.rollout import not_serving
from dexkit.sandbox.controlplane import SandboxState, sandbox_dir

DEPLOY_HINT = "run 'dexkit deploy' to apply what dexkit.yaml renders"


def server_clock(ctx: Context) -> tuple[ServerClock, object]:
    """The API server's version and Date header, with this machine's clock read just after."""
    def load() -> tuple[ServerClock, object]:
        answer = kube.server_clock(ctx.cluster)
        return answer, ctx.edges.clock()
    return ctx.fact("cluster.clock", load)


def live(ctx: Context, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    """The live object in Dex's namespace (or ``namespace``), None when it does not exist."""
    ns = namespace or ctx.config.namespace
    return ctx.fact(f"live:{kind}:{ns}/{name}",
                    lambda: kube.get_object(ctx.cluster, ObjectRef(kind, name, ns)))


def _name(ctx: Context, name: str) -> str:
    return f"{ctx.config.namespace}/{name}"


def skip_if_sandbox_runs_dex(ctx: Context, *, storage_checks: bool = False) -> None:
    """`dexkit sandbox up` runs Dex as a local process, not in the cluster: when the kubeconfig
    points at the project's sandbox and nothing was deployed into it, the in-cluster checks do
    not apply (the network and API-server checks still judge that Dex). Checks of what Dex's
    kubernetes storage needs (``storage_checks``) do apply when that Dex uses it: it reads the
    sandbox through the rendered ServiceAccount and RBAC."""
    def load() -> str:
        if sandbox_view(ctx.directory, ctx.config, ctx.cluster.server) is None:
            return ""
        if live(ctx, "Deployment", NAME) is not None:
            return ""
        state = SandboxState.load(sandbox_dir(ctx.directory.resolve()))
        return (state.dex_storage if state is not None else "") or "memory"
    storage = ctx.fact("cluster.sandbox-dex", load)
    if not storage or (storage_checks and storage == "kubernetes"):
        return
    raise Skip("the project's sandbox runs Dex as a local process, not in the cluster")


@check("cluster.reachable", needs=("local.config",), cluster=True)
def reachable(ctx: Context) -> Result:
    """The cluster answers through the kubeconfig."""
    answer, _ = server_clock(ctx)
    cluster = ctx.cluster
    return ok(f"{cluster.server} (context {cluster.context}) answers: Kubernetes "
              f"{answer.version or 'version unknown'}")


_VERSION = re.compile(r"^v?1\.(\d+)(?:\.|$)")


@check("cluster.version", needs=("cluster.reachable",), cluster=True)
def version(ctx: Context) -> Result:
    """The cluster's Kubernetes minor is proven and is the one dexkit.yaml renders for."""
    answer, _ = server_clock(ctx)
    match = _VERSION.match(answer.version or "")
    if match is None:
        raise Skip(f"the API server reports no Kubernetes version ('{answer.version}')")
    minor, config = int(match.group(1)), ctx.config
    differences = rendered_differences(config, minor)
    if differences:
        return warn(f"the cluster runs Kubernetes {answer.version}, dexkit.yaml says "
                    f"kubernetesVersion {config.kubernetes_version}; rendered for 1.{minor}, "
                    f"{'; '.join(differences)}",
                    f"set kubernetesVersion: \"1.{minor}\" in dexkit.yaml and run 'dexkit "
                    "render' (for kind: create the cluster with a node image of the minor "
                    "dexkit.yaml names)")
    notes = version_warnings(minor)
    if notes or minor not in PROVEN_MINORS:
        proven = f"1.{PROVEN_MINORS.start}-1.{PROVEN_MINORS[-1]}"
        return warn(f"the cluster runs Kubernetes {answer.version}, outside the minors dexkit "
                    f"proves ({proven})" + (f": {notes[0]}" if notes else ""),
                    "upgrade the cluster, or check the rendered API-server side by hand")
    same = "" if minor == config.configured_minor else \
        f" (dexkit.yaml says {config.kubernetes_version}; the rendered files are the same)"
    return ok(f"Kubernetes {answer.version}, a minor dexkit proves{same}")


def rendered_differences(config: Config, minor: int) -> list[str]:
    """What dexkit would render differently for the API server of minor ``minor``."""
    found = []
    ours, theirs = config.minor, min(minor, SUPPORTED_MINORS[-1])
    if config.api_server.mode == "authentication-config" and \
            authentication_api_version(ours) != authentication_api_version(theirs):
        found.append(f"the AuthenticationConfiguration would be "
                     f"{authentication_api_version(theirs)}, not "
                     f"{authentication_api_version(ours)}")
    # kind's kubeadm patches name no apiVersion: kind applies them to any node image's kubeadm.
    return found


# --- the Deployment ---------------------------------------------------------------------------


@check("cluster.deployment", needs=("cluster.reachable",), cluster=True)
def deployment(ctx: Context) -> Result:
    """Dex's Deployment exists and is available."""
    skip_if_sandbox_runs_dex(ctx)

    found = live(ctx, "Deployment", NAME)
    where = f"Deployment {_name(ctx, NAME)}"
    if found is None:
        return fail(f"{where} does not exist", DEPLOY_HINT)
    spec, status = found.get("spec") or {}, found.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    if wanted == 0:
        ns = ctx.config.namespace
        return fail(f"{where} {not_serving(found)}: no Pod serves the issuer",
                    f"scale it up ('kubectl -n {ns} scale deployment {NAME} --replicas="
                    f"{ctx.config.dex.min_replicas}'), or run 'dexkit deploy'")
    available = int(status.get("availableReplicas") or 0)
    condition = next((c for c in status.get("conditions") or []
                      if c.get("type") == "Available"), None)
    if available < 1 or (condition is not None and condition.get("status") != "True"):
        why = [f"{available} of {wanted} replicas available"]
        if condition and condition.get("message"):
            why.append(str(condition["message"]))
        why += _pod_problems(ctx, found)
        if not status:
            why.append("no controller has reported on it (is kube-controller-manager running?)")
        ns = ctx.config.namespace
        return fail(f"{where} is not available: {'; '.join(why)}",
                    f"'kubectl -n {ns} describe deployment {NAME}' and 'kubectl -n {ns} logs "
                    f"deployment/{NAME}' say why; 'dexkit deploy' re-applies and waits for the "
                    "rollout")
    stuck = _stuck_rollout(found)
    if stuck:
        ns = ctx.config.namespace
        return fail(f"{where} still serves from its old pods, but its rollout is stuck: "
                    + "; ".join([stuck, *_pod_problems(ctx, found)]),
                    f"'kubectl -n {ns} describe pods -l app.kubernetes.io/name={NAME}' shows "
                    "the events; fix the cause and run 'dexkit deploy' again")
    images = [c.get("image") for c in (spec.get("template") or {}).get("spec", {})
              .get("containers", []) if c.get("name") == "dex"]
    if images and images[0] != ctx.config.dex.image:
        return warn(f"{where} is available ({available}/{wanted}) but runs {images[0]}, "
                    f"dexkit.yaml says {ctx.config.dex.image}", DEPLOY_HINT)
    return ok(f"{where} is available: {available}/{wanted} replicas")


def _stuck_rollout(deployment: dict[str, Any]) -> str:
    """Why a Deployment that is available has not finished rolling out, or ""."""
    meta, spec = deployment.get("metadata") or {}, deployment.get("spec") or {}
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return ""  # the controller has not looked yet; that is not stuck
    wanted = int(spec.get("replicas", 1))
    # The API leaves zero counts out: an absent updatedReplicas is judged by unavailable alone.
    updated = int(status.get("updatedReplicas", wanted) or 0)
    unavailable = int(status.get("unavailableReplicas") or 0)
    if updated >= wanted and not unavailable:
        return ""
    return f"{updated} of {wanted} replicas updated, {unavailable} unavailable"


def _probe_mismatch(pod: dict[str, Any]) -> list[str]:
    """Readiness probes that ask a port the container does not declare (a hand edit)."""
    found = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        declared = {str(p.get("containerPort")) for p in container.get("ports") or []} | \
            {str(p.get("name")) for p in container.get("ports") or [] if p.get("name")}
        probe = ((container.get("readinessProbe") or {}).get("httpGet") or {})
        port = probe.get("port")
        if port is not None and str(port) not in declared:
            found.append(f"its readiness probe asks port {port}, which {container.get('name')} "
                         f"does not serve (ports: {', '.join(sorted(declared))})")
    return found


def _pod_problems(ctx: Context, deployment: dict[str, Any]) -> list[str]:
    """Why Dex's pods are not ready, in a few words each (waiting reasons, scheduling)."""
    selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    labels = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    try:
        pods = kube.list_objects(ctx.cluster, "Pod", namespace=ctx.config.namespace, labels=labels)
    except Exception:
        return []
    found = []
    for pod in pods[:3]:
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        reasons = [f"{s.get('name')}: {w.get('reason')}"
                   + (f" ({str(w.get('message'))[:120]})" if w.get("message") else "")
                   for s in status.get("containerStatuses") or []
                   if (w := (s.get("state") or {}).get("waiting"))]
        unscheduled = [c.get("message") for c in status.get("conditions") or []
                       if c.get("type") == "PodScheduled" and c.get("status") == "False"]
        not_ready = [f"not ready ({'; '.join(_probe_mismatch(pod)) or 'readiness probe failing'})"
                     for c in status.get("conditions") or []
                     if c.get("type") == "Ready" and c.get("status") == "False"
                     and status.get("phase") == "Running" and not reasons]
        details = reasons + [str(u) for u in unscheduled] + not_ready
        found.append(f"pod {name} {status.get('phase', '?')}"
                     + (": " + ", ".join(details) if details else ""))
    return found


# --- the Service ------------------------------------------------------------------------------


@check("cluster.service", needs=("cluster.reachable",), cluster=True)
def service(ctx: Context) -> Result:
    """Dex's Service exposes the port dexkit renders (the issuer's port for a NodePort)."""
    skip_if_sandbox_runs_dex(ctx)

    found = live(ctx, "Service", NAME)
    where = f"Service {_name(ctx, NAME)}"
    if found is None:
        return fail(f"{where} does not exist: nothing routes the issuer's port to Dex",
                    DEPLOY_HINT)
    wanted = yaml.safe_load(render_service(ctx.config))["spec"]
    spec = found.get("spec") or {}
    problems = []
    if spec.get("type") != wanted["type"]:
        problems.append(f"type is {spec.get('type')}, dexkit renders {wanted['type']}")
    want_port = wanted["ports"][0]
    port = next((p for p in spec.get("ports") or [] if p.get("name") == want_port["name"]), None)
    if port is None:
        problems.append(f"it has no port named '{want_port['name']}'")
    else:
        for key in ("port", "targetPort", "nodePort"):
            if key in want_port and str(port.get(key)) != str(want_port[key]):
                problems.append(f"{key} is {port.get(key)}, dexkit renders {want_port[key]}")
    selector = spec.get("selector") or {}
    if any(selector.get(k) != v for k, v in wanted["selector"].items()):
        problems.append(f"its selector {selector} does not select Dex's pods "
                        f"{wanted['selector']}")
    if problems:
        return fail(f"{where}: " + "; ".join(problems), DEPLOY_HINT)
    config = ctx.config
    if "nodePort" in want_port:
        issuer = " (the issuer's port)" if want_port["nodePort"] == config.issuer_port else ""
        return ok(f"{where}: NodePort {want_port['nodePort']}{issuer} -> {want_port['port']} "
                  "-> Dex's https port")
    return ok(f"{where}: {wanted['type']} port {want_port['port']} -> Dex's https port")


# --- the TLS Secret ---------------------------------------------------------------------------


def _short_fingerprint(cert: x509.Certificate) -> str:
    return fingerprint(cert)[:23] + "…"


def secret_bytes(secret: dict[str, Any], key: str) -> bytes | None:
    value = (secret.get("data") or {}).get(key)
    return base64.b64decode(value) if value else None


@check("cluster.tls-secret", needs=("cluster.reachable", "local.tls-files"), cluster=True)
def tls_secret(ctx: Context) -> Result:
    """The TLS Secret in the cluster holds ssl/cert.pem (and its key)."""
    skip_if_sandbox_runs_dex(ctx)

    name = ctx.config.tls_secret_name
    where = f"Secret {_name(ctx, name)}"
    cert_name = ctx.relative(ctx.paths.cert)
    found = live(ctx, "Secret", name)
    if found is None:
        return fail(f"{where} does not exist: Dex's pods cannot mount their certificate",
                    f"run 'dexkit deploy': it creates the Secret from {cert_name} and its key")
    crt, key = secret_bytes(found, "tls.crt"), secret_bytes(found, "tls.key")
    if crt is None or key is None:
        missing = " and ".join(k for k, v in (("tls.crt", crt), ("tls.key", key)) if v is None)
        return fail(f"{where} has no {missing}", DEPLOY_HINT)
    try:
        held = x509.load_pem_x509_certificates(crt)[0]
    except (ValueError, IndexError):
        return fail(f"{where}: tls.crt is not a PEM certificate", DEPLOY_HINT)
    if held != ctx.cert:
        return fail(f"{where} holds another certificate ({held.subject.rfc4514_string()}, "
                    f"SHA-256 {_short_fingerprint(held)}, expires "
                    f"{held.not_valid_after_utc:%Y-%m-%d}) than {cert_name} (SHA-256 "
                    f"{_short_fingerprint(ctx.cert)}): Dex serves that one",
                    f"run 'dexkit deploy' to put {cert_name} and its key into it; Dex restarts "
                    "with them")
    private = _private_key(key)
    if private is None or not key_matches(held, private):
        return fail(f"{where}: tls.key is not the key of its tls.crt: Dex cannot start TLS",
                    DEPLOY_HINT)
    return ok(f"{where} holds {cert_name} (SHA-256 {_short_fingerprint(held)}) and its key")


def _private_key(data: bytes) -> Any:
    """The PEM key, or None when it is not one (its bytes are never shown)."""
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return None


# --- the Dex config in the cluster ------------------------------------------------------------

_SECRET_WORDS = ("hash", "secret", "password", "bindpw", "token")
HIDDEN = "<hidden>"
HIDDEN_RENDERED = "<hidden, as rendered>"
HIDDEN_CHANGED = "<hidden, changed in the cluster>"


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and any(word in key.lower() for word in _SECRET_WORDS)


def _hide(value: Any) -> Any:
    """Every credential-like value replaced by HIDDEN; ``$VAR`` references stay (they name an
    environment variable, not a value)."""
    if isinstance(value, dict):
        return {k: (v if _is_reference(v) else HIDDEN)
                if _is_secret_key(k) and not isinstance(v, dict | list) else _hide(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_hide(v) for v in value]
    return value


def hide_pair(rendered: Any, live_value: Any) -> tuple[Any, Any]:
    """Both configs with credentials hidden, walking them side by side so that a changed
    credential still shows up as a changed line (without its value)."""
    if isinstance(rendered, dict) and isinstance(live_value, dict):
        left: dict[Any, Any] = {}
        right: dict[Any, Any] = {}
        for key in list(rendered) + [k for k in live_value if k not in rendered]:
            a, b = rendered.get(key, _ABSENT), live_value.get(key, _ABSENT)
            if _is_secret_key(key) and not isinstance(a, dict | list) and \
                    not isinstance(b, dict | list):
                # Both sides present and different: markers that differ, so the line shows.
                changed = a is not _ABSENT and b is not _ABSENT and a != b
                if a is not _ABSENT:
                    left[key] = a if _is_reference(a) else (HIDDEN_RENDERED if changed
                                                              else HIDDEN)
                if b is not _ABSENT:
                    right[key] = b if _is_reference(b) else (HIDDEN_CHANGED if changed
                                                               else HIDDEN)
                continue
            if a is not _ABSENT and b is not _ABSENT:
                left[key], right[key] = hide_pair(a, b)
            elif a is not _ABSENT:
                left[key] = _hide(a)
            else:
                right[key] = _hide(b)
        return left, right
    if isinstance(rendered, list) and isinstance(live_value, list):
        pairs = [hide_pair(a, b) for a, b in zip(rendered, live_value, strict=False)]
        return ([p[0] for p in pairs] + [_hide(a) for a in rendered[len(pairs):]],
                [p[1] for p in pairs] + [_hide(b) for b in live_value[len(pairs):]])
    return _hide(rendered), _hide(live_value)


_ABSENT = object()


_REFERENCE = re.compile(r"^\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})$")


def _is_reference(value: object) -> bool:
    """``$VAR`` or ``${VAR}``: Dex expands it from the environment; it names no value. A
    bcrypt hash (``$2y$10$...``) is not one."""
    return isinstance(value, str) and bool(_REFERENCE.match(value))


def config_drift(rendered: str, live_text: str, where: str) -> list[str]:
    """The unified diff (rendered -> cluster) of the two configs as data, credentials hidden;
    empty when they hold the same settings (comments and layout aside)."""
    a, b = yaml.safe_load(rendered), yaml.safe_load(live_text)
    if a == b:
        return []
    left, right = hide_pair(a, b)

    def dump(value: Any) -> list[str]:
        return yaml.safe_dump(value, sort_keys=False, default_flow_style=False,
                              width=1000).splitlines()
    return [line.rstrip("\n") for line in difflib.unified_diff(
        dump(left), dump(right), fromfile="rendered from dexkit.yaml", tofile=where,
        lineterm="", n=1)]


@check("cluster.dex-config", needs=("cluster.reachable", "local.config"), cluster=True)
def dex_config(ctx: Context) -> Result:
    """The Dex config in the cluster is what dexkit renders now (drift as a diff, no secrets)."""
    skip_if_sandbox_runs_dex(ctx)
    key = CONFIG_FILE.rsplit("/", 1)[-1]
    where = f"Secret {_name(ctx, CONFIG_SECRET)}"
    found = live(ctx, "Secret", CONFIG_SECRET)
    if found is None:
        return fail(f"{where} (Dex's config) does not exist", DEPLOY_HINT)
    raw = secret_bytes(found, key)
    if raw is None:
        return fail(f"{where} has no key '{key}'", DEPLOY_HINT)
    rendered = render_dex_config(ctx.config)
    text = raw.decode("utf-8", errors="replace")
    if text == rendered:
        return ok(f"{where} holds exactly what dexkit renders now")
    try:
        diff = config_drift(rendered, text, f"{where} in the cluster")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        return fail(f"{where}: {key} is not valid YAML{line}: Dex cannot start with it",
                    DEPLOY_HINT)
    if not diff:
        return ok(f"{where} holds the settings dexkit renders now (comments or layout differ)")
    return fail(f"the Dex config in {where} differs from what dexkit renders now "
                "(credentials hidden):\n" + "\n".join(diff),
                "run 'dexkit deploy' to apply dexkit.yaml; if the change in the cluster was "
                "meant, make it in dexkit.yaml first, or the next deploy undoes it")


# --- Dex's permissions --------------------------------------------------------------------------


def dex_permissions(config: Config) -> list[tuple[str, str, str, str | None]]:
    """(verb, group, resource, namespace): what the project's Dex's kubernetes storage calls
    (creating CRDs only when Dex makes them itself)."""
    wanted: list[tuple[str, str, str, str | None]] = []
    if not dexkit_applies_crds(config):
        wanted.append(("create", "apiextensions.k8s.io", "customresourcedefinitions", None))
    wanted += [(verb, CRD_GROUP, resource, config.namespace)
               for resource in crd_resources(config) for verb in STORAGE_VERBS]
    return wanted


@check("cluster.dex-crds", needs=("cluster.reachable", "local.config"), cluster=True)
def dex_crds(ctx: Context) -> Result:
    """Dex's CRDs exist and are served, when dexkit applies them (Dex only checks them)."""
    skip_if_sandbox_runs_dex(ctx, storage_checks=True)
    config = ctx.config
    if not dexkit_applies_crds(config):
        raise Skip(f"storage is {config.dex.storage.type}: Dex needs no CRDs"
                   if config.dex.storage.type != "kubernetes" else
                   f"{config.dex.image} creates its CRDs itself")
    names = [f"{plural}.{CRD_GROUP}" for plural, _, _ in storage_kinds(config)]
    found = {name: live(ctx, "CustomResourceDefinition", name) for name in names}
    missing = [name for name, crd in found.items() if crd is None]
    pending = [name for name, crd in found.items()
               if crd is not None and not crd_established(crd)]
    if missing or pending:
        what = "; ".join(filter(None, [
            f"missing: {', '.join(missing)}" if missing else "",
            f"not established: {', '.join(pending)}" if pending else ""]))
        return fail(f"Dex's CRDs are not all served ({what}): with crdHandling: check Dex "
                    "refuses to start ('storage is not initialized, CRDs are not created')",
                    DEPLOY_HINT)
    return ok(f"{len(names)} CRDs of {CRD_GROUP} established, as {config.dex.image} needs")


@check("cluster.dex-rbac", needs=("cluster.reachable", "local.config"), cluster=True)
def dex_rbac(ctx: Context) -> Result:
    """Dex's ServiceAccount may manage its CRDs and their objects (SubjectAccessReview)."""
    skip_if_sandbox_runs_dex(ctx, storage_checks=True)
    config = ctx.config
    if not isinstance(config.dex.storage, KubernetesStorage):
        raise Skip(f"storage is {config.dex.storage.type}: Dex needs no Kubernetes API "
                   "permissions")
    ns = config.namespace
    account = f"ServiceAccount {_name(ctx, NAME)}"
    if live(ctx, "ServiceAccount", NAME) is None:
        return fail(f"{account} does not exist: Dex's pods cannot be created", DEPLOY_HINT)
    user = f"system:serviceaccount:{ns}:{NAME}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]
    wanted = dex_permissions(config)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda w: kube.subject_can(ctx.cluster, user, groups, w[0],
                                                           w[2], w[1], w[3]), wanted))
    denied = [(w, a) for w, a in zip(wanted, answers, strict=True) if not a.allowed]
    if denied:
        listed = [f"{verb} {resource}.{group}" + (f" in {where}" if where else "")
                  for (verb, group, resource, where), _ in denied]
        shown = "; ".join(listed[:6]) + (f" (and {len(listed) - 6} more)"
                                         if len(listed) > 6 else "")
        return fail(f"{account} may not: {shown}. Dex logs '... is forbidden' and its "
                    "storage fails",
                    "re-apply Dex's ClusterRole and Role with their bindings: 'dexkit deploy'")
    crds = "" if dexkit_applies_crds(config) else "create Dex's CRDs and "
    return ok(f"{account} may {crds}use its {len(crd_resources(config))} resources "
              f"in {ns} ({len(wanted)} SubjectAccessReviews)")
