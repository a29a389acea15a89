"""The control plane's pure parts: PKI, arguments, kubeconfig, state; no peer binaries needed."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import socket
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dexkit import pki
from dexkit.errors import DexkitError
from dexkit.sandbox import controlplane as cp
from dexkit.sandbox import process

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def layout(tmp_path: Path) -> cp.SandboxLayout:
    layout = cp.SandboxLayout(tmp_path / "sandbox")
    cp.write_pki(layout, NOW)
    return layout


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_pki_files_and_modes(layout: cp.SandboxLayout) -> None:
    for private in (layout.ca_key, layout.serving_key, layout.admin_key, layout.sa_key):
        assert _mode(private) == 0o600, private
    for public in (layout.ca, layout.serving_cert, layout.admin_cert, layout.sa_pub):
        assert _mode(public) == 0o644, public
    assert _mode(layout.pki) == 0o700


def test_admin_certificate_is_a_system_masters_client(layout: cp.SandboxLayout) -> None:
    ca = pki.load_cert(layout.ca)
    admin = pki.load_cert(layout.admin_cert)
    assert admin.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cp.ADMIN_USER
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    eku = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not admin.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    admin.verify_directly_issued_by(ca)
    assert admin.not_valid_before_utc < NOW < admin.not_valid_after_utc
    assert admin.not_valid_after_utc <= ca.not_valid_after_utc


def test_serving_certificate_covers_loopback(layout: cp.SandboxLayout) -> None:
    ca = pki.load_cert(layout.ca)
    serving = pki.load_cert(layout.serving_cert)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert pki.verify_chain(ca, serving, "127.0.0.1", NOW) is None
    assert pki.verify_chain(ca, serving, "localhost", NOW) is None


def test_apiserver_arguments(layout: cp.SandboxLayout) -> None:
    argv = cp.apiserver_argv(Path("/bin/kube-apiserver"), layout, "http://127.0.0.1:1", 6443,
                             ["--authentication-config={files}/auth.yaml", "--v=2"])
    assert argv[0] == "/bin/kube-apiserver"
    for flag in ("--authorization-mode=RBAC", "--bind-address=127.0.0.1", "--secure-port=6443",
                 "--disable-admission-plugins=ServiceAccount",
                 f"--service-cluster-ip-range={cp.SERVICE_CLUSTER_IP_RANGE}",
                 f"--client-ca-file={layout.ca}", "--etcd-servers=http://127.0.0.1:1",
                 f"--service-account-signing-key-file={layout.sa_key}"):
        assert flag in argv
    assert argv[-2:] == [f"--authentication-config={layout.files}/auth.yaml", "--v=2"]
    assert not any(a.startswith("--oidc-") for a in argv)  # OIDC comes from the caller only


def test_etcd_arguments(layout: cp.SandboxLayout) -> None:
    argv = cp.etcd_argv(Path("/bin/etcd"), layout, 2379, 2380)
    assert "--unsafe-no-fsync" in argv
    assert f"--data-dir={layout.etcd_data}" in argv
    assert "--listen-client-urls=http://127.0.0.1:2379" in argv
    assert "--listen-peer-urls=http://127.0.0.1:2380" in argv


def test_extra_files_stay_inside_files_dir(layout: cp.SandboxLayout) -> None:
    cp._write_extra_files(layout, {"auth.yaml": "kind: X\n", "ca/oidc.pem": b"pem"})
    assert (layout.files / "auth.yaml").read_text() == "kind: X\n"
    assert (layout.files / "ca" / "oidc.pem").read_bytes() == b"pem"
    with pytest.raises(DexkitError, match="outside"):
        cp._write_extra_files(layout, {"../escape": "x"})
    assert not (layout.dir / "escape").exists()


def test_admin_kubeconfig_is_private_and_self_contained(layout: cp.SandboxLayout) -> None:
    path = cp.write_admin_kubeconfig(layout, "https://127.0.0.1:6443")
    assert _mode(path) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "dexkit-sandbox"
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == layout.ca.read_bytes()
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == layout.admin_key.read_bytes()


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = cp.free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_http_get_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="not an http"):
        cp.http_get("file:///etc/passwd")


def test_state_round_trip_status_and_down(tmp_path: Path) -> None:
    directory = tmp_path / "sandbox"
    assert cp.sandbox_status(directory) == (None, [])
    assert cp.stop_sandbox(directory) == []

    sleeper = process.start_process(
        "etcd", [sys.executable, "-c", "import time; time.sleep(600)"],
        directory / "logs" / "etcd.log", lambda: True)
    try:
        state = cp.SandboxState(dir=directory, kubernetes_version="1.34.4",
                                processes=[sleeper.record],
                                endpoints={"etcd": "http://127.0.0.1:1"})
        state.save()
        assert _mode(directory / cp.STATE_FILE) == 0o600
        loaded, report = cp.sandbox_status(directory)
        assert loaded is not None and loaded.kubernetes_version == "1.34.4"
        assert [(p.name, p.running, p.endpoint) for p in report] == [
            ("etcd", True, "http://127.0.0.1:1")]
        assert json.loads((directory / cp.STATE_FILE).read_text())["version"] == 1

        with pytest.raises(DexkitError, match="already running"):
            cp.prepare_dir(directory)

        assert cp.stop_sandbox(directory, timeout=5) == ["etcd"]
        sleeper.popen.wait(timeout=5)
        assert not (directory / cp.STATE_FILE).exists()
        cp.prepare_dir(directory)  # a stopped sandbox can start again
    finally:
        sleeper.stop()


def test_a_corrupt_state_file_is_an_error_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / cp.STATE_FILE).write_text("{not json")
    with pytest.raises(DexkitError, match="not valid JSON") as info:
        cp.SandboxState.load(tmp_path)
    assert "logs/" in info.value.hint


def test_sandbox_dir_is_under_the_project_state_dir(tmp_path: Path) -> None:
    assert cp.sandbox_dir(tmp_path) == tmp_path / ".dexkit" / "sandbox"


# A stand-in for `dex serve CONFIG`: serves /healthz/ready on the telemetry address in CONFIG.
FAKE_DEX = """\
import http.server, sys
assert sys.argv[1] == "serve", sys.argv
host, port = open(sys.argv[2]).read().split("telemetry: ")[1].split()[0].rsplit(":", 1)

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz/ready" else 404)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass

print("dex: serving", flush=True)
http.server.HTTPServer((host, int(port)), Health).serve_forever()
"""


def test_start_dex_waits_for_its_telemetry_readiness_and_is_recorded(tmp_path: Path) -> None:
    dex = tmp_path / "dex"
    dex.write_text(f"#!{sys.executable}\n{FAKE_DEX}")
    dex.chmod(0o755)
    [port] = cp.free_ports(1)
    config = tmp_path / "dex-config.yaml"
    config.write_text(f"telemetry: 127.0.0.1:{port}\n")
    layout = cp.SandboxLayout(tmp_path / "sandbox")
    plane = cp.ControlPlane(layout, cp.SandboxState(dir=layout.dir))
    try:
        started = cp.start_dex(plane, dex, config, telemetry_addr=f"127.0.0.1:{port}",
                               timeout=30)
        assert started.alive()
        assert "dex: serving" in layout.log("dex").read_text()
        state = cp.SandboxState.load(layout.dir)
        assert state is not None
        assert [p.name for p in state.processes] == ["dex"]
        assert state.endpoints["dex"] == f"http://127.0.0.1:{port}"
        assert state.processes[0].argv == (str(dex), "serve", str(config))
    finally:
        plane.stop()
    assert not started.alive()
    assert cp.SandboxState.load(layout.dir) is None


def test_start_dex_without_a_sandbox_needs_a_log_path(tmp_path: Path) -> None:
    with pytest.raises(DexkitError, match="log path"):
        cp.start_dex(None, tmp_path / "dex", tmp_path / "c.yaml", telemetry_addr="127.0.0.1:1")
