"""oidc/session.py and oidc/flows.py over httpx.MockTransport: grants, refresh, renewal rules.

A small fake issuer (discovery, JWKS, a token endpoint that signs real RS256 ID tokens with
joserfc) stands in for Dex; the real-Dex proofs of the same paths are in tests/e2e. The edges
(terminal, browser, clock, environment) are :class:`dexkit.oidc.session.Edges` fakes.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from dexkit.errors import LoginRequired, OIDCError, UsageError
from dexkit.oidc import flows
from dexkit.oidc.session import Edges, login, obtain
from dexkit.oidc.settings import build_settings

ISSUER = "https://dex.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})


class FakeIssuer:
    """Discovery, JWKS and a token endpoint; records every token request's form."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.refresh_ok = True
        self.device_pending = 1
        self.now = int(time.time())

    def id_token(self, nonce: str | None, sub: str = "alice") -> str:
        claims: dict[str, Any] = {"iss": ISSUER, "aud": "kubernetes", "sub": sub,
                                  "email": f"{sub}@example.com", "iat": self.now,
                                  "exp": self.now + 3600}
        if nonce:
            claims["nonce"] = nonce
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, KEY)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={
                "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/keys",
                "device_authorization_endpoint": f"{ISSUER}/device/code",
                "grant_types_supported": ["authorization_code", "refresh_token", "password",
                                          "urn:ietf:params:oauth:grant-type:device_code"]})
        if path == "/keys":
            return httpx.Response(200, json=KeySet([KEY]).as_dict(private=False))
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        if path == "/device/code":
            return httpx.Response(200, json={
                "device_code": "dev-1", "user_code": "ABCD-EFGH",
                "verification_uri": f"{ISSUER}/device", "interval": 1, "expires_in": 60})
        grant = form.get("grant_type")
        if grant == "password":
            if form["password"] != "right":
                return httpx.Response(401, json={"error": "invalid_grant"})
            return self._tokens(form.get("nonce"), form["username"].split("@")[0])
        if grant == "refresh_token":
            if not self.refresh_ok:
                return httpx.Response(400, json={"error": "invalid_request"})
            return self._tokens(None, refresh="rotated")
        if grant == flows.DEVICE_GRANT:
            if self.device_pending:
                self.device_pending -= 1
                return httpx.Response(400, json={"error": "authorization_pending"})
            return self._tokens(None)
        if grant == "authorization_code":
            return self._tokens(self.pending_nonce)
        return httpx.Response(400, json={"error": "unsupported_grant_type"})

    pending_nonce: str | None = None

    def _tokens(self, nonce: str | None, sub: str = "alice",
                refresh: str = "r-1") -> httpx.Response:
        return httpx.Response(200, json={"id_token": self.id_token(nonce, sub),
                                         "refresh_token": refresh, "token_type": "bearer"})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer()


def settings_for(tmp_path: Path, *args: str) -> Any:
    return build_settings(["--issuer", ISSUER, "--client-id", "kubernetes",
                           "--token-cache-dir", str(tmp_path / "cache"), *args], environ={})


def edges(said: list[str] | None = None, **kw: Any) -> Edges:
    out = said if said is not None else []
    return Edges(environ=kw.pop("environ", {}), say=out.append, **kw)


def test_password_grant_login_is_verified_and_cached(issuer: FakeIssuer, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "--grant", "password", "--username", "bob@example.com")
    result = login(settings, http=issuer.client(),
                   edges=edges(environ={"DEXKIT_PASSWORD": "right"}))
    assert result.claims["sub"] == "bob"
    assert issuer.forms[0]["nonce"] == result.claims["nonce"]
    assert issuer.forms[0]["scope"].split() == list(settings.scopes)
    entry = obtain(settings, interactive=False, http=issuer.client(), edges=edges())
    assert entry["id_token"] == result.tokens.id_token
    assert len(issuer.forms) == 1, "the cached entry answered; no second login"


def test_wrong_password_is_dexs_refusal(issuer: FakeIssuer, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "--grant", "password", "--username", "bob@example.com")
    with pytest.raises(OIDCError, match="invalid_grant"):
        login(settings, http=issuer.client(), edges=edges(environ={"DEXKIT_PASSWORD": "no"}))
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.token"))


def test_password_order_file_beats_environment_beats_project(issuer: FakeIssuer,
                                                              tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("right\n")
    settings = settings_for(tmp_path, "--grant", "password", "--username", "bob@example.com",
                            "--password-file", str(secret))
    assert settings.password({"DEXKIT_PASSWORD": "env"}, may_prompt=False) == "right"
    no_file = settings_for(tmp_path, "--grant", "password", "--username", "bob@example.com")
    assert no_file.password({"DEXKIT_PASSWORD": "env"}, may_prompt=False) == "env"
    argument = settings_for(tmp_path, "--grant", "password", "--username", "bob@example.com",
                            "--password", "s3cr3t-arg", "--password-file", str(secret))
    assert argument.password({}, may_prompt=False) == "s3cr3t-arg"
    assert argument.warnings and "every user of this machine" in argument.warnings[0]
    assert "s3cr3t-arg" not in repr(argument)


def test_no_password_non_interactive_says_where_to_put_it(issuer: FakeIssuer,
                                                          tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "--grant", "password", "--username", "bob@example.com")
    with pytest.raises(LoginRequired, match=r"no password for bob@example\.com") as info:
        obtain(settings, interactive=False, http=issuer.client(), edges=edges())
    assert "DEXKIT_PASSWORD" in info.value.hint


def test_expired_entry_is_refreshed_and_the_rotated_token_kept(issuer: FakeIssuer,
                                                               tmp_path: Path) -> None:
    from dexkit.oidc.cache import TokenCache

    settings = settings_for(tmp_path)
    cache = TokenCache(settings.cache_dir)
    cache.store(settings.cache_key, {"id_token": "old.token.x", "refresh_token": "r-0",
                                     "expiry": int(time.time()) + 30})
    entry = obtain(settings, interactive=False, http=issuer.client(), edges=edges())
    assert issuer.forms[0]["grant_type"] == "refresh_token"
    assert issuer.forms[0]["refresh_token"] == "r-0"
    assert entry["refresh_token"] == "rotated"
    assert cache.load(settings.cache_key) == entry


def test_force_refresh_refreshes_a_valid_token(issuer: FakeIssuer, tmp_path: Path) -> None:
    from dexkit.oidc.cache import TokenCache

    settings = settings_for(tmp_path, "--force-refresh")
    TokenCache(settings.cache_dir).store(settings.cache_key, {
        "id_token": "still.valid.x", "refresh_token": "r-0", "expiry": int(time.time()) + 3000})
    entry = obtain(settings, interactive=False, http=issuer.client(), edges=edges())
    assert [f["grant_type"] for f in issuer.forms] == ["refresh_token"]
    assert entry["id_token"] != "still.valid.x"


def test_refused_refresh_falls_back_to_a_login_and_says_so(
        issuer: FakeIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dexkit.oidc.cache import TokenCache

    issuer.refresh_ok = False
    settings = settings_for(tmp_path, "--grant", "device", "--skip-open-browser")
    TokenCache(settings.cache_dir).store(settings.cache_key, {
        "id_token": "x.y.z", "refresh_token": "revoked", "expiry": 1})
    said: list[str] = []
    flows_sleep: list[float] = []
    original = flows.device_poll

    def quick_poll(*args: Any, **kw: Any) -> flows.TokenSet:
        return original(*args, sleep=flows_sleep.append, **kw)

    monkeypatch.setattr(flows, "device_poll", quick_poll)
    entry = obtain(settings, interactive=False, http=issuer.client(), edges=edges(said))
    assert any("refresh was refused" in line for line in said)
    assert any("enter the code ABCD-EFGH" in line for line in said)
    assert flows_sleep == [1, 1], "polled at the issuer's interval until approved"
    assert entry["id_token"].count(".") == 2


def test_device_slow_down_adds_five_seconds(issuer: FakeIssuer) -> None:
    answers = iter([{"error": "slow_down"}, {"error": "authorization_pending"}])
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = next(answers, None)
        if body is None:
            return httpx.Response(200, json={"id_token": issuer.id_token(None)})
        return httpx.Response(400, json=body)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    provider = flows_provider()
    start = flows.DeviceStart("d", "U", "https://dex.test/device", None, 2, 60)
    flows.device_poll(http, provider, flows.Client("kubernetes"), start, sleep=slept.append)
    assert slept == [2, 7, 7]


def flows_provider() -> Any:
    from dexkit.oidc.discovery import Provider

    return Provider(issuer=ISSUER, authorization_endpoint=f"{ISSUER}/auth",
                    token_endpoint=f"{ISSUER}/token", jwks_uri=f"{ISSUER}/keys")


def test_keyboard_flow_needs_a_terminal_when_kubectl_has_none(issuer: FakeIssuer,
                                                              tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "--grant", "authcode-keyboard")
    with pytest.raises(LoginRequired) as info:
        obtain(settings, interactive=False, http=issuer.client(), edges=edges())
    assert "dexkit login --issuer https://dex.test" in info.value.hint


def test_keyboard_flow_sends_the_oob_redirect_and_pkce(issuer: FakeIssuer,
                                                       tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "--grant", "authcode-keyboard",
                            "--oidc-auth-request-extra-params", "ttl=60")
    shown: list[str] = []

    def read(prompt: str) -> str:
        url = next(line for line in shown if "/auth?" in line).split()[-1]
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert query["redirect_uri"] == "urn:ietf:wg:oauth:2.0:oob"
        assert query["code_challenge_method"] == "S256" and query["ttl"] == "60"
        issuer.pending_nonce = query["nonce"]
        return "the-code\n"

    result = login(settings, http=issuer.client(), edges=edges(shown, read_line=read))
    exchange = issuer.forms[-1]
    assert exchange["code"] == "the-code" and len(exchange["code_verifier"]) >= 43
    assert exchange["redirect_uri"] == "urn:ietf:wg:oauth:2.0:oob"
    assert result.claims["nonce"] == issuer.pending_nonce


def test_authcode_through_the_loopback_with_a_browser_command(issuer: FakeIssuer,
                                                              tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = settings_for(tmp_path, "--listen-address", f"127.0.0.1:{port}",
                            "--oidc-redirect-url", f"http://localhost:{port}/cb",
                            "--browser-command", "my-browser")
    opened: list[tuple[str, str | None]] = []

    def browser(url: str, command: str | None) -> None:
        opened.append((url, command))
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        issuer.pending_nonce = query["nonce"]
        threading.Thread(target=lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{port}/cb?code=c-1&state={query['state']}", timeout=5).read(),
            daemon=True).start()

    result = login(settings, http=issuer.client(), edges=edges(open_browser=browser))
    assert opened[0][1] == "my-browser"
    assert parse_qs(urlsplit(opened[0][0]).query)["redirect_uri"] == [
        f"http://localhost:{port}/cb"]
    assert issuer.forms[-1]["code"] == "c-1"
    assert result.claims["nonce"] == issuer.pending_nonce


def test_authcode_non_interactive_without_a_browser_fails_fast(issuer: FakeIssuer,
                                                                tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    started = time.monotonic()
    with pytest.raises(LoginRequired, match="no browser can be opened"):
        obtain(settings, interactive=False, http=issuer.client(),
               edges=edges(can_open_browser=lambda environ: False))
    assert time.monotonic() - started < 5


def test_kubelogin_style_defaults(tmp_path: Path) -> None:
    settings = build_settings(["--oidc-issuer-url=https://dex.test", "--oidc-client-id=k",
                               "--username=u"], environ={})
    assert settings.grant.value == "password"  # kubelogin's auto: a username means password
    assert settings.redirect_style == "kubelogin"
    extra = build_settings(["--issuer", ISSUER, "--client-id", "k", "--oidc-extra-scope",
                            "a,b", "--oidc-extra-scope=openid"], environ={})
    assert extra.scopes[-2:] == ("a", "b") and extra.scopes.count("openid") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--listen-address", "0.0.0.0:8000"], "loopback address only"),
    (["--grant-type", "implicit"], "unknown grant"),
    (["--token-cache-storage", "cloud"], "unknown token cache storage"),
    (["--authentication-timeout-sec", "0"], "positive number"),
    (["--certificate-authority-data", "@@"], "not base64"),
    (["--oidc-use-access-token"], "not supported by dexkit"),
    (["--client-secret-env", "NOPE"], "NOPE is not set"),
])
def test_bad_settings_are_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_settings(["--issuer", ISSUER, "--client-id", "k", *args], environ={})


def test_the_project_paths_settings_use_are_the_projects(tmp_path: Path) -> None:
    from dexkit.config import load_config
    from dexkit.oidc.settings import project_ca, stored_password
    from dexkit.project import InitRequest, init_project, password_file, tls_paths

    init_project(InitRequest(directory=tmp_path, connector="static"))
    config = load_config(tmp_path).config
    assert project_ca(tmp_path, config) == tls_paths(tmp_path, config).ca
    assert stored_password(tmp_path, "a@b.c") == password_file(tmp_path, "a@b.c")


def test_an_issuer_difference_a_url_parser_cannot_read_is_named_not_raised() -> None:
    """Found reading the code (issue 20): a discovery document whose issuer has a port that
    does not parse crashed the explanation instead of becoming it."""
    from dexkit.oidc.discovery import explain_difference

    assert explain_difference("https://h:1", "https://h:1:2") == \
        "the port of 'https://h:1:2' cannot be read"
    assert explain_difference("https://h:1", "https://h:2") == "the port differs ('1' vs '2')"


def test_verify_logs_in_without_asking_for_a_refresh_token(issuer: FakeIssuer,
                                                           tmp_path: Path) -> None:
    # Dex keeps one refresh token per user and client: a new one revokes the one kubectl's
    # cache holds. verify (and doctor --login, the sandbox's probe) only look.
    from dexkit import verify
    from dexkit.kube import Target
    from dexkit.oidc.discovery import discover

    settings = settings_for(tmp_path, "--grant", "password", "--username", "alice@example.com",
                            "--password", "right")
    assert "offline_access" in settings.scopes
    http = issuer.client()
    state = verify._State(verify.VerifyRequest(config=None, project_dir=tmp_path,  # type: ignore[arg-type]
                                               target=Target(), login=settings))
    state.http, state.provider = http, discover(http, ISSUER)
    verify.step_login(state)
    assert issuer.forms[-1]["scope"] == "openid email groups profile"
    assert settings.looking_only().scopes == ("openid", "email", "groups", "profile")
