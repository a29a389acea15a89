"""No browser storm (issue 20, item 4): one login at a time per cache entry, callers that wait
for it and take its token, and a pause after a failed browser or device login.

The issuer is the fake of ``test_session_and_flows`` (real RS256 tokens over MockTransport);
the loopback server, the file locks and the cache directory are real; the person at the
browser is a function that calls the loopback like a browser's redirect would; the clock is a
fake where the rules are about time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from dexkit.errors import LoginRequired, OIDCError, UsageError
from dexkit.oidc import attempts, flows
from dexkit.oidc.cache import TokenCache
from dexkit.oidc.session import Edges, login, obtain
from tests.unit.oidc.test_session_and_flows import ISSUER, FakeIssuer, settings_for


class Clock:
    """A clock that only moves when told to (or when a wait sleeps)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Person:
    """The browser: every URL it is given is counted; it then answers the loopback the way
    Dex's redirect would (a code), or with Dex's refusal, or not at all."""

    def __init__(self, issuer: FakeIssuer, answer: str = "code") -> None:
        self.issuer = issuer
        self.answer = answer
        self.opened: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, url: str, command: str | None) -> None:
        with self.lock:
            self.opened.append(url)
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        if self.answer == "none":
            return
        self.issuer.pending_nonce = query["nonce"]
        reply = ("code=c-1" if self.answer == "code"
                 else "error=access_denied&error_description=Approval+rejected")
        target = f"{query['redirect_uri']}?{reply}&state={query['state']}"
        threading.Thread(target=lambda: urllib.request.urlopen(  # noqa: S310 - loopback
            target, timeout=5).read(), daemon=True).start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


@pytest.fixture
def port() -> int:
    return free_port()


def browser_settings(tmp_path: Path, port: int, *args: str) -> Any:
    return settings_for(tmp_path, "--listen-address", f"127.0.0.1:{port}", "--browser-command",
                        "the-test", *args)


def edges_with(person: Person | None = None, clock: Clock | None = None,
               said: list[str] | None = None) -> Edges:
    out = said if said is not None else []
    extra: dict[str, Any] = {}
    if clock is not None:
        extra.update(clock=clock, sleep=clock.sleep)
    if person is not None:
        extra["open_browser"] = person
    return Edges(environ={}, say=out.append, **extra)


@contextlib.contextmanager
def held(path: Path) -> Iterator[None]:
    """Another process's lock on ``path``: an flock on a descriptor of our own, which excludes
    filelock's in this process as it would in another."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def lock_path(settings: Any, suffix: str) -> Path:
    return Path(settings.cache_dir) / f"{settings.cache_key}.{suffix}"


# --- one login at a time, and the others take its token -----------------------------------------


def test_ten_parallel_callers_open_one_page_and_get_its_token(issuer: FakeIssuer,
                                                              tmp_path: Path, port: int) -> None:
    settings = browser_settings(tmp_path, port)
    person = Person(issuer)
    said: list[str] = []
    callers = [in_thread(lambda: obtain(settings, interactive=False, http=issuer.client(),
                                        edges=edges_with(person, said=said)))
               for _ in range(10)]
    for thread, _ in callers:
        thread.join(30)
    results = [out for _, out in callers]
    assert all("value" in out for out in results), [out.get("error") for out in results]
    assert len(person.opened) == 1, "one login page for ten callers"
    assert len({out["value"]["id_token"] for out in results}) == 1, "all ten use its token"
    assert [f["grant_type"] for f in issuer.forms] == ["authorization_code"]
    assert not attempts.record_path(settings.cache_dir, settings.cache_key).exists()


def test_a_valid_token_never_waits_for_a_login_or_a_refresh(issuer: FakeIssuer,
                                                            tmp_path: Path) -> None:
    """A login holds its lock for minutes while it waits for a person: a caller whose
    token is valid answers at once (the keyring's callers have no cached path before this)."""
    settings = settings_for(tmp_path)
    entry = {"id_token": "valid.token.x", "refresh_token": "r-0",
             "expiry": int(time.time()) + 3000}
    TokenCache(settings.cache_dir).store(settings.cache_key, entry)
    with held(lock_path(settings, "login")), held(lock_path(settings, "lock")):
        thread, out = in_thread(lambda: obtain(settings, interactive=False,
                                               http=issuer.client(), edges=edges_with()))
        thread.join(5)
        assert not thread.is_alive(), "the valid token waited for a lock"
    assert out["value"] == entry
    assert issuer.forms == []


def test_a_caller_waits_for_the_login_in_progress_and_takes_the_token_it_stores(
        issuer: FakeIssuer, tmp_path: Path, port: int) -> None:
    settings = browser_settings(tmp_path, port)
    person = Person(issuer)
    said: list[str] = []
    with held(lock_path(settings, "login")):
        thread, out = in_thread(lambda: obtain(settings, interactive=False,
                                               http=issuer.client(),
                                               edges=edges_with(person, said=said)))
        time.sleep(0.6)
        assert thread.is_alive(), "it waits while the other login runs"
        stored = {"id_token": "the.others.token", "refresh_token": "r-9",
                  "expiry": int(time.time()) + 3000}
        TokenCache(settings.cache_dir).store(settings.cache_key, stored)
        thread.join(5)
    assert out.get("value") == stored, out.get("error")
    assert person.opened == [] and issuer.forms == []
    assert said == ["dexkit: another login for this user is in progress; waiting up to 210 s "
                    "for it"]


def test_the_wait_is_bounded_by_the_authentication_timeout(issuer: FakeIssuer,
                                                           tmp_path: Path, port: int) -> None:
    settings = browser_settings(tmp_path, port, "--authentication-timeout-sec", "5")
    clock, person = Clock(), Person(issuer)
    started = clock()
    with held(lock_path(settings, "login")), pytest.raises(LoginRequired) as info:
        obtain(settings, interactive=False, http=issuer.client(),
               edges=edges_with(person, clock))
    assert info.value.message == "another login for this user was still in progress after 35 s"
    assert "dexkit login --issuer https://dex.test" in info.value.hint
    assert 35 <= clock() - started < 36
    assert person.opened == []


def test_a_login_whose_holder_died_is_taken_over_by_one_caller(issuer: FakeIssuer,
                                                               tmp_path: Path,
                                                               port: int) -> None:
    """A killed process leaves no record and its flock goes with it: the next caller logs in
    (one page), the others take its token."""
    settings = browser_settings(tmp_path, port)
    person = Person(issuer)
    with held(lock_path(settings, "login")):
        callers = [in_thread(lambda: obtain(settings, interactive=False, http=issuer.client(),
                                            edges=edges_with(person))) for _ in range(3)]
        time.sleep(0.5)
    for thread, _ in callers:
        thread.join(30)
    assert all("value" in out for _, out in callers), [o.get("error") for _, o in callers]
    assert len(person.opened) == 1


# --- the pause after a failed login -------------------------------------------------------------


def test_a_refused_browser_login_pauses_the_next_callers_then_opens_one_page_again(
        issuer: FakeIssuer, tmp_path: Path, port: int) -> None:
    settings = browser_settings(tmp_path, port)
    clock, person = Clock(), Person(issuer, answer="refuse")
    with pytest.raises(OIDCError, match="access_denied"):
        obtain(settings, interactive=False, http=issuer.client(),
               edges=edges_with(person, clock))
    clock.sleep(10)
    for _ in range(9):
        with pytest.raises(LoginRequired) as info:
            obtain(settings, interactive=False, http=issuer.client(),
                   edges=edges_with(person, clock))
    assert info.value.message == ("the last browser login for this user failed or was "
                                  "cancelled 10 s ago; dexkit opens no new one for 50 s")
    assert info.value.hint.startswith("run the command again in 50 s, or log in now: dexkit "
                                      "login --issuer https://dex.test --client-id kubernetes")
    assert len(person.opened) == 1, "no page while the pause lasts"
    clock.sleep(50)
    person.answer = "code"
    entry = obtain(settings, interactive=False, http=issuer.client(),
                   edges=edges_with(person, clock))
    assert entry["id_token"].count(".") == 2
    assert len(person.opened) == 2, "after the pause, one page again"
    assert not attempts.record_path(settings.cache_dir, settings.cache_key).exists()


def test_callers_waiting_for_a_login_that_fails_fail_at_once(issuer: FakeIssuer,
                                                             tmp_path: Path,
                                                             port: int) -> None:
    settings = browser_settings(tmp_path, port)
    person = Person(issuer, answer="refuse")
    callers = [in_thread(lambda: obtain(settings, interactive=False, http=issuer.client(),
                                        edges=edges_with(person))) for _ in range(10)]
    for thread, _ in callers:
        thread.join(30)
    errors = [out["error"] for _, out in callers]
    assert len(person.opened) == 1
    failed = [e for e in errors if not isinstance(e, LoginRequired)]
    paused = [e for e in errors if isinstance(e, LoginRequired)]
    assert len(failed) == 1 and "access_denied" in failed[0].message
    assert len(paused) == 9
    assert all("failed or was cancelled" in e.message for e in paused)


def test_failures_in_a_row_double_the_pause_up_to_an_hour(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    pauses = []
    for _ in range(9):
        failure = attempts.record_failure(tmp_path, "k", "authcode", now, 60)
        pauses.append(failure.pause(60))
        now += failure.pause(60) + 180  # the pause, then a login that times out
    assert pauses == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    later = attempts.record_failure(tmp_path, "k", "authcode", now + 2 * 3600, 60)
    assert later.count == 1, "a failure long after the last pause starts a new row"
    assert attempts.Failure(0, 5, "authcode").pause(0) == 0, "0 turns the pause off"
    assert attempts.Failure(0, 9000, "authcode").pause(7200) == 7200


def test_no_pause_when_the_setting_is_zero(issuer: FakeIssuer, tmp_path: Path,
                                           port: int) -> None:
    settings = browser_settings(tmp_path, port, "--login-retry-after-sec", "0")
    person = Person(issuer, answer="refuse")
    for _ in range(2):
        with pytest.raises(OIDCError, match="access_denied"):
            obtain(settings, interactive=False, http=issuer.client(), edges=edges_with(person))
    assert len(person.opened) == 2


def test_nothing_is_recorded_when_no_page_was_shown(issuer: FakeIssuer, tmp_path: Path,
                                                    port: int) -> None:
    settings = browser_settings(tmp_path, port)
    person = Person(issuer)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        with pytest.raises(OIDCError, match="cannot listen"):
            obtain(settings, interactive=False, http=issuer.client(), edges=edges_with(person))
    no_browser = settings_for(tmp_path, "--listen-address", f"127.0.0.1:{port}")
    with pytest.raises(LoginRequired, match="no browser can be opened"):
        obtain(no_browser, interactive=False, http=issuer.client(),
               edges=Edges(environ={}, say=lambda _: None, can_open_browser=lambda _: False))
    assert person.opened == []
    assert not list(Path(settings.cache_dir).glob("*.failed"))


def test_a_device_login_that_fails_pauses_too(issuer: FakeIssuer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, "--grant", "device", "--skip-open-browser")
    polls: list[int] = []

    def expired(*args: Any, **kw: Any) -> flows.TokenSet:
        polls.append(1)
        raise OIDCError("the device code expired before the login was approved", "start again")

    monkeypatch.setattr(flows, "device_poll", expired)
    clock = Clock()
    with pytest.raises(OIDCError, match="expired"):
        obtain(settings, interactive=False, http=issuer.client(), edges=edges_with(clock=clock))
    with pytest.raises(LoginRequired, match="the last device login for this user failed"):
        obtain(settings, interactive=False, http=issuer.client(), edges=edges_with(clock=clock))
    device_codes = [f for f in issuer.forms if "grant_type" not in f]
    assert len(polls) == 1 and len(device_codes) == 1, "one code shown, none while paused"


def test_password_logins_are_never_paused(issuer: FakeIssuer, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "--grant", "password", "--username", "bob@example.com")
    for _ in range(2):
        with pytest.raises(OIDCError, match="invalid_grant"):
            obtain(settings, interactive=False, http=issuer.client(),
                   edges=Edges(environ={"DEXKIT_PASSWORD": "no"}, say=lambda _: None))
    assert len([f for f in issuer.forms if f.get("grant_type") == "password"]) == 2
    assert not list(Path(settings.cache_dir).glob("*.failed"))


def test_dexkit_login_is_never_paused_and_a_success_ends_the_pause(issuer: FakeIssuer,
                                                                   tmp_path: Path,
                                                                   port: int) -> None:
    settings = browser_settings(tmp_path, port)
    attempts.record_failure(settings.cache_dir, settings.cache_key, "authcode", time.time(), 60)
    person = Person(issuer)
    result = login(settings, http=issuer.client(), edges=edges_with(person))
    assert len(person.opened) == 1
    assert not attempts.record_path(settings.cache_dir, settings.cache_key).exists()
    assert obtain(settings, interactive=False, http=issuer.client(),
                  edges=edges_with(person))["id_token"] == result.tokens.id_token


def test_dexkit_login_runs_beside_a_login_in_progress(issuer: FakeIssuer, tmp_path: Path,
                                                      port: int) -> None:
    """A person who asked to log in is not made to wait for a page another process opened
    somewhere they may not see."""
    settings = browser_settings(tmp_path, port)
    person, said = Person(issuer), list[str]()
    with held(lock_path(settings, "login")):
        login(settings, http=issuer.client(), edges=edges_with(person, said=said))
    assert len(person.opened) == 1
    assert said[0] == ("dexkit: another login for this user is in progress; this one runs "
                       "beside it")


# --- the record ---------------------------------------------------------------------------------


def test_the_record_is_private_and_holds_no_secret(issuer: FakeIssuer, tmp_path: Path,
                                                   port: int) -> None:
    settings = browser_settings(tmp_path, port, "--oidc-client-secret", "s3cret-client")
    person = Person(issuer, answer="refuse")
    with pytest.raises(OIDCError):
        obtain(settings, interactive=False, http=issuer.client(), edges=edges_with(person))
    record = attempts.record_path(settings.cache_dir, settings.cache_key)
    assert record.stat().st_mode & 0o777 == 0o600
    assert Path(settings.cache_dir).stat().st_mode & 0o777 == 0o700
    names = [line.split(" ")[0] for line in record.read_text().splitlines()]
    assert names == ["failed_at", "failures", "grant"]
    state = parse_qs(urlsplit(person.opened[0]).query)["state"][0]
    for secret in ("s3cret-client", state, "c-1"):
        assert secret not in record.read_text()


@pytest.mark.parametrize("damage", ["mode", "link", "garbage", "future", "grant"])
def test_a_record_that_is_not_ours_or_is_damaged_is_ignored(tmp_path: Path,
                                                            damage: str) -> None:
    now = time.time()
    attempts.record_failure(tmp_path, "k", "authcode", now, 60)
    record = attempts.record_path(tmp_path, "k")
    if damage == "mode":
        record.chmod(0o644)
    elif damage == "link":
        target = tmp_path / "elsewhere"
        record.rename(target)
        record.symlink_to(target)
    elif damage == "garbage":
        record.write_bytes(os.urandom(64))
    elif damage == "future":
        record.write_text(f"failed_at {int(now) + 86400}\nfailures 1\ngrant authcode\n")
    else:
        record.write_text(f"failed_at {int(now)}\nfailures 1\ngrant password\n")
    assert attempts.read_failure(tmp_path, "k", now) is None
    attempts.refuse_if_paused(tmp_path, "k", grant="authcode", base=60, now=now,
                              login_command="dexkit login")


# --- settings and the real command --------------------------------------------------------------


def test_login_retry_after_is_a_number_of_seconds(tmp_path: Path) -> None:
    assert settings_for(tmp_path).retry_after == 60
    assert settings_for(tmp_path, "--login-retry-after-sec=5").retry_after == 5
    for bad in ("-1", "1.5", "²", "soon"):
        with pytest.raises(UsageError, match="--login-retry-after-sec"):
            settings_for(tmp_path, "--login-retry-after-sec", bad)


@pytest.mark.parametrize("args", [["--authentication-timeout-sec", "\u00b2"],
                                  ["--listen-address", "127.0.0.1:\u0663"],
                                  ["--listen-port", "\uff18\uff10"]])
def test_numbers_in_other_scripts_are_usage_errors_not_internal_ones(tmp_path: Path,
                                                                     args: list[str]) -> None:
    """str.isdigit() is true for '²' and '٣', which int() refuses: found beside this item."""
    with pytest.raises(UsageError):
        settings_for(tmp_path, *args)


def test_dexkit_token_fails_fast_with_one_error_and_one_hint_and_no_network(
        tmp_path: Path) -> None:
    """The real command in a pause: two lines, exit 1, before any request (dex.test does not
    resolve: a request would fail with another message)."""
    settings = settings_for(tmp_path)
    attempts.record_failure(settings.cache_dir, settings.cache_key, "authcode", time.time(), 60)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_EXEC_INFO", "BROWSER")}
    started = time.monotonic()
    run = subprocess.run([str(Path(sys.executable).with_name("dexkit")), "token", "--issuer",
                          ISSUER, "--client-id", "kubernetes", "--token-cache-dir",
                          str(settings.cache_dir)], env={**env, "DISPLAY": ":0"},
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
                         check=False)
    took = time.monotonic() - started
    assert run.returncode == 1 and run.stdout == ""
    error, hint = run.stderr.splitlines()
    assert re.fullmatch(r"error: the last browser login for this user failed or was cancelled "
                        r"[0-9] s ago; dexkit opens no new one for [56][0-9] s", error), error
    assert hint.startswith("hint: run the command again in ") and "dexkit login --issuer" in hint
    assert took < 10, f"{took:.1f} s"


def test_a_record_that_cannot_be_written_never_hides_the_logins_error(
        issuer: FakeIssuer, tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from dexkit.files import FileError

    def full_disk(*args: Any, **kw: Any) -> attempts.Failure:
        raise FileError("cannot write the record: no space left on device", "free some space")

    monkeypatch.setattr(attempts, "record_failure", full_disk)
    settings = browser_settings(tmp_path, port)
    with pytest.raises(OIDCError, match="access_denied"):
        obtain(settings, interactive=False, http=issuer.client(),
               edges=edges_with(Person(issuer, answer="refuse")))
