"""A connection refused or reset before the request went out is tried again for a few seconds
(a Dex Pod that just died, still in kube-proxy's rules); a TLS failure, or any other error, is
not. The real node proves it with a Dex container killed under 20 kubectl calls
(tests/e2e/test_node_faults.py)."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import parse_qsl

import httpx
import pytest

from dexkit.errors import OIDCError
from dexkit.oidc import discovery, flows


@pytest.fixture(autouse=True)
def closed_window() -> None:
    """Each test starts with the process's retry window closed."""
    discovery._window.deadline = None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _failing(cause: BaseException, times: int) -> httpx.Client:
    """A client whose first ``times`` requests fail to connect because of ``cause``."""
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) <= times:
            raise httpx.ConnectError("connect failed", request=request) from cause
        return httpx.Response(200, json={"issuer": "x"})
    return httpx.Client(transport=httpx.MockTransport(handle))


def test_a_refused_connection_is_tried_again_and_the_request_goes_out_once() -> None:
    clock = Clock()
    client = _failing(ConnectionRefusedError(111, "Connection refused"), times=3)
    answer = discovery.send(client, "POST", "https://dex.example.com/token",
                            data={"grant_type": "refresh_token"}, clock=clock,
                            sleep=clock.sleep)
    assert answer.status_code == 200
    assert clock.sleeps == [0.1, 0.2, 0.4]


def test_a_reset_during_the_handshake_is_tried_again() -> None:
    clock = Clock()
    client = _failing(ConnectionResetError(104, "Connection reset by peer"), times=1)
    assert discovery.send(client, "GET", "https://x/", clock=clock,
                          sleep=clock.sleep).status_code == 200


def test_a_dex_that_stays_down_is_said_after_the_retry_window() -> None:
    clock = Clock()
    client = _failing(ConnectionRefusedError(111, "Connection refused"), times=1000)
    with pytest.raises(httpx.ConnectError):
        discovery.send(client, "GET", "https://x/", clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(discovery.CONNECT_RETRY)
    assert max(clock.sleeps) == 0.5


@pytest.mark.parametrize("cause", [
    ssl.SSLCertVerificationError(1, "certificate verify failed"),
    socket.gaierror(-2, "Name or service not known"),
    TimeoutError("timed out"),
])
def test_other_connection_failures_are_said_at_once(cause: BaseException) -> None:
    clock = Clock()
    with pytest.raises(httpx.ConnectError):
        discovery.send(_failing(cause, times=1), "GET", "https://x/", clock=clock,
                       sleep=clock.sleep)
    assert clock.sleeps == []


def test_a_real_refusal_is_recognised_through_httpx() -> None:
    # A loopback port nobody listens on: httpx's own exception chain, not a fake's.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = Clock()
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        discovery.send(client, "GET", f"http://127.0.0.1:{port}/", clock=clock,
                       sleep=clock.sleep)
    assert clock.sleeps, "the refusal was not tried again"


def test_a_reset_after_the_request_went_out_is_not_tried_again() -> None:
    # Dex may have redeemed what was sent before the connection broke: send() never sends it
    # again (only flows.refresh does, once, below).
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise httpx.ReadError("reset", request=request) from ConnectionResetError(104, "reset")

    clock = Clock()
    client = httpx.Client(transport=httpx.MockTransport(handle))
    with pytest.raises(httpx.ReadError):
        discovery.send(client, "POST", "https://x/token", data={"grant_type": "refresh_token"},
                       clock=clock, sleep=clock.sleep)
    assert len(sent) == 1 and clock.sleeps == []


def test_one_window_per_command_while_dex_stays_down() -> None:
    # A refresh refused for the whole window, then the login's discovery: said at once, not
    # after a second window. An answer closes the window for the next refusal.
    clock = Clock()
    down = _failing(ConnectionRefusedError(111, "Connection refused"), times=1000)
    with pytest.raises(httpx.ConnectError):
        discovery.send(down, "POST", "https://x/token", clock=clock, sleep=clock.sleep)
    waited = clock.now
    with pytest.raises(httpx.ConnectError):
        discovery.send(down, "GET", "https://x/.well-known/openid-configuration", clock=clock,
                       sleep=clock.sleep)
    assert clock.now == waited == pytest.approx(discovery.CONNECT_RETRY)
    back = _failing(ConnectionRefusedError(111, "Connection refused"), times=0)
    assert discovery.send(back, "GET", "https://x/", clock=clock,
                          sleep=clock.sleep).status_code == 200
    again = _failing(ConnectionRefusedError(111, "Connection refused"), times=2)
    assert discovery.send(again, "GET", "https://x/", clock=clock,
                          sleep=clock.sleep).status_code == 200
    assert clock.now == pytest.approx(waited + 0.3)


# --- an answer lost after the request went out ----------------------------------------------

PROVIDER = discovery.Provider(issuer="https://dex.test",
                              authorization_endpoint="https://dex.test/auth",
                              token_endpoint="https://dex.test/token",
                              jwks_uri="https://dex.test/keys")


def _losing(lost: type[httpx.TransportError], times: int) -> tuple[httpx.Client,
                                                                   list[dict[str, str]]]:
    """A token endpoint that takes each request and loses the answer ``times`` times."""
    seen: list[dict[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(dict(parse_qsl(request.content.decode())))
        if len(seen) <= times:
            raise lost("Server disconnected without sending a response.", request=request)
        return httpx.Response(200, json={"id_token": "id-2", "refresh_token": "refresh-2"})
    return httpx.Client(transport=httpx.MockTransport(handle)), seen


@pytest.mark.parametrize("lost", [httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError])
def test_a_refresh_whose_answer_was_lost_is_asked_for_once_more_with_the_same_token(
        lost: type[httpx.TransportError]) -> None:
    # Dex takes the previous refresh token again within its reuse interval and answers with
    # the one it stored before the answer was lost: the session survives a Dex Pod's death.
    client, seen = _losing(lost, times=1)
    tokens = flows.refresh(client, PROVIDER, flows.Client("kubernetes"), "refresh-1")
    assert tokens == flows.TokenSet("id-2", "refresh-2")
    assert [s["refresh_token"] for s in seen] == ["refresh-1", "refresh-1"]


def test_a_second_lost_answer_is_said_not_sent_again() -> None:
    client, seen = _losing(httpx.RemoteProtocolError, times=2)
    with pytest.raises(OIDCError) as info:
        flows.refresh(client, PROVIDER, flows.Client("kubernetes"), "refresh-1")
    assert info.value.message == ("token refresh: the connection to https://dex.test/token "
                                  "broke before Dex answered")
    assert len(seen) == 2


def test_a_login_whose_answer_was_lost_is_not_sent_again() -> None:
    # A password, a code or a device code: nothing Dex takes twice; said at once.
    client, seen = _losing(httpx.RemoteProtocolError, times=1)
    with pytest.raises(OIDCError):
        flows.password_grant(client, PROVIDER, flows.Client("kubernetes"), "alice", "secret")
    assert len(seen) == 1
