"""OpenID provider discovery, with the issuer compared byte for byte as the API server does."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dexkit.errors import OIDCError
from dexkit.files import read_limited

if TYPE_CHECKING:
    import httpx

WELL_KNOWN = "/.well-known/openid-configuration"
# s during which a connection that is refused or reset before the request went out is tried
# again. A Dex Pod that just died keeps its place in kube-proxy's rules until the kubelet, the
# EndpointSlice controller and kube-proxy have each noticed (1 to 3 s on the node sandbox):
# meanwhile some connections to the Service land on it and are refused. Nothing reached Dex,
# so any request may be sent again; a Dex that is down for good costs this long to say so.
CONNECT_RETRY = 5.0


@dataclass(frozen=True)
class Provider:
    """What discovery told us about the issuer."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    device_authorization_endpoint: str | None = None
    grant_types: tuple[str, ...] = ()
    signing_algs: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def tls_context(ca_file: Path | None, *, insecure: bool = False,
                more_files: Sequence[Path] = (), ca_data: Sequence[bytes] = ()) -> ssl.SSLContext:
    """Trust the given CAs (dexkit's ``ca.pem``, kubelogin's ``--certificate-authority`` and
    ``--certificate-authority-data``) when any is given, else the system store; never nothing
    unless the caller asked for ``insecure`` (and printed why)."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    files = [f for f in (ca_file, *more_files) if f is not None]
    if not files and not ca_data:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for path in files:
        try:
            # read by dexkit (no FIFO, no device, nobody else's file), then handed to OpenSSL
            pem = read_limited(path, trust=True)
            context.load_verify_locations(cadata=pem.decode("ascii", errors="replace"))
        except (OSError, ssl.SSLError, ValueError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise OIDCError(f"cannot load the CA file {path}: {why}",
                            "run 'dexkit init' or pass the CA that signed Dex's "
                            "certificate") from None
    for data in ca_data:
        try:
            context.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise OIDCError(f"--certificate-authority-data is not a PEM certificate: {exc}",
                            "pass the CA's PEM, base64-encoded (base64 -w0 ca.pem)") from None
    return context


def handshake(address: str, port: int, server_name: str, context: ssl.SSLContext, *,
              timeout: float) -> tuple[bytes, str]:
    """One TLS handshake with ``address:port`` for ``server_name`` under ``context``: the
    certificate the server presents (DER, b"" if none) and the TLS version. Raises
    ``ssl.SSLCertVerificationError`` when ``context`` verifies and the certificate fails, other
    ``ssl.SSLError`` or ``OSError`` when no TLS session comes up. verify, doctor and deploy's
    readiness wait each shake hands through this one function."""
    with socket.create_connection((address, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        return tls.getpeercert(binary_form=True) or b"", str(tls.version())


def make_client(ca_file: Path | None, *, insecure: bool = False, timeout: float = 10.0,
                more_files: Sequence[Path] = (), ca_data: Sequence[bytes] = ()) -> httpx.Client:
    # httpx (~45 ms) only when a request is sent: 'dexkit token --help' and the cached
    # token's neighbours load this module without it.
    import httpx  # noqa: PLC0415

    context = tls_context(ca_file, insecure=insecure, more_files=more_files, ca_data=ca_data)
    return httpx.Client(verify=context, timeout=timeout, follow_redirects=False,
                        headers={"User-Agent": "dexkit"})


def discover(http: httpx.Client, issuer: str) -> Provider:
    """Fetch ``<issuer>/.well-known/openid-configuration``; its ``issuer`` must equal ours."""
    url = issuer.rstrip("/") + WELL_KNOWN
    data = get_json(http, url, "discovery")
    published = str(data.get("issuer", ""))
    if published != issuer:
        raise OIDCError(f"the issuer Dex publishes is '{published}', not '{issuer}': "
                        f"{explain_difference(issuer, published)}",
                        "make Dex's 'issuer' and the API server's issuer URL identical, byte for "
                        "byte (re-render both with 'dexkit render')")
    try:
        return Provider(
            issuer=published,
            authorization_endpoint=str(data["authorization_endpoint"]),
            token_endpoint=str(data["token_endpoint"]),
            jwks_uri=str(data["jwks_uri"]),
            device_authorization_endpoint=data.get("device_authorization_endpoint"),
            grant_types=tuple(data.get("grant_types_supported", ())),
            signing_algs=tuple(data.get("id_token_signing_alg_values_supported", ())),
            scopes=tuple(data.get("scopes_supported", ())),
            raw=data,
        )
    except KeyError as exc:
        raise OIDCError(f"discovery document at {url} lacks {exc}",
                        "is this URL really an OpenID provider?") from None


def explain_difference(expected: str, got: str) -> str:
    """Say how two issuer strings differ, in the terms users search for."""
    if got.rstrip("/") == expected.rstrip("/"):
        return "they differ only by a trailing slash"
    a, b = urlsplit(expected), urlsplit(got)
    for part in ("scheme", "hostname", "port", "path"):
        # What a server sends may not even parse (a port 'h:1:2'): that is a difference too.
        try:
            mine, theirs = getattr(a, part), getattr(b, part)
        except ValueError:
            return f"the {part} of '{got}' cannot be read"
        if mine != theirs:
            return f"the {part} differs ('{mine}' vs '{theirs}')"
    return "they differ in case or encoding"


def send(http: httpx.Client, method: str, url: str, *, data: dict[str, str] | None = None,
         read_timeout: float | None = None, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> httpx.Response:
    """``http.request``, tried again for :data:`CONNECT_RETRY` s while the connection is
    refused or reset before the request was sent (the reason is said above the constant).

    httpx raises ``ConnectError`` only while it opens a connection (TCP connect, TLS
    handshake), before a byte of the request is written: a refresh token or a device code
    sent again here was never seen by Dex. A failure after that (``ReadError``,
    ``RemoteProtocolError``) is not retried here, as Dex may have redeemed the token: only a
    refresh is sent again, once, by its caller (``flows.refresh``: Dex takes the previous
    refresh token again for a few seconds). httpx's own
    ``HTTPTransport(retries=)`` would also retry a certificate that does not verify, a name
    that does not resolve and a connect time-out, by count: seconds added to the mistakes
    ``verify`` and ``doctor`` exist to name.

    The window is the process's (:class:`_Window`), shared by the requests that follow a
    refusal until one is answered."""
    # httpx (~45 ms) only when a request is sent: 'dexkit token --help' and the cached
    # token's neighbours load this module without it.
    import httpx  # noqa: PLC0415

    pause = 0.1
    while True:
        try:
            response = http.request(method, url, data=data) if read_timeout is None else \
                http.request(method, url, data=data,
                             timeout=httpx.Timeout(http.timeout.connect, read=read_timeout,
                                                   write=http.timeout.write,
                                                   pool=http.timeout.pool))
        except httpx.ConnectError as exc:
            if not _refused(exc):
                raise
            now = clock()
            if _window.deadline is None:
                _window.deadline = now + CONNECT_RETRY
            if now >= _window.deadline:
                raise
            sleep(min(pause, _window.deadline - now))
            pause = min(pause * 2, 0.5)
        else:
            _window.deadline = None
            return response


class _Window:
    """This process's retry window: opened by the first refusal, closed by an answer. A Dex
    that stays down costs :data:`CONNECT_RETRY` s once per command, not once per request (a
    refresh, then a login's discovery, each waiting in turn)."""

    deadline: float | None = None


_window = _Window()


def _refused(exc: BaseException) -> bool:
    """Whether the cause of a connection error is a refusal or a reset (not a TLS failure, a
    name that does not resolve, or a time-out: trying again would not help, or take long)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError | ConnectionResetError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def get_json(http: httpx.Client, url: str, what: str) -> dict[str, Any]:
    # httpx (~45 ms) only when a request is sent: 'dexkit token --help' and the cached
    # token's neighbours load this module without it.
    import httpx  # noqa: PLC0415

    try:
        response = send(http, "GET", url)
    except httpx.ConnectError as exc:
        raise _connect_error(url, what, exc) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise OIDCError(f"{what} request to {url} failed: {exc}",
                        "check that Dex is running and reachable at the issuer URL") from None
    if response.status_code != 200:
        raise OIDCError(f"{what} at {url} answered HTTP {response.status_code}",
                        "check the issuer URL, including its path")
    try:
        body = response.json()
    except ValueError:
        raise OIDCError(f"{what} at {url} did not answer JSON",
                        "is something other than Dex listening there?") from None
    if not isinstance(body, dict):
        raise OIDCError(f"{what} at {url} did not answer a JSON object", "")
    return body


def _connect_error(url: str, what: str, exc: Exception) -> OIDCError:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return OIDCError(f"TLS verification of {url} failed: {_short(text)}",
                         "trust the CA that signed Dex's certificate (dexkit's ssl/ca.pem), or "
                         "check that the certificate covers the issuer host")
    return OIDCError(f"cannot connect to {url} for {what}: {_short(text)}",
                     "check that Dex is running and the issuer host resolves to it")


def _short(text: str) -> str:
    return text.split("\n", 1)[0][:300]
