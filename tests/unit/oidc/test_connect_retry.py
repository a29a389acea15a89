"""A connection refused or reset before the request went out is tried again for a few seconds
(a Dex Pod that just died, still in kube-proxy's rules); a TLS failure, or any other error, is
not. The real node proves it with a Dex container killed under 20 kubectl calls
(tests/e2e/test_node_faults.py)."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from dexkit.oidc import discovery


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
    # Dex may have redeemed the refresh token before the connection broke: sending it again
    # would be refused (or, worse, burn the token's successor).
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
