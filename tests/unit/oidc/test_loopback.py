"""The loopback callback server: 127.0.0.1 only, one good callback, wrong state refused."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request

import pytest

from dexkit.errors import OIDCError
from dexkit.oidc.flows import LoopbackServer, pkce_pair


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_wrong_state_is_refused_and_the_good_callback_still_wins() -> None:
    server = LoopbackServer("good-state", (("127.0.0.1", _free_port()),))
    base = server.redirect_uri
    statuses: list[int] = []

    def browser() -> None:
        statuses.append(_get(f"{base}?code=evil&state=bad-state"))
        statuses.append(_get(f"{base.replace('/callback', '/other')}?code=x&state=good-state"))
        statuses.append(_get(f"{base}?code=the-code&state=good-state"))

    thread = threading.Thread(target=browser)
    thread.start()
    assert server.wait(timeout=10) == "the-code"
    thread.join()
    assert statuses == [400, 404, 200]


def test_listens_on_loopback_only() -> None:
    server = LoopbackServer("s", (("127.0.0.1", _free_port()),))
    try:
        assert server.server.server_address[0] == "127.0.0.1"
        assert server.redirect_uri.startswith("http://127.0.0.1:")
    finally:
        server.server.server_close()


def test_falls_back_to_the_next_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        spare = _free_port()
        server = LoopbackServer("s", (("127.0.0.1", busy), ("127.0.0.1", spare)))
        assert server.port == spare
        server.server.server_close()


def test_times_out_with_advice() -> None:
    server = LoopbackServer("s", (("127.0.0.1", _free_port()),))
    with pytest.raises(OIDCError, match="no login callback") as info:
        server.wait(timeout=0.3)
    assert "--grant device" in info.value.hint


def test_error_callback_is_reported() -> None:
    server = LoopbackServer("s", (("127.0.0.1", _free_port()),))
    thread = threading.Thread(
        target=lambda: _get(f"{server.redirect_uri}?error=access_denied&state=s"))
    thread.start()
    with pytest.raises(OIDCError, match="access_denied"):
        server.wait(timeout=10)
    thread.join()


def test_pkce_pair_is_s256() -> None:
    import base64
    import hashlib

    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert challenge == digest.decode()
