"""The level-1 sandbox as one use case: a control plane configured by dexkit's rendered OIDC
side, Dex running the rendered config, and ready only once the API server accepts Dex's token.

``dexkit sandbox up`` and the end-to-end fixtures both call :func:`start`. Rules, in the order
they act:

1. The API server gets dexkit's rendered ``--oidc-*`` flags or AuthenticationConfiguration
   (:mod:`dexkit.sandbox.wiring`), nothing written by hand.
2. Dex runs the rendered config (:mod:`dexkit.sandbox.dexlocal`) with the rendered storage
   where the sandbox can provide it. ``kubernetes`` storage reaches the sandbox's API server as
   the rendered ServiceAccount: the rendered Namespace, ServiceAccount, Roles and bindings are
   server-side applied first (field manager ``dexkit``, as ``dexkit deploy`` does), a
   TokenRequest gives that account's token, and Dex reads it from a kubeconfig whose context
   names Dex's namespace. Dex itself so proves the RBAC dexkit renders: its CRDs, its objects.
   ``memory`` is used when asked for, and for storage the sandbox does not run (postgres,
   sqlite3), with a note that says so.
3. Order. The API server's OIDC authenticator fetches the issuer's discovery document when it
   starts and, if that fails, only every 10 s after. With memory storage Dex starts before the
   API server, so the first fetch succeeds. Kubernetes storage needs the API server first; the
   readiness wait below then covers the API server's next fetch.
4. Ready means a login works: a password grant for the project's first static user (its
   password from ``.dexkit/passwords/``) or the password connector's user given by the caller,
   then a SelfSubjectReview with that ID token must answer 200 with the mapped username. When
   nobody can log in without a browser, a probe token for the issuer and client is sent until
   the API server's log stops answering it with "authenticator not initialized".
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dexkit import files, kube
from dexkit.artefacts import read_render_inputs
from dexkit.config import Config, KubernetesStorage, MemoryStorage
from dexkit.deploy import order, prepared, wait_established
from dexkit.errors import ClusterError, DexkitError, OIDCError
from dexkit.layout import password_file
from dexkit.oidc.session import Edges
from dexkit.oidc.session import login as do_login
from dexkit.oidc.settings import project_settings, read_password
from dexkit.oidc.tokens import probe_token
from dexkit.ready import NOT_INITIALIZED
from dexkit.render.dex import NAME as DEX_ACCOUNT
from dexkit.render.dex import render_manifests
from dexkit.sandbox import controlplane, dexlocal, network, peers, wiring
from dexkit.sandbox.controlplane import ControlPlane, ControlPlaneBinaries, ControlPlaneOptions
from dexkit.sandbox.process import PeerExited

StorageChoice = Literal["rendered", "memory"]
Progress = Callable[[str, str], None]  # (verb, detail): "ready", "etcd (0.4s)"
# The rendered objects Dex's own storage needs before it starts (its CRDs when dexkit applies
# them, its RBAC); the rest is `dexkit deploy`'s.
RBAC_KINDS = frozenset({"CustomResourceDefinition", "Namespace", "ServiceAccount", "Role",
                        "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
DEX_KUBECONFIG = "dex.kubeconfig"
DEX_CONFIG = "dex.yaml"
# The sandbox lives for hours at most; Dex's token is renewed by the next `sandbox up`.
TOKEN_SECONDS = 48 * 3600
READY_POLL = 0.5
DEX_STARTS = 3
DEX_RESTART_DELAY = 1.0


@dataclass(frozen=True)
class StackRequest:
    """One sandbox: which project, which peers, how Dex stores its state."""

    project: Path
    config: Config
    binaries: ControlPlaneBinaries
    kubernetes_version: str
    dex: Path | None = None  # None: no Dex peer (the API server waits for an issuer)
    mode: wiring.Mode | None = None
    storage: StorageChoice = "rendered"
    sandbox: Path | None = None  # default: <project>/.dexkit/sandbox
    env: Mapping[str, str] = field(default_factory=dict)  # what Dex reads ($LDAP_BIND_...)
    login: tuple[str, str] | None = None  # (username, password) to prove readiness with
    connector_cas: Mapping[str, Path] = field(default_factory=dict)  # by connector id
    die_with_parent: bool = True
    apiserver_timeout: float = 120.0
    ready_timeout: float = 60.0


@dataclass
class Stack:
    """A running level-1 sandbox."""

    plane: ControlPlane
    wired: wiring.APIServerWiring
    dex_storage: str | None = None  # "kubernetes" | "memory"; None: Dex not started
    ready_as: str = ""  # who the API server accepted, or "" when a probe proved it
    ready_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.plane.stop()


def sandbox_login(config: Config, project: Path) -> tuple[str, str] | None:
    """The first static user and its stored password, when the project has one."""
    for user in config.static_users:
        stored = password_file(project, user.email)
        if stored.is_file() or stored.is_symlink():
            return user.email, read_password(stored)
    return None


def dex_storage_for(config: Config, choice: StorageChoice) -> tuple[str, str]:
    """("kubernetes" | "memory", a note or "") for what the sandbox can run."""
    if choice == "memory" or isinstance(config.dex.storage, MemoryStorage):
        return "memory", ""
    if isinstance(config.dex.storage, KubernetesStorage):
        return "kubernetes", ""
    return "memory", (f"Dex uses memory storage here: the sandbox runs no "
                      f"{config.dex.storage.type} server for the rendered storage")


@dataclass(frozen=True)
class DexChoice:
    """The Dex binary ``sandbox up`` starts, or None (the sandbox still starts, its API server
    waiting for the issuer); ``notes`` are (warning, hint) pairs that say why, said either
    way."""

    path: Path | None
    notes: tuple[tuple[str, str], ...] = ()


def choose_dex(config: Config, environ: dict[str, str]) -> DexChoice:
    """Whether Dex starts as a process: its peer is built (for the Dex ``dex.image`` names), the
    issuer is on this machine, and the connectors' credentials are in ``environ``."""
    notes: list[tuple[str, str]] = []
    which = peers.dex_build_for_image(config.dex.image)
    dex = peers.locate(peers.peer_spec("dex", dex=which))
    if config.dex.grpc.enabled and peers.dex_build(which).replaced:
        notes.append((f"dex.grpc is on, but the sandbox's {peers.dex_build(which).what}: its "
                      "gRPC API answers every call Unimplemented", ""))
    if not dex.available:
        extra = f" --dex {which}" if which and which != peers.DEFAULT_DEX else ""
        notes.append(("Dex is not started: its peer is not built "
                      f"({dex.path}); the API server is configured and waits for the issuer",
                      f"build it with 'dexkit sandbox build --only dex{extra}'"))
        return DexChoice(None, tuple(notes))
    if not wiring.issuer_is_local(config):
        notes.append((f"Dex is not started: the issuer host '{config.issuer_host}' is not "
                      "this machine, so the sandbox's API server will look for Dex there",
                      "for a self-contained sandbox use 'dexkit init --issuer "
                      "https://127.0.0.1:32000'"))
        return DexChoice(None, tuple(notes))
    missing = dexlocal.missing_credentials(config, environ)
    if missing:
        notes.append((f"Dex is not started: it needs {', '.join(missing)} in the environment",
                      "export them and run 'dexkit sandbox down' and 'up' again"))
        return DexChoice(None, tuple(notes))
    return DexChoice(dex.path, tuple(notes))


def start(req: StackRequest, progress: Progress | None = None, *,
          clock: Callable[[], float] = time.monotonic) -> Stack:
    """Start the sandbox by the module's rules; stop all of it if any step fails."""
    say = progress or (lambda _verb, _detail: None)
    if req.dex is not None:
        refuse_a_captured_issuer_port(req.config.issuer_port)
    project = req.project.resolve()
    target = (req.sandbox or controlplane.sandbox_dir(project)).resolve()
    wired = wiring.apiserver_wiring(req.config, project,
                                    controlplane.SandboxLayout(target).files, req.mode)
    plane = controlplane.open_control_plane(target, ControlPlaneOptions(
        extra_args=wired.args, extra_files=wired.files, kubernetes_version=req.kubernetes_version,
        apiserver_timeout=req.apiserver_timeout, die_with_parent=req.die_with_parent))
    stack = Stack(plane, wired)
    try:
        _start(req, stack, project, say, clock)
    except BaseException:
        plane.stop()
        raise
    return stack


def refuse_a_captured_issuer_port(port: int) -> None:
    """Refuse an issuer port a Kubernetes node's kube-proxy captures: Dex would start, and every
    connection to it would end in "No route to host" at that node's Service instead."""
    captured = network.nodeport_captures(port)
    if captured:
        raise DexkitError(f"port {port} of the issuer is a NodePort of a Kubernetes node on "
                          f"this machine ({' and '.join(captured)} KUBE-NODEPORTS): "
                          "connections to it go to that node's Service, not to this sandbox's Dex",
                          "stop that node ('dexkit sandbox down' in its project), or give the "
                          "issuer another port")


def _start(req: StackRequest, stack: Stack, project: Path, say: Progress,
           clock: Callable[[], float]) -> None:
    plane = stack.plane
    storage, note = dex_storage_for(req.config, req.storage)
    if note:
        stack.notes.append(note)
    started = clock()
    if req.dex is not None and storage == "memory":
        _start_dex(req, stack, project, dexlocal.MEMORY, say, clock)
    plane.start_etcd(req.binaries.etcd, clock=clock)
    say("ready", f"etcd ({plane.timings['etcd']:.1f}s)")
    plane.start_apiserver(req.binaries.kube_apiserver, clock=clock)
    seconds = plane.timings["kube-apiserver"]
    say("ready", f"kube-apiserver {req.kubernetes_version} ({seconds:.1f}s)")
    if req.dex is None:
        return
    if storage == "kubernetes":
        kubeconfig = dex_kubeconfig(plane, req.config, project)
        say("applied", f"Dex's CRDs, Namespace, ServiceAccount and RBAC; its token in "
                       f"{kubeconfig.name}")
        _start_dex(req, stack, project, dexlocal.kubernetes_storage(kubeconfig, req.config),
                   say, clock)
    wait_until_ready(stack, req, clock=clock)
    stack.ready_seconds = clock() - started


def _start_dex(req: StackRequest, stack: Stack, project: Path, storage: dict[str, Any],
               say: Progress, clock: Callable[[], float]) -> None:
    assert req.dex is not None
    plane = stack.plane
    (telemetry,) = controlplane.free_ports(1)
    path = plane.layout.files / DEX_CONFIG
    text = dexlocal.local_dex_config(req.config, project, telemetry_port=telemetry,
                                     connector_cas=dict(req.connector_cas), storage=storage)
    files.atomic_write(path, text, files.PRIVATE)
    started = clock()
    for attempt in range(1, DEX_STARTS + 1):
        try:
            controlplane.start_dex(plane, req.dex, path, telemetry_addr=f"127.0.0.1:{telemetry}",
                                   env=dict(req.env), die_with_parent=req.die_with_parent)
            break
        except PeerExited:
            # On a fresh API server Dex creates its CRDs and lists them at once, before they
            # are established, and exits ("failed to list connectors: not found"); in a
            # cluster the kubelet restarts it. Do the same, a few times.
            if attempt == DEX_STARTS or storage["type"] != "kubernetes":
                raise
            plane.forget_exited("dex")
            say("restarted", f"dex exited during start {attempt} (its CRDs were not yet "
                             "established); starting it again, as a kubelet would")
            time.sleep(DEX_RESTART_DELAY)
    stack.dex_storage = str(storage["type"])
    plane.state.endpoints["dex-issuer"] = req.config.issuer
    plane.state.dex_storage = stack.dex_storage
    plane.state.save()
    say("ready", f"dex at {req.config.issuer}, {stack.dex_storage} storage "
                 f"({clock() - started:.1f}s)")


# --- Dex's ServiceAccount -------------------------------------------------------------------


def rbac_objects(config: Config, project: Path) -> list[dict[str, Any]]:
    """The rendered objects Dex's storage needs, as ``dexkit deploy`` would send them."""
    pems = read_render_inputs(project, config).connector_ca_pems
    rendered = [yaml.safe_load(m.text) for m in render_manifests(config, pems)]
    return order([prepared(o, config) for o in rendered if o.get("kind") in RBAC_KINDS])


def dex_kubeconfig(plane: ControlPlane, config: Config, project: Path) -> Path:
    """Apply Dex's rendered RBAC to the sandbox and write a kubeconfig that authenticates as
    its ServiceAccount (TokenRequest), in Dex's namespace; returns its path (0600)."""
    admin = kube.connect(kube.Target(plane.kubeconfig))
    objects = rbac_objects(config, project)
    for obj in objects:
        kube.apply_object(admin, obj)
    wait_established(admin, [kube.ObjectRef.of(o) for o in objects
                             if o.get("kind") == "CustomResourceDefinition"])
    token = kube.service_account_token(admin, config.namespace, DEX_ACCOUNT,
                                       seconds=TOKEN_SECONDS)
    ca = base64.b64encode(plane.layout.ca.read_bytes()).decode()
    user = f"system:serviceaccount:{config.namespace}:{DEX_ACCOUNT}"
    document = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": {"server": plane.apiserver_url,
                                                     "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "dex", "context": {"cluster": "sandbox", "user": user,
                                                 "namespace": config.namespace}}],
        "current-context": "dex",
    }
    text = ("# Written by dexkit sandbox: Dex's ServiceAccount token for its kubernetes "
            "storage.\n" + yaml.safe_dump(document, sort_keys=False))
    return files.atomic_write(plane.layout.files / DEX_KUBECONFIG, text, files.PRIVATE)


# --- ready means a login works --------------------------------------------------------------


def wait_until_ready(stack: Stack, req: StackRequest, *,
                     clock: Callable[[], float] = time.monotonic) -> None:
    """Block until the API server accepts a Dex token (or a probe shows it could)."""
    login = req.login or sandbox_login(req.config, req.project)
    if login is not None:
        stack.ready_as = wait_for_login(stack.plane, req.config, req.project, login,
                                        timeout=req.ready_timeout, clock=clock)
    else:
        wait_for_authenticator(stack.plane, req.config.issuer, req.config.api_server.client_id,
                               timeout=req.ready_timeout, clock=clock)


def wait_for_login(plane: ControlPlane, config: Config, project: Path,
                   login: tuple[str, str], *, timeout: float,
                   clock: Callable[[], float] = time.monotonic) -> str:
    """Log in to Dex with the password grant, then send the ID token to the API server until
    a SelfSubjectReview answers; the username it reports."""
    deadline = clock() + timeout
    username, password = login
    environ = {"DEXKIT_SANDBOX_PASSWORD": password}
    settings = project_settings(project, config, grant="password", username=username,
                                extra=["--password-env", "DEXKIT_SANDBOX_PASSWORD"],
                                environ=environ)
    # A readiness probe: nothing goes into the user's token cache, and no refresh token is
    # asked for (it would revoke the user's).
    result = do_login(settings.looking_only(), edges=Edges(environ=environ), store=False)
    token = result.tokens.id_token
    last = ""
    while True:
        try:
            identity = kube.who_am_i(kube.connect(kube.Target(plane.kubeconfig),
                                                  bearer_token=token))
            return identity.username
        except ClusterError as exc:
            last = exc.message
        if clock() >= deadline:
            raise DexkitError(
                f"the sandbox's API server did not accept Dex's token for {username} within "
                f"{timeout:.0f}s: {last}",
                f"read {plane.layout.log('kube-apiserver')} (look for 'oidc') and "
                f"{plane.layout.log('dex')}")
        time.sleep(READY_POLL)


def wait_for_authenticator(plane: ControlPlane, issuer: str, audience: str, *, timeout: float,
                           clock: Callable[[], float] = time.monotonic) -> None:
    """Without a user to log in as: send a probe token until the API server's log no longer
    answers it with "authenticator not initialized" (discovery has happened)."""
    deadline = clock() + timeout
    log = plane.layout.log("kube-apiserver")
    probe = probe_token(issuer, audience)
    while True:
        mark = log.stat().st_size
        # A 401 is the expected answer; the log says why.
        with contextlib.suppress(ClusterError):
            kube.who_am_i(kube.connect(kube.Target(plane.kubeconfig), bearer_token=probe))
        answer = _read_from(log, mark, wait=2.0, clock=clock)
        if answer and NOT_INITIALIZED not in answer:
            return
        if clock() >= deadline:
            raise OIDCError(
                f"the sandbox's API server has not fetched {issuer}'s discovery document: it "
                "still answers tokens with 'authenticator not initialized'",
                f"is Dex serving the issuer? read {plane.layout.log('dex')}")
        time.sleep(READY_POLL)


def _read_from(log: Path, mark: int, *, wait: float, clock: Callable[[], float]) -> str:
    """What the log gained after ``mark`` about an authentication, waiting up to ``wait``."""
    until = clock() + wait
    while True:
        with log.open("rb") as handle:
            handle.seek(mark)
            text = handle.read().decode(errors="replace")
        lines = [line for line in text.splitlines() if "Unable to authenticate" in line]
        if lines or clock() >= until:
            return "\n".join(lines)
        time.sleep(0.1)


def describe(stack: Stack) -> dict[str, str]:
    """The fields ``sandbox up`` prints."""
    plane = stack.plane
    out = {"API server": plane.apiserver_url, "etcd": plane.etcd_url,
           "kubeconfig": str(plane.kubeconfig), "logs": str(plane.layout.logs)}
    if stack.dex_storage:
        out["Dex"] = f"{plane.state.endpoints.get('dex-issuer', '')} ({stack.dex_storage} storage)"
    return out
