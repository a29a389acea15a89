"""A CI system's OIDC issuer, played by a second real Dex (as the upstream-oidc scenario does).

A CI job's ID token is what this Dex issues for its one "job" user by the password grant, to
the client named after the audience asked for: so a token "for audience X" has ``aud: X``, as
GitHub's token service gives ``aud: X`` for ``&audience=X``. Its ID tokens live
:data:`LIFETIME_SECONDS` (a job's are short-lived too), so an expired one is a real expired one.

:class:`ActionsStandIn` stands in for GitHub's token service, which is not reachable here: a
local HTTP server that answers ``GET <url>&audience=X`` with ``{"value": <a token of this
issuer for X>}`` when the bearer is the job's request token, and 401 otherwise.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import yaml

from dexkit.project import hash_password
from dexkit.sandbox import controlplane
from tests.e2e.tlsfiles import write_localhost_tls

JOB_EMAIL = "ci-job@ci.example.net"
JOB_NAME = "build-and-deploy"
AUDIENCES = ("dexkit-ci", "other-service")  # the connector's, and one meant for someone else
LIFETIME_SECONDS = 8
CLIENT_SECRET = "ci-issuer-test-secret"


@dataclass
class CIIssuer:
    issuer: str
    ca_pem: str
    process: Any
    password: str

    def mint(self, audience: str) -> str:
        """A job's ID token for ``audience``."""
        with httpx.Client(verify=_context(self.ca_pem), timeout=30) as http:
            answer = http.post(f"{self.issuer}/token", data={
                "grant_type": "password", "client_id": audience,
                "client_secret": CLIENT_SECRET, "username": JOB_EMAIL,
                "password": self.password, "scope": "openid email profile groups"})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["id_token"])

    def stop(self) -> None:
        self.process.stop()


def _context(ca_pem: str) -> Any:
    import ssl

    context = ssl.create_default_context()
    context.load_verify_locations(cadata=ca_pem)
    return context


def start_ci_issuer(directory: Path, dex: Path) -> CIIssuer:
    directory.mkdir(parents=True, exist_ok=True)
    port, telemetry = controlplane.free_ports(2)
    write_localhost_tls(directory)
    password = secrets.token_urlsafe(12)
    issuer = f"https://127.0.0.1:{port}"
    config = {
        "issuer": issuer,
        "storage": {"type": "memory"},
        "web": {"https": f"127.0.0.1:{port}", "tlsCert": str(directory / "cert.pem"),
                "tlsKey": str(directory / "key.pem")},
        "telemetry": {"http": f"127.0.0.1:{telemetry}"},
        "expiry": {"idTokens": f"{LIFETIME_SECONDS}s"},
        "oauth2": {"skipApprovalScreen": True, "passwordConnector": "local"},
        "enablePasswordDB": True,
        "staticPasswords": [{"email": JOB_EMAIL, "hash": hash_password(password),
                             "username": JOB_NAME,
                             "userID": str(uuid.uuid5(uuid.NAMESPACE_URL, JOB_EMAIL)),
                             "groups": ["deployers"]}],
        "staticClients": [{"id": aud, "name": aud, "secret": CLIENT_SECRET,
                           "redirectURIs": ["http://127.0.0.1:1/callback"]}
                          for aud in AUDIENCES],
    }
    path = directory / "ci-issuer.yaml"
    path.write_text(yaml.safe_dump(config))
    process = controlplane.start_dex(None, dex, path, telemetry_addr=f"127.0.0.1:{telemetry}",
                                     log_path=directory / "ci-issuer.log")
    return CIIssuer(issuer, (directory / "ca.pem").read_text(), process, password)


@dataclass
class ActionsStandIn:
    url: str  # what a job finds in ACTIONS_ID_TOKEN_REQUEST_URL
    request_token: str  # ... and in ACTIONS_ID_TOKEN_REQUEST_TOKEN
    asked: list[str]  # the audiences asked for, in order


@contextmanager
def actions_token_service(ci: CIIssuer) -> Iterator[ActionsStandIn]:
    """GitHub's token service, standing in on 127.0.0.1 (plain HTTP, as a test double)."""
    bearer = secrets.token_urlsafe(16)
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            if self.headers.get("Authorization") != f"Bearer {bearer}":
                self._answer(401, {"message": "bad credentials"})
                return
            audience = query.get("audience", [""])[0]
            asked.append(audience)
            if query.get("api-version") != ["2.0"] or audience not in AUDIENCES:
                self._answer(400, {"message": "bad request"})
                return
            self._answer(200, {"count": 1, "value": ci.mint(audience)})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield ActionsStandIn(f"http://127.0.0.1:{port}/_apis/token?api-version=2.0", bearer,
                             asked)
    finally:
        server.shutdown()
        server.server_close()
