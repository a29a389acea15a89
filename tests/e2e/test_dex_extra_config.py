"""dex.extraConfig and dex.grpc proven by the real Dex binary.

Dex runs the config dexkit renders (as a local process, :mod:`dexkit.sandbox.dexlocal`):
what extraConfig merges in must be what Dex then does — its discovery document, response
headers, login page, an extra connector and an extra client — and the gRPC API must accept
only clients whose certificate the project's CA signed.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dexkit import files, pki
from dexkit.config import load_config, validate_values
from dexkit.project import password_file, render_config_file
from dexkit.sandbox import controlplane, dexlocal
from tests.e2e.conftest import new_static_project

pytestmark = [pytest.mark.e2e, pytest.mark.needs_dex]
EXTRA: dict[str, Any] = {
    "oauth2": {"responseTypes": ["code"]},
    "frontend": {"issuer": "Example Corp Sign-in"},
    "web": {"headers": {"X-Frame-Options": "DENY"}},
    "expiry": {"refreshTokens": {"validIfNotUsedFor": "168h"}},
    "connectors": [{"type": "mockCallback", "id": "mock2", "name": "Second Mock"}],
    "staticClients": [{"id": "portal", "name": "Portal", "public": True,
                       "redirectURIs": ["http://127.0.0.1:9999/callback"]}],
}


class RunningDex:
    def __init__(self, project: Path, grpc_port: int) -> None:
        self.project, self.grpc_port = project, grpc_port
        self.config = load_config(project).config
        self.ca = ssl.create_default_context(cafile=str(project / "ssl" / "ca.pem"))

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.config.issuer}{path}", params=params, verify=self.ca,
                         timeout=10)


@pytest.fixture(scope="module")
def dex(tmp_path_factory: pytest.TempPathFactory, dex_binary: Path) -> Iterator[RunningDex]:
    project = new_static_project(tmp_path_factory.mktemp("extra") / "project")
    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    data["dex"]["extraConfig"] = EXTRA
    data["dex"]["grpc"] = {"enabled": True}
    path.write_text(render_config_file(validate_values(data)))
    config = load_config(project).config
    telemetry, grpc = controlplane.free_ports(2)
    local = project / "dex-local.yaml"
    files.atomic_write(local, dexlocal.local_dex_config(config, project, telemetry_port=telemetry,
                                                        grpc_port=grpc), files.PRIVATE)
    process = controlplane.start_dex(None, dex_binary, local,
                                     telemetry_addr=f"127.0.0.1:{telemetry}",
                                     log_path=project / "dex.log")
    try:
        yield RunningDex(project, grpc)
    finally:
        process.stop()


def test_dex_serves_what_extra_config_asked_for(dex: RunningDex) -> None:
    discovery = dex.get("/.well-known/openid-configuration")
    assert discovery.status_code == 200
    assert discovery.json()["response_types_supported"] == ["code"]
    assert discovery.json()["issuer"] == dex.config.issuer  # dexkit's, untouched
    assert discovery.headers["X-Frame-Options"] == "DENY"
    page = dex.get("/auth", client_id="kubernetes", response_type="code", scope="openid",
                   redirect_uri="http://127.0.0.1:8000/callback", state="s")
    assert page.status_code == 200
    assert "Second Mock" in page.text  # the connector from extraConfig, beside dexkit's local
    assert "Example Corp Sign-in" in page.text  # frontend.issuer


def test_the_extra_client_gets_tokens_and_dexkits_client_still_does(dex: RunningDex) -> None:
    user = dex.config.static_users[0].email
    password = password_file(dex.project, user).read_text().strip()
    for client in ("portal", "kubernetes"):
        token = httpx.post(f"{dex.config.issuer}/token", verify=dex.ca, timeout=10, data={
            "grant_type": "password", "username": user, "password": password,
            "client_id": client, "scope": "openid email"})
        assert token.status_code == 200, token.text
        assert "id_token" in token.json()


def _h2_settings(dex: RunningDex, cert: tuple[Path, Path] | None) -> int:
    """Open TLS (ALPN h2) to the gRPC port, send the HTTP/2 preface and an empty SETTINGS
    frame, and return the type of the server's first frame (4: SETTINGS, it accepted us)."""
    context = ssl.create_default_context(cafile=str(dex.project / "ssl" / "ca.pem"))
    context.set_alpn_protocols(["h2"])
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    with socket.create_connection(("127.0.0.1", dex.grpc_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=dex.config.issuer_host) as tls:
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + b"\x04\x00"
                    + struct.pack(">I", 0))
        header = tls.recv(9)
        assert len(header) == 9, header
        return header[3]


def _client_cert(directory: Path, ca: Any, ca_key: Any, name: str) -> tuple[Path, Path]:
    now = dt.datetime.now(dt.UTC)
    key = pki.generate_key("ecdsa-p256")
    cert = controlplane.issue_client_cert(ca_cert=ca, ca_key=ca_key, key=key, user=name,
                                          groups=[], days=1, now=now)
    paths = directory / f"{name}.crt", directory / f"{name}.key"
    pki.write_cert(paths[0], cert)
    pki.write_key(paths[1], key)
    return paths


def test_grpc_accepts_a_client_the_project_ca_signed_and_no_other(
        dex: RunningDex, tmp_path: Path) -> None:
    ssl_dir = dex.project / "ssl"
    ours = _client_cert(tmp_path, pki.load_cert(ssl_dir / "ca.pem"),
                        pki.load_key(ssl_dir / "ca-key.pem"), "admin-tool")
    assert _h2_settings(dex, ours) == 4
    other_key = pki.generate_key("ecdsa-p256")
    other_ca = pki.create_ca(other_key, common_name="someone else's CA", days=1,
                             now=dt.datetime.now(dt.UTC))
    theirs = _client_cert(tmp_path, other_ca, other_key, "intruder")
    for cert in (None, theirs):
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
            _h2_settings(dex, cert)
