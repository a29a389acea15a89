"""Getting a verified token: the use cases behind ``dexkit token`` and ``dexkit login``.

:func:`obtain` is kubectl's plugin after its cheap cached path (``dexkit.oidc.plugin``). Rules:
- A cached token with more than a minute left is the answer, unless ``--force-refresh``; it is
  read without waiting for any lock.
- Else, under the entry's file lock, re-read the cache (another kubectl process may just have
  refreshed) and refresh with the cached refresh token; if Dex refuses it, log in. Not to a
  plain-http issuer without ``--allow-insecure-http``: the refresh token is not sent in clear
  text.
- One login at a time per cache entry, and none opens a page for a while after a browser or
  device login failed: the rules of :mod:`dexkit.oidc.attempts` (callers wait for the login in
  progress and use its token; after a failure they fail at once instead of opening a tab).
- A login runs when its flow needs no terminal (the browser and device flows, the password
  grant with a password from a file or the environment), as kubelogin does, even when
  kubectl says it is not interactive; a flow that must read from the terminal (the keyboard
  flow, a password prompt) runs only when kubectl says it is, and otherwise the error names
  the exact ``dexkit login`` command that fills the cache.
- Every new token is verified (signature, iss, aud, exp, nonce) before it is cached.

:func:`login` always logs in afresh (``dexkit login``), verifies, and stores the tokens under
the same cache key, so kubectl's next ``dexkit token`` answers from the cache. It is never
paused by a failed login, and holds the entry's login lock when it is free (parallel
``dexkit token`` calls then wait for it); when another login holds it, it runs beside that one.

One login, several clusters (``--audience``): each cluster's token is narrowed from one login.
- The login asks for every cluster's audience scope and is kept in its own cache entry (the
  session: its refresh token only, never handed out; its ID token, accepted by every cluster,
  is not kept). A cluster's token is a refresh of that login with only its audience scope (Dex
  lets a refresh ask for fewer scopes, and the refresh token keeps them all), so its aud is
  that cluster and the login client (``azp``), and no other cluster accepts it.
- The cluster's entry is locked, then the session's: always in that order, so two kubectl
  processes for two clusters never wait on each other in a circle.
- Robots (token exchange, client credentials) have no refresh token: each token is asked for
  afresh, with the cluster's audience scope.

Every function takes its edges (the HTTP client, the environment, how to open a URL and read a
code) as arguments; the CLI and the plugin pass the real ones.

Every function takes its edges (the HTTP client, the environment, how to open a URL and read a
code) as arguments; the CLI and the plugin pass the real ones.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dexkit.errors import DexkitError, LoginRequired, OIDCError, UsageError
from dexkit.oidc import attempts, flows, keyring_store
from dexkit.oidc.cache import TokenCache
from dexkit.oidc.discovery import Provider, discover, make_client
from dexkit.oidc.settings import Grant, LoginSettings
from dexkit.oidc.tokens import Expectations, fetch_jwks, verifier_loading, verify_id_token
from dexkit.redact import line

if TYPE_CHECKING:
    import httpx


MIN_VALIDITY = 60

# The session entry's ID token: a marker, never a token (expiry 0 keeps it from being used).
SESSION_MARKER = "login-session"


@dataclass(frozen=True)
class Edges:
    """What a login touches besides HTTP: replaced by fakes in unit tests."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    say: Callable[[str], None] = field(default=lambda text: _say(text))
    read_line: Callable[[str], str] = field(default=lambda prompt: _read_line(prompt))
    open_browser: Callable[[str, str | None], None] = field(
        default=lambda url, command: _open_browser(url, command))
    can_open_browser: Callable[[Mapping[str, str]], bool] = field(
        default=lambda environ: _can_open_browser(environ))
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class LoginResult:
    tokens: flows.TokenSet
    claims: dict[str, Any]
    provider: Provider

    @property
    def entry(self) -> dict[str, Any]:
        """The cache entry these tokens make."""
        return {"id_token": self.tokens.id_token, "refresh_token": self.tokens.refresh_token,
                "expiry": int(self.claims["exp"])}


def http_client(settings: LoginSettings) -> httpx.Client:
    return make_client(None, insecure=settings.insecure, more_files=settings.ca_files,
                       ca_data=settings.ca_data)


def client_of(settings: LoginSettings, *, narrowed: bool = True) -> flows.Client:
    """The client with the scopes of the token handed out (``narrowed``), or of the login."""
    return flows.Client(id=settings.client_id, secret=settings.client_secret,
                        scopes=settings.token_scopes if narrowed else settings.scopes)


def cache_of(settings: LoginSettings, edges: Edges | None = None) -> TokenCache:
    """The settings' cache; keyring storage without a usable backend degrades to disk, with
    one warning."""

    storage = settings.cache_storage.value
    if storage == "keyring":
        reason = keyring_store.available()
        if reason is not None:
            (edges or Edges()).say(f"warning: {reason}; the token cache is kept on disk in "
                                   f"{settings.cache_dir} instead of the keyring")
            storage = "disk"
    return TokenCache(settings.cache_dir, storage)


def fresh(entry: dict[str, Any] | None, now: float) -> bool:
    return bool(entry and entry.get("id_token")
                and float(entry.get("expiry", 0)) - now > MIN_VALIDITY)


def login(settings: LoginSettings, *, http: httpx.Client | None = None,
          edges: Edges | None = None, interactive: bool = True,
          store: bool = True) -> LoginResult:
    """Discover, log in with the settings' grant, verify the ID token, and (``store``) cache it
    where ``dexkit token`` looks for it."""
    edges = edges or Edges()
    _warn(settings, edges)
    client_http = http or http_client(settings)
    if not store:
        return _log_in(settings, client_http, None, edges, interactive)
    cache = cache_of(settings, edges)
    lock = cache.login_lock(settings.cache_key)
    held = attempts.try_take(lock)
    if not held:
        edges.say("dexkit: another login for this user is in progress; this one runs beside it")
    try:
        return _log_in_and_store(settings, cache, client_http, None, edges, interactive,
                                 fresh_login=True)
    finally:
        if held:
            lock.release()


def narrow(settings: LoginSettings, *, http: httpx.Client | None = None,
           edges: Edges | None = None) -> LoginResult:
    """Another cluster's token from the login :func:`login` just kept (no second login:
    refused with the login command when there is no session to narrow)."""
    edges = edges or Edges()
    client_http = http or http_client(settings)
    provider = discover(client_http, settings.issuer)
    cache = cache_of(settings, edges)
    with cache.lock(settings.cache_key):
        tokens = _narrowed(settings, cache, client_http, provider, edges, interactive=False,
                           may_log_in=False)
        result = LoginResult(tokens, verify_for(settings, client_http, provider, tokens,
                                                edges.clock), provider)
        cache.store(settings.cache_key, result.entry)
    return result


def obtain(settings: LoginSettings, *, interactive: bool, http: httpx.Client | None = None,
           edges: Edges | None = None) -> dict[str, Any]:
    """For the kubectl plugin: the cache entry to answer with (see the module's rules)."""
    edges = edges or Edges()
    cache = cache_of(settings, edges)
    key = settings.cache_key
    entry = cache.load(key)  # no lock: entries are replaced whole, and a valid one never waits
    if fresh(entry, edges.clock()) and not settings.force_refresh:
        assert entry is not None
        return entry
    _warn(settings, edges)
    client_http = http
    provider = None
    with cache.lock(key):
        entry = cache.load(key)
        if fresh(entry, edges.clock()) and not settings.force_refresh:
            assert entry is not None
            return entry
        if settings.session_key is not None and not settings.grant.is_robot:
            # One cluster of several: a refresh of the session narrowed to this cluster; when
            # that cannot be had, the login below (one at a time) logs the session in again.
            client_http = client_http or http_client(settings)
            provider = discover(client_http, settings.issuer)
            try:
                narrowed = _narrowed(settings, cache, client_http, provider, edges,
                                     interactive, may_log_in=False)
            except (LoginRequired, OIDCError):
                pass
            else:
                result = LoginResult(narrowed, verify_for(settings, client_http, provider,
                                                          narrowed, edges.clock), provider)
                cache.store(key, result.entry)
                return result.entry
        elif entry and entry.get("refresh_token") and settings.plain_http \
                and not settings.allow_http:
            # the refresh token is a long-lived credential: not sent in clear text unasked
            edges.say(f"warning: the cached refresh token is not sent to {settings.issuer} in "
                      "clear text (pass --allow-insecure-http to allow it); logging in again")
        elif entry and entry.get("refresh_token"):
            client_http = client_http or http_client(settings)
            provider = discover(client_http, settings.issuer)
            try:
                with verifier_loading():
                    tokens = flows.refresh(client_http, provider, client_of(settings),
                                           str(entry["refresh_token"]))
            except OIDCError as exc:
                edges.say(f"dexkit: the refresh was refused ({exc.message}); logging in again")
            else:
                result = LoginResult(tokens, verify_for(settings, client_http, provider, tokens,
                                                        edges.clock), provider)
                cache.store(key, result.entry)
                return result.entry
    stale = entry.get("id_token") if entry else None

    def settled() -> dict[str, Any] | None:
        """A new token another login stored, or a failure's pause (raised)."""
        found = cache.load(key)
        if fresh(found, edges.clock()) and found is not None and found["id_token"] != stale:
            return found
        attempts.refuse_if_paused(settings.cache_dir, key, grant=settings.grant.value,
                                  base=settings.retry_after, now=edges.clock(),
                                  login_command=settings.login_command())
        return None

    def work() -> dict[str, Any]:
        return _log_in_and_store(settings, cache, client_http or http_client(settings),
                                 provider, edges, interactive).entry

    return attempts.in_turn(cache.login_lock(key), work, settled=settled,
                            wait=settings.timeout + attempts.GRACE, clock=edges.clock,
                            sleep=edges.sleep, say=edges.say,
                            login_command=settings.login_command())


def _log_in_and_store(settings: LoginSettings, cache: TokenCache, http: httpx.Client,
                      provider: Provider | None, edges: Edges, interactive: bool, *,
                      fresh_login: bool = False) -> LoginResult:
    """Log in, store the tokens, and clear a failure's record; or record the failure of a
    browser or device login whose page was shown (:mod:`dexkit.oidc.attempts`)."""
    shown: list[bool] = []
    try:
        result = _log_in(settings, http, provider, edges, interactive,
                         on_shown=lambda: shown.append(True), cache=cache,
                         fresh_login=fresh_login)
    except Exception:
        if shown and settings.grant.value in attempts.PAUSED_GRANTS:
            # the login's own error is the one to tell: a record that cannot be written (a
            # full disk) only means no pause
            with contextlib.suppress(DexkitError, OSError):
                attempts.record_failure(settings.cache_dir, settings.cache_key,
                                        settings.grant.value, edges.clock(),
                                        settings.retry_after)
        raise
    with cache.lock(settings.cache_key):
        cache.store(settings.cache_key, result.entry)
    attempts.clear_failure(settings.cache_dir, settings.cache_key)
    return result


def _log_in(settings: LoginSettings, http: httpx.Client, provider: Provider | None,
            edges: Edges, interactive: bool,
            on_shown: Callable[[], None] | None = None, cache: TokenCache | None = None,
            fresh_login: bool = False) -> LoginResult:
    """Discover (unless done), run the settings' grant (for one cluster of several, through
    the session in ``cache``), and verify the ID token."""
    provider = provider or discover(http, settings.issuer)
    if cache is not None and settings.session_key is not None and not settings.grant.is_robot:
        tokens = _narrowed(settings, cache, http, provider, edges, interactive,
                           fresh_login=fresh_login, on_shown=on_shown)
    else:
        tokens = run_grant(settings, http, provider, edges=edges, interactive=interactive,
                           on_shown=on_shown)
    return LoginResult(tokens, verify_for(settings, http, provider, tokens, edges.clock),
                       provider)


def _narrowed(settings: LoginSettings, cache: TokenCache, http: httpx.Client,
              provider: Provider, edges: Edges, interactive: bool, *,
              fresh_login: bool = False, may_log_in: bool = True,
              on_shown: Callable[[], None] | None = None) -> flows.TokenSet:
    """This cluster's token, refreshed from the session with its audience scope only; the
    session is logged in first when it has no refresh token Dex still takes (see the module's
    rules). The cluster's token keeps no refresh token: the session's is the one."""
    key = settings.session_key
    assert key is not None
    narrowed = client_of(settings)
    with cache.lock(key):
        session = None if fresh_login else cache.load(key)
        if session and session.get("refresh_token"):
            try:
                tokens = flows.refresh(http, provider, narrowed, str(session["refresh_token"]))
                _keep_session(cache, key, tokens.refresh_token)
                return flows.TokenSet(tokens.id_token, None)
            except OIDCError as exc:
                if not may_log_in:
                    raise
                edges.say(f"dexkit: the refresh was refused ({exc.message}); logging in again")
        if not may_log_in:
            raise LoginRequired("there is no login to take this cluster's token from",
                                f"log in first: {settings.login_command()}")
        login_tokens = run_grant(settings, http, provider, edges=edges, interactive=interactive,
                                 narrowed=False, on_shown=on_shown)
        # The login's own token (every cluster's audience) is checked, then dropped.
        verify(http, provider, settings.client_id, login_tokens, edges.clock)
        if not login_tokens.refresh_token:
            raise OIDCError("Dex gave the login no refresh token, and every cluster's token is "
                            "a refresh of that one login", "ask for the offline_access scope")
        tokens = flows.refresh(http, provider, narrowed, login_tokens.refresh_token)
        _keep_session(cache, key, tokens.refresh_token or login_tokens.refresh_token)
        return flows.TokenSet(tokens.id_token, None)


def _keep_session(cache: TokenCache, key: str, refresh_token: str | None) -> None:
    if refresh_token:
        cache.store(key, {"id_token": SESSION_MARKER, "refresh_token": refresh_token,
                          "expiry": 0})


def verify_for(settings: LoginSettings, http: httpx.Client, provider: Provider,
               tokens: flows.TokenSet, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """Verify a token of these settings: for one cluster, its aud must hold the cluster and
    its azp be the client that asked (the login client, or the robot)."""
    if settings.audience is None:
        return verify(http, provider, settings.client_id, tokens, clock)
    return verify(http, provider, settings.audience, tokens, clock,
                  authorized_party=settings.client_id)


def _warn(settings: LoginSettings, edges: Edges) -> None:
    for warning in settings.warnings:
        edges.say(f"warning: {warning}")


def verify(http: httpx.Client, provider: Provider, client_id: str, tokens: flows.TokenSet,
           clock: Callable[[], float] = time.time, *,
           authorized_party: str | None = None) -> dict[str, Any]:
    jwks = fetch_jwks(http, provider)
    expect = Expectations(issuer=provider.issuer, client_id=client_id, nonce=tokens.nonce,
                          authorized_party=authorized_party)
    return verify_id_token(tokens.id_token, jwks, expect, int(clock()))


def run_grant(settings: LoginSettings, http: httpx.Client, provider: Provider, *,
              edges: Edges | None = None, interactive: bool = True,
              narrowed: bool = True,
              on_shown: Callable[[], None] | None = None) -> flows.TokenSet:
    """Run the settings' grant once; refuse a flow that needs a terminal when there is none.
    ``narrowed``: with the scopes of the token handed out, else with the login's (several
    clusters: every cluster's audience scope). ``on_shown`` is called when a page or code is
    about to be shown to the person."""
    edges = edges or Edges()
    shown = on_shown or (lambda: None)
    client = client_of(settings, narrowed=narrowed)
    grant = settings.grant
    if grant is Grant.PASSWORD:
        return _password_grant(settings, http, provider, edges, interactive, client)
    if grant is Grant.TOKEN_EXCHANGE:
        # Deferred: only a token exchange reads a subject token (~15 ms, -X importtime).
        from dexkit.oidc.subject import check_subject, read_subject  # noqa: PLC0415

        subject = read_subject(settings, edges.environ)
        check_subject(subject, settings, edges.clock())
        assert settings.connector_id is not None
        with verifier_loading():
            return flows.token_exchange(http, provider, client, subject_token=subject,
                                        connector_id=settings.connector_id)
    if grant is Grant.CLIENT_CREDENTIALS:
        robot = flows.Client(client.id, settings.robot_secret(edges.environ), client.scopes)
        with verifier_loading():
            return flows.client_credentials(http, provider, robot)
    if grant.needs_stdin and not interactive:
        raise LoginRequired("the keyboard login reads the code from a terminal, and kubectl "
                            "runs 'dexkit token' without one",
                            f"log in again in a terminal, which fills the cache kubectl reads: "
                            f"{settings.login_command()}")
    if grant is Grant.DEVICE:
        start = flows.device_start(http, provider, client)
        url = start.verification_uri_complete or start.verification_uri
        shown()
        edges.say(f"To log in, open {start.verification_uri} and enter the code "
                  f"{start.user_code}")
        if settings.open_browser:
            edges.open_browser(url, settings.browser_command)
        return flows.device_poll(http, provider, client, start)
    if grant is Grant.KEYBOARD:
        return flows.authorization_code_keyboard(
            http, provider, client, redirect_url=settings.redirect_url or "",
            extra_params=settings.extra_params,
            show_url=lambda url: edges.say(f"Open this URL in a browser and log in:\n  {url}"),
            read_code=lambda: edges.read_line("Enter code: "))

    if (not interactive and settings.open_browser and not settings.browser_command
            and not edges.can_open_browser(edges.environ)):
        raise LoginRequired("no browser can be opened here (no display, no BROWSER), and "
                            "kubectl runs 'dexkit token' without a terminal",
                            f"log in again where a browser opens, which fills the cache "
                            f"kubectl reads: {settings.login_command()} (or use --grant "
                            "device)")

    def open_url(url: str) -> None:
        shown()
        edges.say(f"Log in at: {url}")
        if settings.open_browser:
            edges.open_browser(url, settings.browser_command)

    return flows.authorization_code(http, provider, client, listen=settings.listen,
                                    open_url=open_url, timeout=settings.timeout,
                                    redirect_url=settings.redirect_url,
                                    style=settings.redirect_style,
                                    extra_params=settings.extra_params)


def _password_grant(settings: LoginSettings, http: httpx.Client, provider: Provider,
                    edges: Edges, interactive: bool, client: flows.Client) -> flows.TokenSet:
    if not settings.username:
        raise UsageError("the password grant needs a username", "pass --username")
    password = settings.password(edges.environ, may_prompt=interactive)
    if password is None:
        raise LoginRequired(f"no password for {settings.username}", settings.password_hint())
    # Dex's bcrypt check of the password is most of this request's time: the ID token's
    # verifier is imported meanwhile (the browser flows import what their loopback server
    # needs as they go, so they do not).
    with verifier_loading():
        return flows.password_grant(http, provider, client, settings.username, password)


def _say(text: str) -> None:
    # console's rule, line by line (a URL to open is meant to stand on a line of its own)
    sys.stderr.write("\n".join(line(part) for part in text.split("\n")) + "\n")
    sys.stderr.flush()


def _can_open_browser(environ: Mapping[str, str]) -> bool:
    """Whether a browser can be shown: on Linux and the BSDs only with a display or BROWSER
    (a server or a CI runner has neither); elsewhere the system opener is always there."""
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return True
    return any(environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"))


def _read_line(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise OIDCError("no code was entered (end of input)",
                        "run the login in a terminal and paste the code Dex shows")
    return line


def _open_browser(url: str, command: str | None) -> None:
    """``--browser-command`` (or $BROWSER) with the URL, else the system's browser. Its output
    never reaches our stdout, which kubectl reads as the credential."""
    # subprocess (~4 ms) and webbrowser (~9 ms) only when a browser is opened.
    import subprocess  # noqa: PLC0415

    chosen = command or os.environ.get("BROWSER", "").split(os.pathsep)[0]
    if not chosen:
        import webbrowser  # noqa: PLC0415

        saved = os.dup(1)
        try:
            os.dup2(2, 1)  # a browser launcher that prints must not corrupt the credential
            webbrowser.open(url)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        return

    try:
        words = shlex.split(chosen)
    except ValueError:
        raise UsageError(f"cannot parse the browser command '{chosen}'",
                         "check --browser-command (or BROWSER)") from None
    argv = [w.replace("%s", url) for w in words] if "%s" in chosen else [*words, url]
    try:
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise OIDCError(f"cannot start the browser command '{words[0]}': {exc.strerror}",
                        "fix --browser-command (or BROWSER), or pass --skip-open-browser and "
                        "open the URL yourself") from None
