"""The ways to get an ID token from Dex, plus refresh.

- authorization code + PKCE (S256) + state + nonce, through a loopback server on 127.0.0.1;
- the same with a keyboard: Dex's out-of-band page shows the code, the user types it in;
- device code (RFC 8628) for SSH sessions and headless hosts;
- password (resource owner) for CI, when Dex's ``oauth2.passwordConnector`` is set;
- token exchange (RFC 8693): a CI job's own ID token, verified by a Dex connector, for a Dex
  ID token (Dex answers it in ``access_token``, with ``issued_token_type`` saying so);
- client credentials: a confidential client as itself (Dex's main branch after v2.45.1).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from dexkit.errors import OIDCError
from dexkit.oidc import DEFAULT_SCOPES
from dexkit.oidc.discovery import Provider, send

if TYPE_CHECKING:
    from http.server import HTTPServer

    import httpx


DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
EXCHANGE_READ_TIMEOUT = 45.0  # seconds: see token_exchange
CLIENT_CREDENTIALS_GRANT = "client_credentials"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a URN
# Dex serves client_credentials from its main branch after v2.45.1 (2.46), when listed.
CLIENT_CREDENTIALS_HINT = ("Dex serves the client_credentials grant from its main branch after "
                           "v2.45.1 (the 2.46 line), and only when oauth2.grantTypes lists it "
                           "(dexkit renders that for a client with clientCredentials); Dex "
                           "v2.45.1 and earlier do not have it")


@dataclass(frozen=True)
class Client:
    """The OAuth2 client we log in as (the one the API server trusts)."""

    id: str
    secret: str = ""
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


@dataclass(frozen=True)
class TokenSet:
    id_token: str
    refresh_token: str | None
    nonce: str | None = None


def _form_auth(client: Client) -> dict[str, str]:
    # Dex compares client_secret to the stored one; a public client's is empty.
    return {"client_id": client.id, "client_secret": client.secret}


def _post(http: httpx.Client, provider: Provider, form: dict[str, str],
          what: str, *, read_timeout: float | None = None,
          resend_if_answer_lost: bool = False) -> tuple[int, Any]:
    """(status, JSON body or {}) of one token-endpoint request; with
    ``resend_if_answer_lost``, sent once more at once when the connection broke after the
    request went out (see :func:`refresh`)."""
    # httpx (~45 ms) only when a request is sent: 'dexkit token --help' loads this module.
    import httpx  # noqa: PLC0415

    lost = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
    resends = 1 if resend_if_answer_lost else 0
    while True:
        try:
            response = send(http, "POST", provider.token_endpoint, data=form,
                            read_timeout=read_timeout)
        except lost:
            if resends:
                resends -= 1
                continue
            raise OIDCError(f"{what}: the connection to {provider.token_endpoint} broke "
                            "before Dex answered", "check that Dex is running; try again") \
                from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise OIDCError(f"{what}: cannot reach {provider.token_endpoint}: {exc}",
                            "check that Dex is running") from None
        break
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {}


def _token_request(http: httpx.Client, provider: Provider, form: dict[str, str],
                   what: str, *, resend_if_answer_lost: bool = False) -> dict[str, Any]:
    status, body = _post(http, provider, form, what,
                         resend_if_answer_lost=resend_if_answer_lost)
    if status != 200:
        raise token_error(what, status, body)
    if not isinstance(body, dict) or "id_token" not in body:
        raise OIDCError(f"{what}: Dex answered without an id_token",
                        "request the 'openid' scope")
    return body


def token_error(what: str, status: int, body: Any) -> OIDCError:
    """Dex's OAuth2 error, with the fix people look for."""
    code = body.get("error", "") if isinstance(body, dict) else ""
    detail = body.get("error_description", "") if isinstance(body, dict) else ""
    hints = {
        "unsupported_grant_type": "enable the grant in Dex: for the password grant set "
                                  "oauth2.passwordConnector (dexkit does when static users or "
                                  "LDAP are configured)",
        "invalid_client": "the client ID or secret is not one Dex knows; check 'clients' in "
                          "dexkit.yaml and re-deploy",
        "invalid_grant": "the credentials, code or refresh token were refused; log in again",
        "access_denied": "the user was refused by the connector",
        "invalid_scope": "remove scopes Dex does not support",
    }
    if what.startswith("client_credentials"):
        hints["unsupported_grant_type"] = CLIENT_CREDENTIALS_HINT
        hints["unauthorized_client"] = "the client is public: client_credentials needs a " \
            "confidential client (public: false, secretName)"
    return OIDCError(f"{what} refused by Dex (HTTP {status}): {code or 'error'}"
                     + (f": {detail}" if detail else ""),
                     hints.get(code, "see Dex's log for the reason"))


def _token_set(body: dict[str, Any], nonce: str | None) -> TokenSet:
    return TokenSet(id_token=str(body["id_token"]), refresh_token=body.get("refresh_token"),
                    nonce=nonce)


def password_grant(http: httpx.Client, provider: Provider, client: Client, username: str,
                   password: str) -> TokenSet:
    if provider.grant_types and "password" not in provider.grant_types:
        raise OIDCError("Dex does not offer the password grant",
                        "set oauth2.passwordConnector in Dex's config (dexkit renders it when "
                        "static users or an LDAP connector are configured)")
    nonce = secrets.token_urlsafe(16)
    form = {**_form_auth(client), "grant_type": "password", "username": username,
            "password": password, "scope": client.scope, "nonce": nonce}
    return _token_set(_token_request(http, provider, form, "password login"), nonce)


def token_exchange(http: httpx.Client, provider: Provider, client: Client, *,
                   subject_token: str, connector_id: str) -> TokenSet:
    """The CI job's ID token for a Dex ID token for ``client`` (scopes included: an audience
    scope narrows it to one cluster)."""
    if provider.grant_types and EXCHANGE_GRANT not in provider.grant_types:
        raise OIDCError("Dex does not offer token exchange",
                        "Dex serves it from v2.38; check oauth2.grantTypes in Dex's config")
    form = {**_form_auth(client), "grant_type": EXCHANGE_GRANT, "connector_id": connector_id,
            "subject_token": subject_token, "subject_token_type": ID_TOKEN_TYPE,
            "requested_token_type": ID_TOKEN_TYPE, "scope": client.scope}
    body = _exchange_request(http, provider, form, connector_id)
    if body.get("issued_token_type") != ID_TOKEN_TYPE or not body.get("access_token"):
        raise OIDCError(f"Dex's token exchange answered a {body.get('issued_token_type')!r}, "
                        "not an ID token", "report this with Dex's version")
    return TokenSet(id_token=str(body["access_token"]), refresh_token=None)


def _exchange_request(http: httpx.Client, provider: Provider, form: dict[str, str],
                      connector_id: str) -> dict[str, Any]:
    # Dex verifies the subject token against the connector's issuer while it answers: on the
    # connector's first use it fetches that issuer's discovery document and keys (through the
    # cluster's DNS), which took more than the 10 s read time-out once on kind (CI).
    status, body = _post(http, provider, form, "token exchange",
                         read_timeout=EXCHANGE_READ_TIMEOUT)
    if status == 200 and isinstance(body, dict):
        return body
    code = body.get("error", "") if isinstance(body, dict) else ""
    if code == "access_denied":
        # Dex says no more (its log has the reason): the connector's verification failed.
        raise OIDCError(f"Dex's connector '{connector_id}' refused the CI job's token: its "
                        "signature, issuer or expiry did not verify against the connector's "
                        "issuer", "read Dex's log ('failed to verify subject token') for which")
    if code == "invalid_request" and "connector" in str(body.get("error_description", "")):
        raise OIDCError(f"Dex has no connector '{connector_id}' that takes token exchanges",
                        "name the tokenExchange connector of dexkit.yaml (--connector-id), "
                        "and re-deploy Dex after adding it")
    raise token_error("token exchange", status, body)


def client_credentials(http: httpx.Client, provider: Provider, client: Client) -> TokenSet:
    """A token for ``client`` itself, no user involved."""
    if provider.grant_types and CLIENT_CREDENTIALS_GRANT not in provider.grant_types:
        raise OIDCError(f"Dex at {provider.issuer} does not offer the client_credentials grant "
                        f"(it offers: {', '.join(provider.grant_types)})",
                        CLIENT_CREDENTIALS_HINT)
    form = {**_form_auth(client), "grant_type": CLIENT_CREDENTIALS_GRANT,
            "scope": client.scope}
    return _token_set(_token_request(http, provider, form, "client_credentials login"), None)


def refresh(http: httpx.Client, provider: Provider, client: Client,
            refresh_token: str) -> TokenSet:
    form = {**_form_auth(client), "grant_type": "refresh_token",
            "refresh_token": refresh_token, "scope": client.scope}
    # An answer lost with its connection (a Dex Pod killed while it answered) is asked for
    # again at once, with the same token. Dex rotates refresh tokens and may have stored the
    # successor before it died; it takes the previous token again within
    # expiry.refreshTokens.reuseInterval (3 s by default) and answers with the current one,
    # nothing rotated twice (server/refreshhandlers.go). Not resent, the session was lost:
    # the cache kept a token Dex had already replaced. Outside the interval, or with reuse
    # off, Dex refuses it as it would have refused the next call.
    body = _token_request(http, provider, form, "token refresh", resend_if_answer_lost=True)
    # Dex rotates refresh tokens by default: keep the new one, or the old one if none came.
    return TokenSet(id_token=str(body["id_token"]),
                    refresh_token=body.get("refresh_token") or refresh_token)


# --- PKCE and the loopback callback ---------------------------------------------------------


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) per RFC 7636: 43+ characters of unreserved alphabet."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class _Callback:
    state: str
    code: str | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class LoopbackServer:
    """Receives exactly one good redirect on the first free loopback address of ``listen``.

    Bound to a loopback address only: nothing off this machine can deliver a code. The
    redirect URI is ``redirect_url`` when given (kubelogin's ``--oidc-redirect-url``; its
    path is where the callback is served), else ``http://127.0.0.1:<port>/callback``
    (dexkit's) or ``http://localhost:<port>`` (kubelogin's, ``style="kubelogin"``). A callback
    with a wrong ``state`` is answered 400 and ignored (it may be a CSRF attempt), so the
    real one can still arrive.
    """

    def __init__(self, state: str, listen: tuple[tuple[str, int], ...],
                 redirect_url: str | None = None, style: str = "dexkit") -> None:
        self.result = _Callback(state=state)
        self.path = (urlsplit(redirect_url).path or "/") if redirect_url else (
            "/" if style == "kubelogin" else "/callback")
        self.server = self._bind(listen)
        self.port = int(self.server.server_address[1])
        host = "localhost" if style == "kubelogin" else "127.0.0.1"
        self.redirect_uri = redirect_url or (
            f"http://{host}:{self.port}" if style == "kubelogin"
            else f"http://{host}:{self.port}/callback")

    def _bind(self, listen: tuple[tuple[str, int], ...]) -> HTTPServer:
        # Imported here: http.server (and the email parser it brings, ~25 modules) is ~20 ms
        # that only the browser login needs, not the password grant of every 'dexkit verify'.
        from http.server import BaseHTTPRequestHandler, HTTPServer  # noqa: PLC0415

        result, path = self.result, self.path

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if (parts.path or "/") != path:
                    self._reply(404, "not found")
                    return
                if not secrets.compare_digest(query.get("state", ""), result.state):
                    self._reply(400, "state mismatch: this login was not started here")
                    return
                result.code, result.error = query.get("code"), query.get("error")
                if result.error:
                    result.error += f": {query.get('error_description', '')}"
                self._reply(200, "Logged in. You can close this window and go back to the "
                                 "terminal." if result.code else "Login failed.")
                result.done.set()

            def _reply(self, status: int, text: str) -> None:
                body = f"<!doctype html><title>dexkit</title><p>{text}</p>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the query carries the authorization code."""

        last: OSError | None = None
        for host, port in listen:
            server_class = _ipv6_server() if ":" in host else HTTPServer
            try:
                return server_class((host, port), Handler)
            except OSError as exc:
                last = exc
        where = ", ".join(f"{h}:{p}" for h, p in listen)
        raise OIDCError(f"cannot listen on {where}: {last}",
                        "free one of the ports, or pass --listen-address 127.0.0.1:PORT")

    def wait(self, timeout: float) -> str:
        thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                  daemon=True)
        thread.start()
        try:
            if not self.result.done.wait(timeout):
                raise OIDCError(f"no login callback within {int(timeout)} s (the login was "
                                "abandoned or refused in the browser)",
                                "log in again; on a host without a browser use --grant device "
                                "or --grant authcode-keyboard")
        finally:
            self.server.shutdown()
            self.server.server_close()
        if self.result.error or not self.result.code:
            raise OIDCError(f"login failed: {self.result.error or 'no code'}",
                            "check the user and the connector in Dex's log")
        return self.result.code


def _ipv6_server() -> type[HTTPServer]:
    # http.server (~20 ms with the email parser) only for the browser login, as in _bind.
    from http.server import HTTPServer  # noqa: PLC0415

    class _IPv6Server(HTTPServer):
        address_family = socket.AF_INET6

    return _IPv6Server


def _auth_url(provider: Provider, client: Client, redirect_uri: str, state: str, nonce: str,
              challenge: str, extra: tuple[tuple[str, str], ...]) -> str:
    params = {
        "response_type": "code", "client_id": client.id, "redirect_uri": redirect_uri,
        "scope": client.scope, "state": state, "nonce": nonce,
        "code_challenge": challenge, "code_challenge_method": "S256",
    }
    for name, value in extra:
        if name not in params:  # the protocol's own parameters are never overridden
            params[name] = value
    return f"{provider.authorization_endpoint}?{urlencode(params)}"


def authorization_code(http: httpx.Client, provider: Provider, client: Client, *,
                       listen: tuple[tuple[str, int], ...], open_url: Callable[[str], None],
                       timeout: float = 180, redirect_url: str | None = None,
                       style: str = "dexkit",
                       extra_params: tuple[tuple[str, str], ...] = ()) -> TokenSet:
    """Log in through the browser: PKCE S256, state and nonce, loopback redirect."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    server = LoopbackServer(state, listen, redirect_url, style)
    open_url(_auth_url(provider, client, server.redirect_uri, state, nonce, challenge,
                       extra_params))
    code = server.wait(timeout)
    return exchange_code(http, provider, client, code, server.redirect_uri, verifier, nonce)


def exchange_code(http: httpx.Client, provider: Provider, client: Client, code: str,
                  redirect_uri: str, verifier: str, nonce: str) -> TokenSet:
    form = {**_form_auth(client), "grant_type": "authorization_code", "code": code,
            "redirect_uri": redirect_uri, "code_verifier": verifier}
    return _token_set(_token_request(http, provider, form, "code exchange"), nonce)


def authorization_code_keyboard(http: httpx.Client, provider: Provider, client: Client, *,
                                show_url: Callable[[str], None], read_code: Callable[[], str],
                                redirect_url: str = "urn:ietf:wg:oauth:2.0:oob",
                                extra_params: tuple[tuple[str, str], ...] = ()) -> TokenSet:
    """The keyboard flow: Dex shows the code on its out-of-band page (``redirect_url``
    ``urn:ietf:wg:oauth:2.0:oob``) and the user types it in; PKCE S256 and nonce as above."""
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    show_url(_auth_url(provider, client, redirect_url, state, nonce, challenge, extra_params))
    code = read_code().strip()
    if not code:
        raise OIDCError("no code was entered", "copy the code Dex shows after the login")
    return exchange_code(http, provider, client, code, redirect_url, verifier, nonce)


# --- device code ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceStart:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: int
    expires_in: int


def device_start(http: httpx.Client, provider: Provider, client: Client) -> DeviceStart:
    # httpx (~45 ms) only when a request is sent: 'dexkit token --help' loads this module.
    import httpx  # noqa: PLC0415

    endpoint = provider.device_authorization_endpoint or provider.issuer + "/device/code"
    try:
        response = send(http, "POST", endpoint, data={"client_id": client.id,
                                                      "client_secret": client.secret,
                                                      "scope": client.scope})
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise OIDCError(f"cannot start a device login at {endpoint}: {exc}",
                        "check that Dex is running") from None
    body = response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else {}
    if response.status_code != 200:
        raise token_error("device login", response.status_code, body)
    return DeviceStart(device_code=body["device_code"], user_code=body["user_code"],
                       verification_uri=body["verification_uri"],
                       verification_uri_complete=body.get("verification_uri_complete"),
                       interval=int(body.get("interval", 5)),
                       expires_in=int(body.get("expires_in", 300)))


def device_poll(http: httpx.Client, provider: Provider, client: Client, start: DeviceStart,
                *, sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> TokenSet:
    """Poll the token endpoint until the user approved, honouring slow_down (RFC 8628 §3.5)."""
    # httpx (~45 ms) only when a request is sent: 'dexkit token --help' loads this module.
    import httpx  # noqa: PLC0415

    interval, deadline = start.interval, clock() + start.expires_in
    form = {**_form_auth(client), "grant_type": DEVICE_GRANT, "device_code": start.device_code}
    while clock() < deadline:
        sleep(interval)
        try:
            response = send(http, "POST", provider.token_endpoint, data=form)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise OIDCError(f"device login polling failed: {exc}", "check Dex") from None
        body = response.json()
        if response.status_code == 200:
            return _token_set(body, None)
        error = body.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        raise token_error("device login", response.status_code, body)
    raise OIDCError("the device code expired before the login was approved", "start again")
