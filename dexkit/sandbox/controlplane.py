"""A real control plane as local processes: etcd and kube-apiserver on 127.0.0.1 (and Dex).

Rules:
- Everything lives under one sandbox directory (0700): ``pki/`` (a throwaway CA, the API
  server's serving certificate for 127.0.0.1/localhost, an admin client certificate in group
  ``system:masters``, the service-account key pair), ``etcd-data/``, ``files/`` (files the caller
  injects, e.g. an AuthenticationConfiguration), ``logs/<peer>.log``, ``admin.kubeconfig`` (0600)
  and ``state.json``.
- Each ``up`` starts fresh: new keys, a new etcd data directory, free ports picked anew.
- The state file is rewritten after every peer that starts, so a later ``down`` from another
  process stops whatever was started, even when ``up`` failed half-way or a peer crashed.
- The caller adds API-server flags with ``extra_args``; the literal ``{files}`` in an argument is
  replaced by the path of ``files/``, where ``extra_files`` were written before the start.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import random
import shutil
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dexkit import files, pki
from dexkit.errors import DexkitError
from dexkit.sandbox.process import (
    ManagedProcess,
    is_running,
    start_process,
    stop_record,
)

# The layout and the state file live in a module of their own, light enough for every project
# command that only asks whether the sandbox runs (dexkit.sandbox.target); re-exported here.
from dexkit.sandbox.state import STATE_FILE as STATE_FILE
from dexkit.sandbox.state import SandboxLayout as SandboxLayout
from dexkit.sandbox.state import SandboxState as SandboxState
from dexkit.sandbox.state import sandbox_dir as sandbox_dir

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

ADMIN_USER = "dexkit-admin"
ADMIN_GROUP = "system:masters"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
CERT_DAYS = 30
# Stop order: the reverse of the start order, Dex first and etcd last.
PEER_ORDER = ("etcd", "kube-apiserver", "dex")


# --- certificates ---------------------------------------------------------------------------


def issue_client_cert(*, ca_cert: x509.Certificate, ca_key: pki.PrivateKey, key: pki.PrivateKey,
                      user: str, groups: Sequence[str], days: int,
                      now: dt.datetime) -> x509.Certificate:
    """A TLS client certificate as Kubernetes reads it: CN is the user, each O a group."""
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        + [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    )
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - pki.CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False,
            key_encipherment=isinstance(key, rsa.RSAPrivateKey), data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False,
            decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _key_pem(key: pki.PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_pki(layout: SandboxLayout, now: dt.datetime) -> None:
    """A fresh CA, serving and admin certificates, and the service-account key pair."""
    files.ensure_dir(layout.pki)
    ca_key = pki.generate_key("ecdsa-p256")
    ca = pki.create_ca(ca_key, common_name="dexkit sandbox CA", days=CERT_DAYS, now=now)
    serving_key = pki.generate_key("ecdsa-p256")
    serving = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=serving_key,
                                     hosts=["localhost", "kubernetes", "kubernetes.default"],
                                     ips=["127.0.0.1", "10.0.0.1"], days=CERT_DAYS, now=now)
    admin_key = pki.generate_key("ecdsa-p256")
    admin = issue_client_cert(ca_cert=ca, ca_key=ca_key, key=admin_key, user=ADMIN_USER,
                              groups=[ADMIN_GROUP], days=CERT_DAYS, now=now)
    # Service-account tokens are signed RS256 by default; keep the key RSA.
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    writes: list[tuple[Path, bytes, int]] = [
        (layout.ca, _cert_pem(ca), files.PUBLIC),
        (layout.ca_key, _key_pem(ca_key), files.PRIVATE),
        (layout.serving_cert, _cert_pem(serving), files.PUBLIC),
        (layout.serving_key, _key_pem(serving_key), files.PRIVATE),
        (layout.admin_cert, _cert_pem(admin), files.PUBLIC),
        (layout.admin_key, _key_pem(admin_key), files.PRIVATE),
        (layout.sa_key, _key_pem(sa_key), files.PRIVATE),
        (layout.sa_pub, sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
         files.PUBLIC),
    ]
    for path, data, mode in writes:
        files.atomic_write(path, data, mode)


# --- ports and HTTP -------------------------------------------------------------------------


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (all held open until all are chosen)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


NODE_PORTS = range(30000, 32768)  # the API server's default --service-node-port-range


def free_node_port(host: str = "127.0.0.1") -> int:
    """A free port in the NodePort range, so an issuer's port can be its Service's NodePort."""
    for port in random.sample(NODE_PORTS, 500):
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise DexkitError("no free port in 30000-32767", "stop what listens there, or try again")


def http_get(url: str, *, context: ssl.SSLContext | None = None,
             timeout: float = 3.0) -> tuple[int, str]:
    """Status and body of a GET; HTTP errors are answers, not exceptions."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, headers={"Accept": "*/*"})  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return int(response.status), response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise reason if isinstance(reason, OSError) else OSError(str(reason)) from exc


def tls_context(ca_file: Path | None, client_cert: Path | None = None,
                client_key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if client_cert is not None:
        context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return context


def url_ready(url: str, *, context: ssl.SSLContext | None = None,
              body_contains: str = "") -> Callable[[], bool]:
    def check() -> bool:
        status, body = http_get(url, context=context)
        return status == 200 and body_contains in body
    return check


@dataclass(frozen=True)
class PeerStatus:
    name: str
    pid: int
    running: bool
    endpoint: str
    log: str


def sandbox_status(directory: Path) -> tuple[SandboxState | None, list[PeerStatus]]:
    state = SandboxState.load(directory)
    if state is None:
        return None, []
    return state, [PeerStatus(name=p.name, pid=p.pid, running=is_running(p),
                              endpoint=state.endpoints.get(p.name, ""), log=p.log)
                   for p in state.processes]


def stop_sandbox(directory: Path, timeout: float = 10.0) -> list[str]:
    """Stop every recorded peer (newest first) and drop the state file; names of those stopped."""
    state = SandboxState.load(directory)
    if state is None:
        return []
    stopped = [record.name for record in reversed(state.processes)
               if stop_record(record, timeout=timeout)]
    SandboxLayout(directory).state.unlink(missing_ok=True)
    return stopped


# --- the control plane ----------------------------------------------------------------------


@dataclass(frozen=True)
class ControlPlaneBinaries:
    etcd: Path
    kube_apiserver: Path


@dataclass(frozen=True)
class ControlPlaneOptions:
    extra_args: tuple[str, ...] = ()
    extra_files: Mapping[str, bytes | str] = field(default_factory=dict)
    etcd_timeout: float = 30.0
    apiserver_timeout: float = 120.0
    kubernetes_version: str = ""
    # True: the peers get SIGTERM if this process dies (tests, in-process use); False: they
    # outlive it and are stopped with `dexkit sandbox down` (the CLI's `up`).
    die_with_parent: bool = True


class ControlPlane:
    """A running sandbox; ``stop`` (or leaving the ``with`` block) stops all of it."""

    def __init__(self, layout: SandboxLayout, state: SandboxState,
                 options: ControlPlaneOptions | None = None) -> None:
        self.layout = layout
        self.state = state
        self.options = options or ControlPlaneOptions()
        self.processes: list[ManagedProcess] = []
        self.timings: dict[str, float] = {}

    # endpoints --------------------------------------------------------------------------------
    @property
    def apiserver_url(self) -> str:
        return self.state.endpoints["kube-apiserver"]

    @property
    def etcd_url(self) -> str:
        return self.state.endpoints["etcd"]

    @property
    def kubeconfig(self) -> Path:
        return self.layout.kubeconfig

    def admin_context(self) -> ssl.SSLContext:
        return tls_context(self.layout.ca, self.layout.admin_cert, self.layout.admin_key)

    # processes --------------------------------------------------------------------------------
    def attach(self, process: ManagedProcess, endpoint: str = "") -> None:
        """Record a started peer so that ``stop`` and a later ``down`` stop it too."""
        self.processes.append(process)
        self.state.processes.append(process.record)
        if endpoint:
            self.state.endpoints[process.name] = endpoint
        self.state.save()

    def forget_exited(self, name: str) -> None:
        """Drop the records of peer ``name``'s processes that have exited (a failed start that
        is tried again), so that status and ``down`` see only what runs."""
        gone = [p for p in self.processes if p.name == name and not p.alive()]
        self.processes = [p for p in self.processes if p not in gone]
        records = {p.record for p in gone}
        self.state.processes = [r for r in self.state.processes if r not in records]
        self.state.save()

    def recorder(self, endpoint: str) -> Callable[[ManagedProcess], None]:
        """An ``on_started`` callback: record the peer the moment it exists."""
        return lambda process: self.attach(process, endpoint)

    def start_etcd(self, binary: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        """etcd on two free loopback ports; returns once /health says true."""
        client, peer = free_ports(2)
        url = f"http://127.0.0.1:{client}"
        started = clock()
        start_process(
            "etcd", etcd_argv(binary, self.layout, client, peer), self.layout.log("etcd"),
            url_ready(f"{url}/health", body_contains='"health":"true"'),
            timeout=self.options.etcd_timeout, cwd=self.layout.dir,
            die_with_parent=self.options.die_with_parent, on_started=self.recorder(url),
            clock=clock)
        self.timings["etcd"] = clock() - started

    def start_apiserver(self, binary: Path, *,
                        clock: Callable[[], float] = time.monotonic) -> None:
        """kube-apiserver on a free loopback port with the options' extra arguments; returns
        once /readyz answers ok (admin certificate), with the admin kubeconfig written."""
        (port,) = free_ports(1)
        url = f"https://127.0.0.1:{port}"
        started = clock()
        start_process(
            "kube-apiserver",
            apiserver_argv(binary, self.layout, self.etcd_url, port, self.options.extra_args),
            self.layout.log("kube-apiserver"),
            url_ready(f"{url}/readyz", context=self.admin_context(), body_contains="ok"),
            timeout=self.options.apiserver_timeout, cwd=self.layout.dir,
            die_with_parent=self.options.die_with_parent, on_started=self.recorder(url),
            clock=clock)
        self.timings["kube-apiserver"] = clock() - started
        write_admin_kubeconfig(self.layout, url)

    def stop(self, timeout: float = 10.0) -> None:
        errors: list[str] = []
        for process in reversed(self.processes):
            try:
                process.stop(timeout)
            except Exception as exc:
                errors.append(f"{process.name}: {exc}")
        self.processes.clear()
        self.layout.state.unlink(missing_ok=True)
        if errors:
            raise DexkitError("some peers did not stop cleanly: " + "; ".join(errors),
                              f"look for leftover processes and at {self.layout.logs}")

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def prepare_dir(directory: Path) -> SandboxLayout:
    """Make ``directory`` ready for a fresh sandbox; refuse one that is still running."""
    layout = SandboxLayout(directory)
    _, peers = sandbox_status(directory)
    running = [p.name for p in peers if p.running]
    if running:
        raise DexkitError(f"a sandbox is already running in {directory} ({', '.join(running)})",
                          f"stop it first: dexkit sandbox down --dir {directory}")
    layout.state.unlink(missing_ok=True)
    files.ensure_dir(directory)
    shutil.rmtree(layout.etcd_data, ignore_errors=True)
    shutil.rmtree(layout.files, ignore_errors=True)
    files.ensure_dir(layout.logs)
    for peer in PEER_ORDER:
        layout.log(peer).unlink(missing_ok=True)
    return layout


def open_control_plane(directory: Path, options: ControlPlaneOptions | None = None) -> ControlPlane:
    """A fresh sandbox under ``directory`` (keys, injected files, an empty state), no process yet.

    The peers are then started one by one with :meth:`ControlPlane.start_etcd` and
    :meth:`ControlPlane.start_apiserver`, so that a caller can start Dex before the API server
    (whose OIDC authenticator looks for the issuer once at start, then only every 10 s).
    """
    opts = options or ControlPlaneOptions()
    layout = prepare_dir(directory.resolve())
    now = dt.datetime.now(dt.UTC)
    write_pki(layout, now)
    _write_extra_files(layout, opts.extra_files)
    state = SandboxState(dir=layout.dir, kubernetes_version=opts.kubernetes_version,
                         created_at=now.isoformat(timespec="seconds"),
                         kubeconfig=str(layout.kubeconfig))
    state.save()
    return ControlPlane(layout, state, opts)


def start_control_plane(
    directory: Path,
    binaries: ControlPlaneBinaries,
    options: ControlPlaneOptions | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> ControlPlane:
    """Start etcd and kube-apiserver under ``directory``; return once /readyz answers ok."""
    plane = open_control_plane(directory, options)
    try:
        plane.start_etcd(binaries.etcd, clock=clock)
        plane.start_apiserver(binaries.kube_apiserver, clock=clock)
    except BaseException:
        with contextlib.suppress(DexkitError):
            plane.stop()
        raise
    return plane


def _write_extra_files(layout: SandboxLayout, extra: Mapping[str, bytes | str]) -> None:
    if not extra:
        return
    files.ensure_dir(layout.files)
    root = layout.files.resolve()
    for name, content in extra.items():
        target = (layout.files / name).resolve()
        if root not in target.parents:
            raise DexkitError(f"extra file '{name}' would be written outside {layout.files}",
                              "give a relative path without '..'")
        files.atomic_write(target, content, files.PRIVATE)


def etcd_argv(etcd: Path, layout: SandboxLayout, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(etcd),
        "--name=dexkit-sandbox",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=dexkit-sandbox={peer}",
        # A throwaway store: skip fsync (etcd 3.5+), the biggest cost on a slow disk.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_argv(binary: Path, layout: SandboxLayout, etcd_url: str, secure_port: int,
                   extra_args: Sequence[str] = ()) -> list[str]:
    issuer = f"https://127.0.0.1:{secure_port}"
    argv = [
        str(binary),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # No in-cluster client needs the `kubernetes` Service's endpoints here, and from 1.37
        # the API server refuses to reconcile them to a loopback address (it exits).
        "--endpoint-reconciler-type=none",
        f"--secure-port={secure_port}",
        f"--cert-dir={layout.pki}",
        f"--tls-cert-file={layout.serving_cert}",
        f"--tls-private-key-file={layout.serving_key}",
        f"--client-ca-file={layout.ca}",
        f"--service-account-issuer={issuer}",
        f"--service-account-key-file={layout.sa_pub}",
        f"--service-account-signing-key-file={layout.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--disable-admission-plugins=ServiceAccount",
        "--profiling=false",
    ]
    files_dir = str(layout.files)
    argv += [arg.replace("{files}", files_dir) for arg in extra_args]
    return argv


def write_admin_kubeconfig(layout: SandboxLayout, server: str) -> Path:
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dexkit-sandbox", "cluster": {
            "server": server, "certificate-authority-data": b64(layout.ca)}}],
        "users": [{"name": ADMIN_USER, "user": {
            "client-certificate-data": b64(layout.admin_cert),
            "client-key-data": b64(layout.admin_key)}}],
        "contexts": [{"name": "dexkit-sandbox", "context": {
            "cluster": "dexkit-sandbox", "user": ADMIN_USER}}],
        "current-context": "dexkit-sandbox",
    }
    text = "# Written by dexkit sandbox: cluster-admin (system:masters) for this sandbox only.\n"
    text += yaml.safe_dump(config, sort_keys=False)
    return files.atomic_write(layout.kubeconfig, text, files.PRIVATE)


# --- Dex ------------------------------------------------------------------------------------


def dex_argv(dex: Path, config: Path) -> list[str]:
    return [str(dex), "serve", str(config)]


def start_dex(
    plane: ControlPlane | None,
    dex: Path,
    config: Path,
    *,
    telemetry_addr: str,
    log_path: Path | None = None,
    ca_file: Path | None = None,
    scheme: str = "http",
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    die_with_parent: bool = True,
) -> ManagedProcess:
    """Start ``dex serve CONFIG``; return once ``<scheme>://<telemetry_addr>/healthz/ready`` is 200.

    Dex's telemetry listener (``telemetry.http`` in its config) serves plain HTTP; pass
    ``scheme="https"`` and ``ca_file`` for a TLS listener. With a ``plane``, Dex is recorded in
    its state so that ``stop`` and ``dexkit sandbox down`` stop it too.
    """
    if plane is not None and log_path is None:
        log_path = plane.layout.log("dex")
    if log_path is None:
        raise DexkitError("start_dex needs a log path when no sandbox is given",
                          "pass log_path=")
    context = tls_context(ca_file) if scheme == "https" else None
    url = f"{scheme}://{telemetry_addr}/healthz/ready"
    endpoint = url.removesuffix("/healthz/ready")
    return start_process("dex", dex_argv(dex, config), log_path,
                         url_ready(url, context=context), timeout=timeout, env=env,
                         cwd=config.parent, die_with_parent=die_with_parent,
                         on_started=plane.recorder(endpoint) if plane is not None else None)
