"""A CI system's OIDC issuer, in two forms, and GitHub's token service, standing in.

- :func:`start_ci_issuer`: a second real Dex (as the upstream-oidc scenario has). A CI job's ID
  token is what this Dex issues for its one "job" user by the password grant, to the client
  named after the audience asked for: so a token "for audience X" has ``aud: X``, as GitHub's
  token service gives ``aud: X`` for ``&audience=X``. Its ID tokens live
  :data:`LIFETIME_SECONDS` (a job's are short-lived too), so an expired one is a real expired
  one. Its claims are Dex's (``sub``, ``name``, ``groups``...), not GitHub's.
- :class:`GitHubIssuer`: GitHub Actions' own issuer, ``https://token.actions.githubusercontent.com``,
  standing in where a configuration names it (the kind-ci scenario): the discovery document and
  JWKS as GitHub publishes them (no authorization or token endpoint: it only signs jobs' ID
  tokens) and ID tokens with GitHub's claims for one job (``sub: repo:OWNER/REPO:ref:REF``,
  ``repository_owner``...), RS256 with a throwaway key; its TLS certificate names GitHub's host
  and comes from a throwaway CA that whoever must trust it is given. A second Dex could not
  stand in there: its tokens cannot carry GitHub's claims, which the scenario maps.
  :func:`serve_documents` serves its documents over HTTPS on a socket the caller made, where
  the caller's network gives it GitHub's name (:func:`listener_in`: in another process's
  network namespace).
- :func:`actions_token_service`: GitHub's token service, which is not reachable here: a local
  HTTP server that answers ``GET <url>&audience=X`` with ``{"value": <a token of the issuer for
  X>}`` when the bearer is the job's request token, and 401 otherwise.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import os
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from dexkit import pki
from tests.e2e.loopback_dex import start_loopback_dex
from tests.e2e.workflow import GitHub

JOB_EMAIL = "ci-job@ci.example.net"
JOB_NAME = "build-and-deploy"
AUDIENCES = ("dexkit-ci", "other-service")  # the connector's, and one meant for someone else
LIFETIME_SECONDS = 8
CLIENT_SECRET = "ci-issuer-test-secret"


class Minter(Protocol):
    """An issuer the token service stand-in hands out tokens of."""

    audiences: tuple[str, ...]

    def mint(self, audience: str) -> str: ...


@dataclass
class CIIssuer:
    issuer: str
    ca_pem: str
    process: Any
    password: str
    audiences: tuple[str, ...] = AUDIENCES

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
    upstream = start_loopback_dex(
        directory, dex, name="ci-issuer", email=JOB_EMAIL, username=JOB_NAME,
        groups=["deployers"], oauth2={"passwordConnector": "local"},
        clients=[{"id": aud, "name": aud, "secret": CLIENT_SECRET,
                  "redirectURIs": ["http://127.0.0.1:1/callback"]} for aud in AUDIENCES],
        extra={"expiry": {"idTokens": f"{LIFETIME_SECONDS}s"}})
    return CIIssuer(upstream.issuer, upstream.ca_pem, upstream.process, upstream.password)


@dataclass
class ActionsStandIn:
    url: str  # what a job finds in ACTIONS_ID_TOKEN_REQUEST_URL
    request_token: str  # ... and in ACTIONS_ID_TOKEN_REQUEST_TOKEN
    asked: list[str]  # the audiences asked for, in order


@contextmanager
def actions_token_service(ci: Minter) -> Iterator[ActionsStandIn]:
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
            if query.get("api-version") != ["2.0"] or audience not in ci.audiences:
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


# --- GitHub Actions' issuer, standing in ------------------------------------------------------

GITHUB_HOST = "token.actions.githubusercontent.com"
GITHUB_ISSUER = f"https://{GITHUB_HOST}"
# A job's ID token lives minutes; 300 s is within what GitHub gives.
GITHUB_LIFETIME_SECONDS = 300
DISCOVERY = "/.well-known/openid-configuration"
JWKS = "/.well-known/jwks"


@dataclass
class GitHubIssuer:
    """GitHub Actions' OIDC issuer for the jobs of ``job`` (the module docstring says how)."""

    directory: Path
    job: GitHub
    audiences: tuple[str, ...]
    key: RSAKey = field(init=False)
    tls: pki.TLSPaths = field(init=False)
    issuer: str = GITHUB_ISSUER

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={
            "use": "sig", "alg": "RS256", "kid": secrets.token_hex(8)}, private=True)
        self.tls = pki.TLSPaths(self.directory)
        pki.ensure_assets(self.tls, pki.Wanted((GITHUB_HOST,), (), "ecdsa-p256", ca_days=2,
                                               cert_days=2),
                          force=False, now=dt.datetime.now(dt.UTC))

    @property
    def ca_pem(self) -> bytes:
        return self.tls.ca.read_bytes()

    def subject(self) -> str:
        """GitHub's default sub claim for the job's event."""
        repo = f"repo:{self.job.repository}"
        if self.job.event_name in ("pull_request", "pull_request_target"):
            return f"{repo}:pull_request"
        return f"{repo}:ref:{self.job.ref}"

    def mint(self, audience: str) -> str:
        """The job's ID token for ``audience``, with the claims GitHub's carry."""
        now = int(time.time())
        job = self.job
        claims = {
            "jti": str(uuid.uuid4()), "sub": self.subject(), "aud": audience,
            "ref": job.ref, "ref_type": "branch" if job.ref.startswith("refs/heads/") else "",
            "sha": "0" * 40, "repository": job.repository,
            "repository_owner": job.repository_owner, "repository_visibility": "public",
            "run_id": "1", "run_number": "1", "run_attempt": "1", "actor": "dexkit-ci",
            "workflow": "kind-e2e", "event_name": job.event_name,
            "job_workflow_ref": f"{job.repository}/.github/workflows/kind-e2e.yml@{job.ref}",
            "runner_environment": "github-hosted", "iss": self.issuer,
            "nbf": now - 5, "iat": now, "exp": now + GITHUB_LIFETIME_SECONDS}
        header = {"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key)

    def documents(self) -> dict[str, bytes]:
        """What GitHub publishes at its issuer: discovery (its fields) and the JWKS."""
        discovery = {
            "issuer": self.issuer, "jwks_uri": f"{self.issuer}{JWKS}",
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref",
                                 "repository", "repository_owner", "run_id", "actor",
                                 "workflow", "event_name", "ref_type", "job_workflow_ref"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"]}
        jwks = {"keys": [self.key.as_dict(private=False)]}
        return {DISCOVERY: json.dumps(discovery).encode(), JWKS: json.dumps(jwks).encode()}


CLONE_NEWNET = 0x40000000


def listener_in(pid: int, host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` in the network namespace of process ``pid``.

    A socket stays in the namespace it was made in, so a short-lived thread enters that
    namespace (setns(2) moves the calling thread only), makes the socket and ends: nothing
    else of this process ever runs there."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into the network of pid {pid}")
            made.append(socket.create_server((host, port)))
        except BaseException as exc:  # handed to the caller's thread
            made.append(exc)
        finally:
            os.close(target)

    thread = threading.Thread(target=make, name=f"netns-{pid}")
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


@contextmanager
def serve_documents(documents: Mapping[str, bytes], listener: socket.socket,
                    tls: pki.TLSPaths) -> Iterator[list[str]]:
    """HTTPS on ``listener`` serving ``documents`` by path; yields the paths asked for, in
    order (who fetched discovery and the JWKS)."""
    asked: list[str] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            asked.append(path)
            body = documents.get(path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(listener.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = context.wrap_socket(listener, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield asked
    finally:
        server.shutdown()
        server.server_close()
