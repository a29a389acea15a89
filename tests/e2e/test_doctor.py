"""`dexkit doctor` against real peers: each test breaks exactly one link and asserts that doctor
fails THAT check, names it, and gives the hint; the healthy setups report no failure and no
warning.

The peers, and what each proves:

- Cluster checks: a real kube-apiserver (the session one, or the project's sandbox) holding
  Dex's rendered objects (server-side applied), the TLS Secret made from the project's files,
  and the Deployment's status written as its controller would write it (the sandbox runs no
  kube-controller-manager and no kubelet, so nothing else would).
- API-server checks: a kube-apiserver started as the project's sandbox with dexkit's rendered
  flags or AuthenticationConfiguration (:mod:`dexkit.sandbox.wiring`), then with one of them
  changed. Both modes at once cannot be started, so that case is kubeadm's static Pod, patched
  by dexkit and then given both, created in kube-system as a mirror Pod would be.
- TLS checks: a TLS server started here with the project's certificate, or with a foreign,
  self-signed or wrong-host one. It is NOT Dex and serves no discovery document, so
  ``network.discovery`` and ``network.jwks`` fail against it: those two (NOT_DEX) are the only
  failures allowed besides the injected one.
- Discovery and JWKS against a real OpenID provider: the session kube-apiserver's
  service-account issuer (discovery document and RS256 JWKS, as the API server itself uses).
- Faults only a running Dex can show (login, claims, Dex's own issuer, Dex stopped) are
  ``needs_dex``: they run a real Dex process with the rendered config.

Set DEXKIT_DOCTOR_FAULT_LOG to a file to collect each injected fault and what doctor said.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit import doctor, pki
from dexkit.config import load_config
from dexkit.doctor.core import DoctorRequest, Edges
from dexkit.kube import Target
from dexkit.project import InitRequest, init_project, password_file
from dexkit.render.apiserver import patch_static_pod
from dexkit.render.dex import render_dex_config, render_manifests
from dexkit.sandbox import controlplane, dexlocal, wiring
from tests.e2e.conftest import KUBERNETES_VERSION
from tests.unit.render.helpers import FIXTURES

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "dexkit"]
MINOR = ".".join(KUBERNETES_VERSION.lstrip("v").split(".")[:2])
# Fail against the stand-in TLS server only because it is not an OpenID provider.
NOT_DEX = frozenset({"network.discovery", "network.jwks"})
EXAMPLE_SECRET = "ZXhhbXBsZS1hcHAtc2VjcmV0"
FAULT_LOG = os.environ.get("DEXKIT_DOCTOR_FAULT_LOG")


# --- a TLS server that is not Dex ----------------------------------------------------------------


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def tls_server(cert: Path, key: Path, port: int) -> Iterator[None]:
    """HTTPS on 127.0.0.1:port presenting ``cert``; every request gets 404."""
    server = ThreadingHTTPServer(("127.0.0.1", port), _NotFound)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    # The handshake happens in each request's thread, so a bare TCP probe blocks nothing.
    server.socket = context.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


# --- projects and clusters -----------------------------------------------------------------------


def _merge(into: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


_TAKEN: set[int] = set()


def node_port() -> int:
    """A free NodePort that no other project of this run uses: they share one API server,
    which allocates each NodePort once."""
    while True:
        port = controlplane.free_node_port()
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


def new_project(directory: Path, *, host: str = "localhost", port: int | None = None,
                **changes: Any) -> Path:
    """'dexkit init --connector static' for https://HOST:PORT, in a namespace of its own."""
    port = port or node_port()
    init_project(InitRequest(directory=directory, issuer=f"https://{host}:{port}",
                             connector="static"))
    path = directory / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    _merge(data, {"namespace": f"doctor-{uuid.uuid4().hex[:8]}", "kubernetesVersion": MINOR,
                  **changes})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    init_project(InitRequest(directory=directory))  # validates; re-issues for new names
    return directory


def kubectl_call(binary: Path, kubeconfig: Path, *args: str, stdin: str = "",
                 check: bool = True) -> str:
    result = subprocess.run([str(binary), "--kubeconfig", str(kubeconfig), *args], input=stdin,
                            capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def tls_secret(project: Path, cert: bytes | None = None, key: bytes | None = None) -> str:
    """The TLS Secret as 'dexkit deploy' makes it (tls.crt, tls.key, ca.crt)."""
    config = load_config(project).config
    ssl_dir = project / config.tls.dir
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": config.tls_secret_name, "namespace": config.namespace},
        "data": {"tls.crt": _b64(cert or (ssl_dir / "cert.pem").read_bytes()),
                 "tls.key": _b64(key or (ssl_dir / "key.pem").read_bytes()),
                 "ca.crt": _b64((ssl_dir / "ca.pem").read_bytes())}})


def set_available(binary: Path, kubeconfig: Path, namespace: str, available: bool) -> None:
    """Write the Deployment's status as the deployment controller would."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Available", "status": "True" if available else "False",
                 "reason": "MinimumReplicasAvailable" if available
                 else "MinimumReplicasUnavailable",
                 "message": "Deployment has minimum availability." if available
                 else "Deployment does not have minimum availability.",
                 "lastUpdateTime": now, "lastTransitionTime": now}
    count = 1 if available else 0
    status = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
              "readyReplicas": count, "availableReplicas": count,
              "unavailableReplicas": 1 - count, "conditions": [condition]}
    kubectl_call(binary, kubeconfig, "patch", "deployment", "dex", "-n", namespace,
            "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}))


def deploy(binary: Path, kubeconfig: Path, project: Path) -> None:
    """Dex's rendered objects, its TLS Secret, and an available Deployment."""
    config = load_config(project).config
    stream = "".join(f"---\n{m.text}" for m in render_manifests(config))
    kubectl_call(binary, kubeconfig, "apply", "--server-side", "--field-manager=dexkit", "-f", "-",
            stdin=stream)
    kubectl_call(binary, kubeconfig, "apply", "--server-side", "--field-manager=dexkit", "-f", "-",
            stdin=tls_secret(project))
    set_available(binary, kubeconfig, config.namespace, True)


def undeploy(binary: Path, kubeconfig: Path, project: Path) -> None:
    config = load_config(project).config
    kubectl_call(binary, kubeconfig, "delete", "namespace", config.namespace, "--wait=false",
            check=False)
    kubectl_call(binary, kubeconfig, "delete", "clusterrolebinding",
            f"dexkit:dex-crds:{config.namespace}", "--ignore-not-found", check=False)


# --- running doctor ------------------------------------------------------------------------------


@dataclass
class Report:
    data: dict[str, Any]
    code: int
    by_id: dict[str, dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {r["id"]: r for r in self.data["results"]}

    @property
    def failed(self) -> set[str]:
        return set(self.data["failed"])

    @property
    def warned(self) -> set[str]:
        return set(self.data["warnings"])

    def lines(self, statuses: tuple[str, ...] = ("fail", "warn")) -> str:
        return "\n".join(f"{r['id']} {r['status']}: {r['message']}" for r in
                         self.data["results"] if r["status"] in statuses)

    def assert_healthy(self, allowed: frozenset[str] = frozenset()) -> None:
        assert self.failed <= allowed, self.lines()
        assert not self.warned, self.lines()

    def assert_broken(self, fault: str, check_id: str, *phrases: str, hint: str,
                      also: frozenset[str] = frozenset(), status: str = "fail",
                      allowed: frozenset[str] = NOT_DEX) -> None:
        """``check_id`` names the fault (with ``phrases`` and ``hint``); nothing else fails
        but ``also`` (consequences of the same link) and ``allowed`` (the stand-in's NOT_DEX;
        nothing when a real Dex serves the issuer)."""
        result = self.by_id[check_id]
        _record(fault, check_id, result)
        assert result["status"] == status, self.lines()
        for phrase in phrases:
            assert phrase in result["message"], result["message"]
        assert hint in result["hint"], result["hint"]
        expected = {check_id} if status == "fail" else set()
        assert self.failed - allowed - also == expected, self.lines()
        if status == "warn":
            assert self.warned == {check_id}, self.lines()
        assert self.code == (1 if self.failed else 0)


def _record(fault: str, check_id: str, result: dict[str, Any]) -> None:
    if FAULT_LOG:
        with Path(FAULT_LOG).open("a") as log:
            log.write(json.dumps({"fault": fault, "expected": check_id, **result}) + "\n")


def run_doctor(project: Path, kubeconfig: Path, *args: str) -> Report:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "DEXKIT_PASSWORD")}
    env["NO_COLOR"] = "1"
    result = subprocess.run([*CLI, "doctor", "--dir", str(project), "--kubeconfig",
                             str(kubeconfig), "--output", "json", *args],
                            capture_output=True, text=True, timeout=300, check=False, env=env)
    assert result.returncode in (0, 1), result.stderr
    return Report(json.loads(result.stdout), result.returncode)


# --- the session cluster with Dex's objects, and a TLS server at the issuer ----------------------


@dataclass
class Setup:
    project: Path
    kubeconfig: Path
    kubectl: Path

    @property
    def config(self) -> Any:
        return load_config(self.project).config

    @property
    def namespace(self) -> str:
        return str(self.config.namespace)

    @property
    def ssl(self) -> Path:
        return self.project / "ssl"

    def doctor(self, *args: str) -> Report:
        return run_doctor(self.project, self.kubeconfig, *args)

    def k(self, *args: str, stdin: str = "") -> str:
        return kubectl_call(self.kubectl, self.kubeconfig, *args, stdin=stdin)


SetupFactory = Callable[..., Setup]


@pytest.fixture
def in_cluster(tmp_path: Path, control_plane: controlplane.ControlPlane,
               kubectl: Path) -> Iterator[SetupFactory]:
    """``in_cluster(serve=..., **dexkit_yaml_changes)``: a project deployed to the session
    cluster, with a TLS server presenting ``serve`` (default: ssl/cert.pem) at the issuer."""
    with contextlib.ExitStack() as stack:
        def make(serve: tuple[Path, Path] | str | None = "ours", host: str = "localhost",
                 **changes: Any) -> Setup:
            project = new_project(tmp_path / f"p{uuid.uuid4().hex[:6]}", host=host, **changes)
            setup = Setup(project, control_plane.kubeconfig, kubectl)
            deploy(kubectl, control_plane.kubeconfig, project)
            stack.callback(undeploy, kubectl, control_plane.kubeconfig, project)
            if serve is not None:
                cert, key = (setup.ssl / "cert.pem", setup.ssl / "key.pem") \
                    if serve == "ours" else serve
                stack.enter_context(tls_server(cert, key, setup.config.issuer_port))
            return setup
        yield make


def test_healthy_cluster_setup_has_no_failure_and_no_warning(in_cluster: SetupFactory) -> None:
    report = in_cluster().doctor()
    report.assert_healthy(allowed=NOT_DEX)
    for check_id in ("local.config", "local.tls-files", "local.key-match", "local.chain",
                     "local.sans", "local.expiry", "network.resolve", "network.tcp",
                     "network.tls", "cluster.reachable", "cluster.deployment",
                     "cluster.service", "cluster.tls-secret", "cluster.dex-config",
                     "cluster.dex-rbac", "security.username-prefix", "security.groups-prefix",
                     "security.client-secret", "security.insecure", "security.clock-skew"):
        assert report.by_id[check_id]["status"] == "ok", report.by_id[check_id]
    # The stand-in is not an OpenID provider: that, and only that, is what fails.
    assert "answered HTTP 404" in report.by_id["network.discovery"]["message"]
    assert report.by_id["network.jwks"]["status"] == "skip"
    assert report.by_id["apiserver.visible"]["status"] == "skip"


# --- cluster faults ------------------------------------------------------------------------------


def test_tls_secret_replaced(in_cluster: SetupFactory, tmp_path: Path) -> None:
    setup = in_cluster()
    ca, ca_key = pki.load_cert(setup.ssl / "ca.pem"), pki.load_key(setup.ssl / "ca-key.pem")
    key = pki.generate_key("ecdsa-p256")
    old = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key, hosts=["localhost"],
                                 ips=[], days=30, now=dt.datetime.now(dt.UTC))
    setup.k("apply", "--server-side", "--field-manager=someone", "--force-conflicts", "-f", "-",
            stdin=tls_secret(setup.project, pki.cert_pem(old), pki.key_pem(key)))
    report = setup.doctor()
    report.assert_broken("TLS Secret replaced in the cluster", "cluster.tls-secret",
                         f"Secret {setup.namespace}/localhost.tls holds another certificate",
                         "than ssl/cert.pem", hint="dexkit deploy")
    assert "PRIVATE KEY" not in json.dumps(report.data)


def test_dex_config_edited_in_the_cluster(in_cluster: SetupFactory) -> None:
    setup = in_cluster()
    config = yaml.safe_load(render_dex_config(setup.config))
    hash_before = config["staticPasswords"][0]["hash"]
    config["logger"]["level"] = "debug"
    config["staticPasswords"][0]["hash"] = "$2y$10$" + "A" * 53
    patch = {"data": {"config.yaml": _b64(yaml.safe_dump(config, sort_keys=False))}}
    setup.k("patch", "secret", "dex-config", "-n", setup.namespace, "--type=merge", "-p",
            json.dumps(patch))
    report = setup.doctor()
    report.assert_broken("Dex config Secret edited in the cluster", "cluster.dex-config",
                         "differs from what dexkit renders now", "-  level: info",
                         "+  level: debug", "-  hash: <hidden, as rendered>",
                         "+  hash: <hidden, changed in the cluster>", hint="dexkit deploy")
    text = json.dumps(report.data)
    assert hash_before not in text and "A" * 53 not in text


def test_dex_rbac_removed(in_cluster: SetupFactory) -> None:
    # Dex v2.45.1 only checks its CRDs (dexkit applies them): its one binding is the Role's.
    setup = in_cluster()
    setup.k("delete", "rolebinding", "dex", "-n", setup.namespace)
    report = setup.doctor()
    report.assert_broken("Dex ServiceAccount's RBAC removed", "cluster.dex-rbac",
                         f"ServiceAccount {setup.namespace}/dex may not: create "
                         f"authcodes.dex.coreos.com in {setup.namespace}", hint="Role")


def test_dex_crds_removed(in_cluster: SetupFactory) -> None:
    setup = in_cluster()
    setup.k("delete", "crd", "authcodes.dex.coreos.com")  # waits until it is gone
    try:
        report = setup.doctor()
        report.assert_broken("a Dex CRD removed", "cluster.dex-crds",
                             "missing: authcodes.dex.coreos.com", "storage is not initialized",
                             hint="dexkit deploy")
    finally:  # the CRDs are the session cluster's: put it back for the tests after this one
        deploy(setup.kubectl, setup.kubeconfig, setup.project)
        setup.k("wait", "--for=condition=Established", "crd/authcodes.dex.coreos.com",
                "--timeout=60s")


def test_deployment_not_available(in_cluster: SetupFactory) -> None:
    setup = in_cluster()
    set_available(setup.kubectl, setup.kubeconfig, setup.namespace, False)
    report = setup.doctor()
    report.assert_broken("Dex Deployment not available", "cluster.deployment",
                         f"Deployment {setup.namespace}/dex is not available: 0 of 1 replicas",
                         "Deployment does not have minimum availability.",
                         hint=f"kubectl -n {setup.namespace} describe deployment dex")


def test_service_port_wrong(in_cluster: SetupFactory) -> None:
    setup = in_cluster()
    wrong = node_port()
    patch = [{"op": "replace", "path": "/spec/ports/0/nodePort", "value": wrong}]
    setup.k("patch", "service", "dex", "-n", setup.namespace, "--type=json", "-p",
            json.dumps(patch))
    report = setup.doctor()
    report.assert_broken("Service nodePort changed", "cluster.service",
                         f"nodePort is {wrong}, dexkit renders {setup.config.issuer_port}",
                         hint="dexkit deploy")


# --- network and TLS faults ----------------------------------------------------------------------


def _write_pair(directory: Path, cert: Any, key: Any) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    pki.write_cert(directory / "cert.pem", cert)
    pki.write_key(directory / "key.pem", key)
    return directory / "cert.pem", directory / "key.pem"


def _foreign_ca_pair(directory: Path, hosts: list[str]) -> tuple[Path, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = pki.generate_key("ecdsa-p256")
    ca = pki.create_ca(ca_key, common_name="Some Ingress CA", days=30, now=now)
    key = pki.generate_key("ecdsa-p256")
    cert = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key, hosts=hosts, ips=[],
                                  days=30, now=now)
    return _write_pair(directory, cert, key)


def _self_signed_pair(directory: Path, host: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    key = pki.generate_key("ecdsa-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ingress default certificate")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(key, hashes.SHA256()))
    return _write_pair(directory, cert, key)


def test_server_presents_another_cas_certificate(in_cluster: SetupFactory,
                                                 tmp_path: Path) -> None:
    setup = in_cluster(serve=_foreign_ca_pair(tmp_path / "foreign", ["localhost"]))
    report = setup.doctor()
    report.assert_broken("Server presents a certificate from another CA", "network.tls",
                         "the certificate does not verify with ssl/ca.pem (unable to get "
                         "local issuer certificate)", "issued by 'CN=Some Ingress CA,O=dexkit'",
                         "not by dexkit's CA",
                         hint="dexkit deploy")


def test_server_presents_a_self_signed_certificate(in_cluster: SetupFactory,
                                                   tmp_path: Path) -> None:
    setup = in_cluster(serve=_self_signed_pair(tmp_path / "self", "localhost"))
    report = setup.doctor()
    report.assert_broken("Server presents a self-signed certificate", "network.tls",
                         "self-signed certificate (CN=ingress default certificate)",
                         hint="ingress")


def test_server_presents_our_cas_certificate_for_another_host(in_cluster: SetupFactory,
                                                              tmp_path: Path) -> None:
    holder = in_cluster(serve=None)
    ca = pki.load_cert(holder.ssl / "ca.pem")
    key = pki.generate_key("ecdsa-p256")
    cert = pki.issue_serving_cert(ca_cert=ca, ca_key=pki.load_key(holder.ssl / "ca-key.pem"),
                                  key=key, hosts=["dex.example.com"], ips=[], days=30,
                                  now=dt.datetime.now(dt.UTC))
    pair = _write_pair(tmp_path / "wrong-host", cert, key)
    with tls_server(*pair, holder.config.issuer_port):
        report = holder.doctor()
    report.assert_broken("Served certificate does not cover the issuer host (wrong host)",
                         "network.tls", "a certificate from dexkit's CA for dex.example.com, "
                         "which does not cover 'localhost'", hint="dexkit deploy")


def test_expired_certificate(in_cluster: SetupFactory) -> None:
    setup = in_cluster(serve=None)
    # The guide's gencert.sh: a CA and a certificate valid 10 days, made 40 days ago.
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    ca_key, key = pki.load_key(setup.ssl / "ca-key.pem"), pki.load_key(setup.ssl / "key.pem")
    ca = pki.create_ca(ca_key, common_name="dexkit CA for localhost", days=3650, now=long_ago)
    expired = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key, hosts=["localhost"],
                                     ips=[], days=10, now=long_ago)
    pki.write_cert(setup.ssl / "ca.pem", ca)
    pki.write_cert(setup.ssl / "cert.pem", expired)
    setup.k("apply", "--server-side", "--field-manager=dexkit", "-f", "-",
            stdin=tls_secret(setup.project))
    with tls_server(setup.ssl / "cert.pem", setup.ssl / "key.pem", setup.config.issuer_port):
        report = setup.doctor()
    # Dex presents the expired ssl/cert.pem: network.tls sees the same broken link.
    report.assert_broken("Expired serving certificate", "local.expiry",
                         "ssl/cert.pem expired on", hint="dexkit certs rotate",
                         also=frozenset({"network.tls"}))
    assert "presents ssl/cert.pem itself, which expired" in \
        report.by_id["network.tls"]["message"]


def test_certificate_for_another_host_in_the_project(in_cluster: SetupFactory) -> None:
    setup = in_cluster(serve=None)
    ca, ca_key = pki.load_cert(setup.ssl / "ca.pem"), pki.load_key(setup.ssl / "ca-key.pem")
    key = pki.load_key(setup.ssl / "key.pem")
    wrong = pki.issue_serving_cert(ca_cert=ca, ca_key=ca_key, key=key,
                                   hosts=["dex.example.com"], ips=[], days=90,
                                   now=dt.datetime.now(dt.UTC))
    pki.write_cert(setup.ssl / "cert.pem", wrong)
    setup.k("apply", "--server-side", "--field-manager=dexkit", "-f", "-",
            stdin=tls_secret(setup.project))
    with tls_server(setup.ssl / "cert.pem", setup.ssl / "key.pem", setup.config.issuer_port):
        report = setup.doctor()
    report.assert_broken("Wrong-host certificate in ssl/", "local.sans",
                         "does not cover the issuer host 'localhost' (SANs: dex.example.com)",
                         hint="tls.hosts", also=frozenset({"network.tls"}))


def test_unresolvable_issuer_host(in_cluster: SetupFactory) -> None:
    setup = in_cluster(serve=None, host="dex.invalid")
    report = setup.doctor()
    report.assert_broken("Unresolvable issuer host", "network.resolve",
                         "the issuer host 'dex.invalid' does not resolve", hint="/etc/hosts")
    assert report.by_id["network.tcp"]["message"] == "needs network.resolve, which failed"


def test_nothing_listens_at_the_issuer(in_cluster: SetupFactory) -> None:
    setup = in_cluster(serve=None)
    report = setup.doctor()
    report.assert_broken("Nothing listens at the issuer's port (Dex not serving)",
                         "network.tcp", f"localhost:{setup.config.issuer_port}",
                         "connection refused", hint="Dex is not running")


# --- kubeconfig users and security warnings ------------------------------------------------------


def _kubeconfig_with_user(setup: Setup, path: Path, user: dict[str, Any]) -> Path:
    """The cluster's admin kubeconfig plus a login user, as 'dexkit kubeconfig' adds one."""
    data = yaml.safe_load(setup.kubeconfig.read_text())
    data["users"].append({"name": "dex-user", "user": user})
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def _dexkit_user(setup: Setup, *extra: str, issuer: str | None = None,
                 scopes: tuple[str, ...] = ("openid", "email", "groups")) -> dict[str, Any]:
    from dexkit.kubeconfig import exec_user

    user = exec_user(["--issuer", issuer or setup.config.issuer, "--client-id", "kubernetes",
                      "--ca-file", str(setup.ssl / "ca.pem"),
                      *[f for s in scopes for f in ("--scope", s)]])
    user["exec"]["args"] += list(extra)
    return user


def test_kubeconfig_user_with_issuer_trailing_slash(in_cluster: SetupFactory,
                                                    tmp_path: Path) -> None:
    setup = in_cluster()
    kubeconfig = _kubeconfig_with_user(setup, tmp_path / "kc", _dexkit_user(
        setup, issuer=setup.config.issuer + "/"))
    report = run_doctor(setup.project, kubeconfig)
    report.assert_broken("kubeconfig user's issuer has a trailing slash",
                         "local.kubeconfig-user", "they differ only by a trailing slash",
                         hint="dexkit kubeconfig")


def test_kubeconfig_user_without_groups_scope(in_cluster: SetupFactory, tmp_path: Path) -> None:
    setup = in_cluster()
    kubeconfig = _kubeconfig_with_user(setup, tmp_path / "kc",
                                       _dexkit_user(setup, scopes=("openid", "email")))
    report = run_doctor(setup.project, kubeconfig)
    report.assert_broken("groups scope not requested by the kubeconfig user",
                         "local.kubeconfig-user", "does not request the 'groups' scope",
                         hint="dexkit kubeconfig")


def test_kubeconfig_user_with_an_unregistered_redirect_uri(in_cluster: SetupFactory,
                                                          tmp_path: Path) -> None:
    setup = in_cluster()
    kubeconfig = _kubeconfig_with_user(setup, tmp_path / "kc",
                                       _dexkit_user(setup, "--listen-port", "9000"))
    report = run_doctor(setup.project, kubeconfig)
    report.assert_broken("redirect URI not registered (login on port 9000)",
                         "local.kubeconfig-user", "http://127.0.0.1:9000/callback",
                         "does not register in redirectURIs", hint="dexkit kubeconfig")


def test_insecure_login_user_warns(in_cluster: SetupFactory, tmp_path: Path) -> None:
    setup = in_cluster()
    kubeconfig = _kubeconfig_with_user(setup, tmp_path / "kc",
                                       _dexkit_user(setup, "--insecure"))
    report = run_doctor(setup.project, kubeconfig)
    report.assert_broken("--insecure on the kubeconfig user", "security.insecure",
                         "kubeconfig user 'dex-user' (--insecure)", hint="dexkit's CA",
                         status="warn")


def test_example_client_secret_warns(in_cluster: SetupFactory) -> None:
    setup = in_cluster(clients=[{"id": "kubernetes", "name": "Kubernetes", "public": False,
                                 "secretName": "kubernetes-client"}])
    setup.k("create", "secret", "generic", "kubernetes-client", "-n", setup.namespace,
            f"--from-literal=client-secret={EXAMPLE_SECRET}")
    report = setup.doctor()
    report.assert_broken("client secret left at Dex's example value", "security.client-secret",
                         f"Secret {setup.namespace}/kubernetes-client (client 'kubernetes')",
                         "example value", hint="openssl rand", status="warn")


def test_unprefixed_username_and_groups_warn(in_cluster: SetupFactory) -> None:
    setup = in_cluster(apiServer={"usernameClaim": "sub", "usernamePrefix": "-",
                                  "groupsPrefix": ""})
    report = setup.doctor()
    assert report.warned == {"security.username-prefix", "security.groups-prefix"}, \
        report.lines()
    _record("username claim 'sub' without prefix", "security.username-prefix",
            report.by_id["security.username-prefix"])
    _record("groups without prefix", "security.groups-prefix",
            report.by_id["security.groups-prefix"])
    assert "system:masters" in report.by_id["security.groups-prefix"]["message"]
    assert report.failed <= NOT_DEX, report.lines()


def test_clock_skew_from_the_date_header(in_cluster: SetupFactory) -> None:
    setup = in_cluster()
    ahead = dt.timedelta(minutes=5)
    results = doctor.run(DoctorRequest(setup.project, Target(setup.kubeconfig)),
                         Edges(clock=lambda: dt.datetime.now(dt.UTC) + ahead, environ={}),
                         only=("security.clock-skew",))
    result = {r.id: r for r in results}["security.clock-skew"]
    _record("local clock 5 minutes ahead of the API server", "security.clock-skew",
            {"id": result.id, "status": result.status, "message": result.message,
             "hint": result.hint})
    assert result.status == "warn" and "ahead of the API server's" in result.message
    assert "NTP" in result.hint
    seconds = int(result.message.split(" s ")[0].rsplit(" ", 1)[1])
    assert 298 <= seconds <= 302


# --- API-server checks ---------------------------------------------------------------------------


@dataclass
class Sandbox(Setup):
    plane: controlplane.ControlPlane | None = None


@pytest.fixture
def sandboxed(tmp_path: Path, control_plane_binaries: controlplane.ControlPlaneBinaries,
              kubectl: Path) -> Iterator[Callable[..., Sandbox]]:
    """``sandboxed(mode, args=..., files=..., **changes)``: a project whose sandbox API server
    was started with dexkit's rendered OIDC configuration (``args``/``files`` may change it),
    Dex's objects deployed to it, and the stand-in TLS server at the issuer."""
    with contextlib.ExitStack() as stack:
        def make(mode: wiring.Mode = "flags",
                 args: Callable[[list[str]], list[str]] | None = None,
                 files: Callable[[dict[str, str]], dict[str, str]] | None = None,
                 serve: bool = True,
                 first: Callable[[Path, controlplane.ControlPlane], None] | None = None,
                 **changes: Any) -> Sandbox:
            project = new_project(tmp_path / f"p{uuid.uuid4().hex[:6]}",
                                  apiServer={"mode": mode}, **changes)
            config = load_config(project).config
            directory = controlplane.sandbox_dir(project.resolve())
            wired = wiring.apiserver_wiring(config, project,
                                            controlplane.SandboxLayout(directory).files)
            extra_args = args(list(wired.args)) if args else list(wired.args)
            extra_files = files(dict(wired.files)) if files else wired.files
            plane = controlplane.open_control_plane(directory, controlplane.ControlPlaneOptions(
                extra_args=tuple(extra_args), extra_files=extra_files,
                kubernetes_version=KUBERNETES_VERSION))
            stack.callback(plane.stop)
            if first is not None:  # e.g. Dex, before the API server looks for it
                first(project, plane)
            plane.start_etcd(control_plane_binaries.etcd)
            plane.start_apiserver(control_plane_binaries.kube_apiserver)
            deploy(kubectl, plane.kubeconfig, project)
            if serve:
                stack.enter_context(tls_server(project / "ssl/cert.pem", project / "ssl/key.pem",
                                               config.issuer_port))
            return Sandbox(project, plane.kubeconfig, kubectl, plane)
        yield make


@pytest.mark.parametrize("mode", ["flags", "authentication-config"])
def test_healthy_sandbox_api_server_in_both_modes(sandboxed: Callable[..., Sandbox],
                                                  mode: wiring.Mode) -> None:
    setup = sandboxed(mode)
    report = setup.doctor()
    report.assert_healthy(allowed=NOT_DEX)
    for check_id in ("apiserver.visible", "apiserver.mode", "apiserver.oidc", "apiserver.ca"):
        assert report.by_id[check_id]["status"] == "ok", report.by_id[check_id]
    assert "the project's sandbox kube-apiserver" in report.by_id["apiserver.visible"]["message"]
    assert "holds dexkit's CA" in report.by_id["apiserver.ca"]["message"]


def test_api_server_started_with_another_ca(sandboxed: Callable[..., Sandbox]) -> None:
    other_ca = pki.cert_pem(pki.create_ca(pki.generate_key("ecdsa-p256"),
                                          common_name="Another CA", days=30,
                                          now=dt.datetime.now(dt.UTC))).decode()

    def swap(files: dict[str, str]) -> dict[str, str]:
        return {**files, wiring.CA_FILE: other_ca}
    setup = sandboxed(files=swap)
    report = setup.doctor()
    report.assert_broken("API server started with another CA", "apiserver.ca",
                         "openid-ca.pem holds CN=Another CA,O=dexkit, not dexkit's CA",
                         hint="copy ssl/ca.pem to")


def _replace_flag(name: str, value: str) -> Callable[[list[str]], list[str]]:
    return lambda args: [f"--{name}={value}" if a.startswith(f"--{name}=") else a for a in args]


def test_api_server_issuer_with_a_trailing_slash(sandboxed: Callable[..., Sandbox]) -> None:
    port = node_port()
    issuer = f"https://localhost:{port}"
    setup = sandboxed(args=_replace_flag("oidc-issuer-url", issuer + "/"), port=port)
    report = setup.doctor()
    report.assert_broken("API server's issuer URL has a trailing slash", "apiserver.oidc",
                         f"--oidc-issuer-url is '{issuer}/', dexkit.yaml says '{issuer}'",
                         "they differ only by a trailing slash", hint="dexkit apiserver patch")


def test_api_server_client_id_mismatch(sandboxed: Callable[..., Sandbox]) -> None:
    setup = sandboxed(args=_replace_flag("oidc-client-id", "example-app"))
    report = setup.doctor()
    report.assert_broken("API server's client ID differs from Dex's client", "apiserver.oidc",
                         "--oidc-client-id is 'example-app', dexkit.yaml says 'kubernetes'",
                         hint="dexkit apiserver patch")


@pytest.fixture
def apiserver_pod(control_plane: controlplane.ControlPlane,
                  kubectl: Path) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Create a kube-apiserver Pod in kube-system (as kubeadm's mirror Pod), deleted after."""
    names: list[str] = []

    def create(pod: dict[str, Any]) -> None:
        names.append(pod["metadata"]["name"])
        kubectl_call(kubectl, control_plane.kubeconfig, "create", "-f", "-",
                     stdin=yaml.safe_dump(pod))
    yield create
    for name in names:
        kubectl_call(kubectl, control_plane.kubeconfig, "delete", "pod", name, "-n",
                             "kube-system", "--grace-period=0", "--force", "--ignore-not-found",
                             check=False)


def _static_pod(project: Path, edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    config = load_config(project).config
    pod = yaml.safe_load(patch_static_pod(
        (FIXTURES / "kube-apiserver-1.34.yaml").read_text(), config).text)
    pod["metadata"]["name"] = f"kube-apiserver-{uuid.uuid4().hex[:6]}"
    edit(pod)
    return pod


def test_both_modes_at_once_in_the_static_pod(in_cluster: SetupFactory,
                                              apiserver_pod: Callable[[dict[str, Any]], None],
                                              ) -> None:
    setup = in_cluster()

    def both(pod: dict[str, Any]) -> None:
        pod["spec"]["containers"][0]["command"].append(
            "--authentication-config=/etc/kubernetes/dexkit/authentication-config.yaml")
    pod = _static_pod(setup.project, both)
    apiserver_pod(pod)
    report = setup.doctor()
    report.assert_broken("both API-server modes set at once (static Pod)", "apiserver.mode",
                         f"Pod kube-system/{pod['metadata']['name']} has both "
                         "--authentication-config and --oidc-", "refuses to start with both",
                         hint="dexkit apiserver patch")


def test_static_pod_without_the_ca_mount(in_cluster: SetupFactory,
                                         apiserver_pod: Callable[[dict[str, Any]], None],
                                         ) -> None:
    setup = in_cluster(apiServer={"caFile": "/etc/kubernetes/oidc/openid-ca.pem"})

    def unmount(pod: dict[str, Any]) -> None:
        container = pod["spec"]["containers"][0]
        container["volumeMounts"] = [m for m in container["volumeMounts"]
                                     if not m["name"].startswith("dexkit-")]
        pod["spec"]["volumes"] = [v for v in pod["spec"]["volumes"]
                                  if not v["name"].startswith("dexkit-")]
    apiserver_pod(_static_pod(setup.project, unmount))
    report = setup.doctor()
    report.assert_broken("CA file not mounted into the kube-apiserver Pod", "apiserver.ca",
                         "--oidc-ca-file=/etc/kubernetes/oidc/openid-ca.pem is not mounted",
                         hint="dexkit apiserver snippet")


def test_patched_static_pod_is_healthy(in_cluster: SetupFactory,
                                       apiserver_pod: Callable[[dict[str, Any]], None]) -> None:
    setup = in_cluster()
    apiserver_pod(_static_pod(setup.project, lambda pod: None))
    report = setup.doctor()
    report.assert_healthy(allowed=NOT_DEX)
    assert report.by_id["apiserver.ca"]["status"] == "ok"
    assert "mounted from the node (hostPath /etc/ssl/certs" in \
        report.by_id["apiserver.ca"]["message"]


# --- discovery and JWKS against a real OpenID provider -------------------------------------------


@pytest.fixture(scope="module")
def sa_issuer(control_plane: controlplane.ControlPlane, kubectl: Path) -> controlplane.ControlPlane:
    """The session API server's service-account issuer, its discovery open to anonymous."""
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "doctor-oidc-discovery-anonymous"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:service-account-issuer-discovery"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                             "name": "system:unauthenticated"}]}
    kubectl_call(kubectl, control_plane.kubeconfig, "apply", "-f", "-",
                         stdin=yaml.safe_dump(binding))
    return control_plane


def _provider_project(directory: Path, plane: controlplane.ControlPlane, issuer: str,
                      **changes: Any) -> Path:
    """A project whose ssl/ is the sandbox API server's own PKI, so that its issuer (the API
    server) presents ssl/cert.pem."""
    ssl_dir = directory / "ssl"
    ssl_dir.mkdir(parents=True)
    for source, name, mode in ((plane.layout.ca, "ca.pem", 0o644),
                               (plane.layout.ca_key, "ca-key.pem", 0o600),
                               (plane.layout.serving_cert, "cert.pem", 0o644),
                               (plane.layout.serving_key, "key.pem", 0o600)):
        (ssl_dir / name).write_bytes(source.read_bytes())
        (ssl_dir / name).chmod(mode)
    data = {"issuer": issuer, "tls": {"hosts": ["localhost"], "ips": ["127.0.0.1"]},
            "connectors": [{"type": "mockCallback"}], "dex": {"service": {"type": "ClusterIP"}},
            "kubernetesVersion": MINOR, **changes}
    (directory / "dexkit.yaml").write_text(yaml.safe_dump(data))
    return directory


def _network(project: Path) -> dict[str, Any]:
    results = doctor.run(DoctorRequest(project, offline=True), Edges(environ={}),
                         only=("network",))
    return {r.id: r for r in results}


def test_discovery_and_jwks_of_a_real_provider(sa_issuer: controlplane.ControlPlane,
                                               tmp_path: Path) -> None:
    project = _provider_project(tmp_path / "p", sa_issuer, sa_issuer.apiserver_url)
    found = _network(project)
    assert found["network.tls"].status == "ok", found["network.tls"]
    # The service-account issuer serves what the API server needs (issuer, keys) but no
    # login endpoints: doctor says exactly that, as a warning.
    discovery = found["network.discovery"]
    assert discovery.status == "warn", discovery
    assert f"publishes issuer '{sa_issuer.apiserver_url}' (byte for byte) and its keys, but " \
           "no authorization_endpoint or token_endpoint" in discovery.message
    assert found["network.jwks"].status == "ok", found["network.jwks"]
    assert "RS256, accepted by the API server" in found["network.jwks"].message


def test_discovery_issuer_differs_from_the_configured_one(sa_issuer: controlplane.ControlPlane,
                                                           tmp_path: Path) -> None:
    port = sa_issuer.apiserver_url.rsplit(":", 1)[1]
    project = _provider_project(tmp_path / "p", sa_issuer, f"https://localhost:{port}")
    result = _network(project)["network.discovery"]
    _record("discovery publishes another issuer (host differs)", "network.discovery",
            {"id": result.id, "status": result.status, "message": result.message,
             "hint": result.hint})
    assert result.status == "fail"
    assert f"publishes issuer '{sa_issuer.apiserver_url}', not " \
           f"'https://localhost:{port}': the hostname differs" in result.message
    assert "byte for byte" in result.hint


def test_jwks_algorithm_the_api_server_does_not_accept(sa_issuer: controlplane.ControlPlane,
                                                       tmp_path: Path) -> None:
    project = _provider_project(tmp_path / "p", sa_issuer, sa_issuer.apiserver_url,
                                apiServer={"signingAlgs": ["ES256"]})
    result = _network(project)["network.jwks"]
    _record("API server accepts ES256 only, the issuer signs RS256", "network.jwks",
            {"id": result.id, "status": result.status, "message": result.message,
             "hint": result.hint})
    assert result.status == "fail"
    assert "keys for RS256, but the API server accepts only ES256" in result.message
    assert "signingAlgs" in result.hint


# --- with a real Dex (needs_dex) -----------------------------------------------------------------


def local_dex_config(project: Path, telemetry_port: int,
                     edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """The rendered Dex config as the sandbox runs it (:mod:`dexkit.sandbox.dexlocal`, memory
    storage), then ``edit``-ed to inject a fault."""
    config = load_config(project).config
    data = yaml.safe_load(dexlocal.local_dex_config(config, project,
                                                    telemetry_port=telemetry_port))
    if edit is not None:
        edit(data)
    path = project / "dex-local.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def with_dex(sandboxed: Callable[..., Sandbox], peer: Callable[[str], Path]
             ) -> Iterator[Callable[..., tuple[Sandbox, Any]]]:
    """A sandboxed project with a real Dex at the issuer instead of the stand-in."""
    started: list[Any] = []

    def make(dex_edit: Callable[[dict[str, Any]], None] | None = None,
             **sandbox: Any) -> tuple[Sandbox, Any]:
        dex = peer("dex")

        def start_dex(project: Path, plane: controlplane.ControlPlane) -> None:
            # As `dexkit sandbox up` does with memory storage: Dex serves before the API
            # server's authenticator makes its first discovery attempt.
            (telemetry,) = controlplane.free_ports(1)
            path = local_dex_config(project, telemetry, dex_edit)
            started.append(controlplane.start_dex(plane, dex, path,
                                                  telemetry_addr=f"127.0.0.1:{telemetry}"))
        setup = sandboxed(serve=False, first=start_dex, **sandbox)
        return setup, started[-1]
    yield make
    for process in started:
        process.stop()


def _login(setup: Setup, kubeconfig: Path | None = None) -> Report:
    assert password_file(setup.project, "admin@example.com").is_file()
    return run_doctor(setup.project, kubeconfig or setup.kubeconfig, "--login", "password")


@pytest.mark.needs_dex
def test_healthy_with_dex_and_a_login(with_dex: Callable[..., tuple[Sandbox, Any]]) -> None:
    setup, _ = with_dex()
    report = _login(setup)
    report.assert_healthy()
    for check_id in ("network.discovery", "network.jwks", "token.login", "token.issuer",
                     "token.audience", "token.email-verified", "token.groups", "token.review"):
        assert report.by_id[check_id]["status"] == "ok", report.by_id[check_id]
    assert report.code == 0


@pytest.mark.needs_dex
def test_dex_issuer_with_a_trailing_slash(with_dex: Callable[..., tuple[Sandbox, Any]]) -> None:
    def slash(data: dict[str, Any]) -> None:
        data["issuer"] += "/"
    setup, _ = with_dex(slash)
    report = _login(setup)
    report.assert_broken("Dex's issuer has a trailing slash", "network.discovery",
                         "they differ only by a trailing slash", hint="byte for byte",
                         allowed=frozenset())


@pytest.mark.needs_dex
def test_token_audience_differs_from_the_api_servers_client_id(
        with_dex: Callable[..., tuple[Sandbox, Any]]) -> None:
    setup, _ = with_dex(args=_replace_flag("oidc-client-id", "example-app"))
    report = _login(setup)
    report.assert_broken("client ID mismatch (token aud vs API server)", "token.audience",
                         "the token's aud is ['kubernetes']", "'example-app'",
                         hint="apiServer.clientID",
                         also=frozenset({"apiserver.oidc", "token.review"}),
                         allowed=frozenset())


@pytest.mark.needs_dex
def test_email_verified_false(with_dex: Callable[..., tuple[Sandbox, Any]]) -> None:
    # Dex's static passwords take emailVerified (storage.Password.EmailVerified) in recent
    # versions; without it Dex reports every static user as verified.
    def unverified(data: dict[str, Any]) -> None:
        data["staticPasswords"][0]["emailVerified"] = False
    setup, _ = with_dex(unverified)
    report = _login(setup)
    report.assert_broken("email_verified false for a static user", "token.email-verified",
                         "email_verified is false for admin@example.com",
                         hint="verify the address upstream", also=frozenset({"token.review"}),
                         allowed=frozenset())


@pytest.mark.needs_dex
def test_groups_scope_not_requested(with_dex: Callable[..., tuple[Sandbox, Any]],
                                    tmp_path: Path) -> None:
    setup, _ = with_dex()
    kubeconfig = _kubeconfig_with_user(setup, tmp_path / "kc",
                                       _dexkit_user(setup, scopes=("openid", "email")))
    report = _login(setup, kubeconfig)
    report.assert_broken("groups scope not requested (login as the kubeconfig user)",
                         "token.groups", "did not request the 'groups' scope",
                         hint="groups", also=frozenset({"local.kubeconfig-user"}),
                         allowed=frozenset())


@pytest.mark.needs_dex
def test_dex_stopped(with_dex: Callable[..., tuple[Sandbox, Any]]) -> None:
    setup, process = with_dex()
    process.stop()
    report = _login(setup)
    report.assert_broken("Dex stopped", "network.tcp", "connection refused",
                         hint="Dex is not running",
                         allowed=frozenset())
