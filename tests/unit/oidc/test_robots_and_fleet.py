"""Token exchange, client credentials and one login for several clusters, over a fake Dex
(httpx.MockTransport) that gives a token the audiences its cross-client scopes name, as Dex
does; the GitHub Actions token service over a real local HTTP server standing in for GitHub's.
The real-Dex proofs are tests/e2e/test_robots.py and tests/e2e/test_fleet.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from dexkit.errors import LoginRequired, OIDCError, UsageError
from dexkit.oidc import flows
from dexkit.oidc.options import identity_key, parse
from dexkit.oidc.session import Edges, login, narrow, obtain
from dexkit.oidc.settings import AUDIENCE_SCOPE, build_settings
from dexkit.oidc.subject import check_subject, github_actions_token

ISSUER = "https://dex.test"
CI_ISSUER = "https://ci.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})


def sign(claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, KEY)


def job_token(aud: str = "dexkit-ci", iss: str = CI_ISSUER, exp: float | None = None,
              repo: str = "org/app") -> str:
    now = int(time.time())
    return sign({"iss": iss, "aud": aud, "sub": f"repo:{repo}:ref:refs/heads/main",
                 "iat": now, "exp": int(exp if exp is not None else now + 300)})


class FakeDex:
    """Dex's token endpoint as far as these grants go: aud from audience scopes (plus the
    asking client, which is then azp), refresh tokens keep the login's scopes."""

    def __init__(self, grants: tuple[str, ...] = ("authorization_code", "refresh_token",
                                                  "password", flows.EXCHANGE_GRANT)) -> None:
        self.grants = grants
        self.forms: list[dict[str, str]] = []
        self.refresh_scopes: dict[str, list[str]] = {}

    def token(self, client: str, scopes: list[str], sub: str = "alice",
              nonce: str | None = None) -> str:
        peers = [s.removeprefix(AUDIENCE_SCOPE) for s in scopes if s.startswith(AUDIENCE_SCOPE)]
        aud: Any = client
        claims: dict[str, Any] = {"iss": ISSUER, "sub": sub, "iat": int(time.time()),
                                  "exp": int(time.time()) + 3600}
        if peers:
            aud = [*peers, client] if client not in peers else peers
            claims["azp"] = client
        claims["aud"] = aud
        if "email" in scopes:
            claims["email"] = f"{sub}@example.com"
        if nonce:
            claims["nonce"] = nonce
        return sign(claims)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={
                "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/keys",
                "grant_types_supported": list(self.grants)})
        if request.url.path == "/keys":
            return httpx.Response(200, json=KeySet([KEY]).as_dict(private=False))
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        scopes = form.get("scope", "").split()
        grant = form["grant_type"]
        if grant == "password":
            refresh = f"r{len(self.forms)}"
            self.refresh_scopes[refresh] = scopes
            return httpx.Response(200, json={
                "id_token": self.token(form["client_id"], scopes, nonce=form.get("nonce")),
                "refresh_token": refresh})
        if grant == "refresh_token":
            kept = self.refresh_scopes.pop(form["refresh_token"], None)
            if kept is None or not set(scopes) <= set(kept):
                return httpx.Response(400, json={"error": "invalid_request"})
            refresh = f"r{len(self.forms)}"
            self.refresh_scopes[refresh] = kept  # rotated; the login's scopes stay
            return httpx.Response(200, json={"id_token": self.token(form["client_id"], scopes),
                                             "refresh_token": refresh})
        if grant == flows.EXCHANGE_GRANT:
            assert form["subject_token_type"] == form["requested_token_type"] == \
                flows.ID_TOKEN_TYPE
            if form["connector_id"] != "ci":
                return httpx.Response(400, json={
                    "error": "invalid_request",
                    "error_description": "Requested connector does not exist."})
            return httpx.Response(200, json={
                "access_token": self.token(form["client_id"], scopes, sub="ci-job"),
                "issued_token_type": flows.ID_TOKEN_TYPE, "token_type": "bearer"})
        if grant == "client_credentials":
            if form.get("client_secret") != "robot-secret":
                return httpx.Response(401, json={"error": "invalid_client"})
            return httpx.Response(200, json={
                "id_token": self.token(form["client_id"], scopes, sub="bot"),
                "access_token": "a", "token_type": "bearer"})
        return httpx.Response(400, json={"error": "unsupported_grant_type"})

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))


def settings(tmp_path: Path, *args: str, environ: dict[str, str] | None = None) -> Any:
    return build_settings(["--issuer", ISSUER, "--token-cache-dir", str(tmp_path / "cache"),
                           *args], environ=environ or {})


def fleet_args(audience: str) -> list[str]:
    return ["--client-id", "kubernetes", "--scope", "openid", "--scope", "email",
            "--scope", "offline_access", "--scope", AUDIENCE_SCOPE + "dev",
            "--scope", AUDIENCE_SCOPE + "prod", "--audience", audience]


# --- one login, several clusters ----------------------------------------------------------------


def test_one_login_narrowed_to_each_clusters_audience(tmp_path: Path) -> None:
    dex = FakeDex()
    environ = {"DEXKIT_PASSWORD": "pw"}
    dev = settings(tmp_path, *fleet_args("dev"), "--grant", "password", "--username", "a@b.c",
                   environ=environ)
    prod = settings(tmp_path, *fleet_args("prod"), "--grant", "password", "--username",
                    "a@b.c", environ=environ)
    assert dev.session_key == prod.session_key and dev.cache_key != prod.cache_key
    got = obtain(dev, interactive=False, http=dex.client(), edges=Edges(environ=environ))
    assert sorted(json.loads(_payload(got["id_token"]))["aud"]) == ["dev", "kubernetes"]
    # The login asked for every cluster's audience; the cluster's token only for its own.
    login_form, narrowed = dex.forms[0], dex.forms[1]
    assert {AUDIENCE_SCOPE + "dev", AUDIENCE_SCOPE + "prod"} <= set(login_form["scope"].split())
    assert AUDIENCE_SCOPE + "prod" not in narrowed["scope"].split()
    assert got.get("refresh_token") is None, "the session keeps the one refresh token"
    # prod: no second login, a refresh of the same session.
    other = obtain(prod, interactive=False, http=dex.client(), edges=Edges(environ={}))
    assert json.loads(_payload(other["id_token"]))["aud"] == ["prod", "kubernetes"]
    assert [f["grant_type"] for f in dex.forms] == ["password", "refresh_token",
                                                   "refresh_token"]


def test_narrow_without_a_login_names_the_command(tmp_path: Path) -> None:
    prod = settings(tmp_path, *fleet_args("prod"))
    with pytest.raises(LoginRequired, match="no login to take this cluster's token") as no:
        narrow(prod, http=FakeDex().client(), edges=Edges(environ={}))
    assert no.value.hint.startswith("log in first: dexkit login")


def test_a_token_of_the_login_client_alone_is_not_a_clusters(tmp_path: Path) -> None:
    """aud must hold the cluster and azp be the login client, or the token is refused."""
    dex = FakeDex()
    environ = {"DEXKIT_PASSWORD": "pw"}
    dev = settings(tmp_path, *fleet_args("dev"), "--grant", "password", "--username", "a@b.c",
                   environ=environ)
    original = dex.token
    dex.token = lambda client, scopes, **kw: original(client, [s for s in scopes if not  # type: ignore[method-assign]
                                                              s.startswith(AUDIENCE_SCOPE)], **kw)
    with pytest.raises(OIDCError, match="audience is \\['kubernetes'\\], not the client"):
        login(dev, http=dex.client(), edges=Edges(environ=environ))


def test_audience_scope_is_added_and_keys_differ_only_where_they_should(tmp_path: Path) -> None:
    alone = settings(tmp_path, "--client-id", "kubernetes", "--audience", "dev")
    assert AUDIENCE_SCOPE + "dev" in alone.scopes
    plain = settings(tmp_path, "--client-id", "kubernetes")
    assert plain.session_key is None
    # Existing cache entries keep their names: nothing new is hashed in when unset.
    args = ["--issuer", ISSUER, "--client-id", "kubernetes"]
    assert identity_key(parse(args), {}) == identity_key(parse(args), {"X": "y"})


# --- token exchange -------------------------------------------------------------------------


def exchange_args(*more: str) -> list[str]:
    return ["--client-id", "kubernetes", "--grant", "token-exchange", "--connector-id", "ci",
            "--subject-issuer", CI_ISSUER, "--subject-audience", "dexkit-ci", *more]


def test_token_exchange_sends_the_subject_and_caches_per_subject(tmp_path: Path) -> None:
    dex = FakeDex()
    environ = {"JOB": job_token()}
    s = settings(tmp_path, *exchange_args("--subject-token-env", "JOB"), environ=environ)
    entry = obtain(s, interactive=False, http=dex.client(), edges=Edges(environ=environ))
    form = dex.forms[0]
    assert form["subject_token"] == environ["JOB"] and form["connector_id"] == "ci"
    # The job's mapped claim comes back as the email claim: the email scope stays.
    assert "offline_access" not in form["scope"].split() and "email" in form["scope"].split()
    assert json.loads(_payload(entry["id_token"]))["sub"] == "ci-job"
    # Another job's token (another repository) is another cache entry: a runner that keeps
    # its cache between jobs never answers one job from another's.
    other = {"JOB": job_token(repo="someone/else")}
    second = settings(tmp_path, *exchange_args("--subject-token-env", "JOB"), environ=other)
    assert second.cache_key != s.cache_key
    obtain(second, interactive=False, http=dex.client(), edges=Edges(environ=other))
    assert len(dex.forms) == 2, "a second exchange, not the first job's cached token"
    assert dex.forms[1]["subject_token"] == other["JOB"]


# Tokens are made when the test runs, not at collection: a suite that takes minutes to reach
# this test must not find its "valid" tokens expired.
@pytest.mark.parametrize(("make", "message"), [
    (lambda: job_token(aud="other-service"),
     "is for audience ['other-service'], not 'dexkit-ci'"),
    (lambda: job_token(iss="https://evil.test"),
     "is from issuer 'https://evil.test', which connector 'ci' does not trust"),
    (lambda: job_token(exp=time.time() - 30), "the subject token expired "),
    (lambda: "not-a-jwt", "the subject token is not a JWT"),
])
def test_subject_tokens_are_refused_before_they_are_sent(tmp_path: Path,
                                                         make: Callable[[], str],
                                                         message: str) -> None:
    token = make()
    dex = FakeDex()
    s = settings(tmp_path, *exchange_args("--subject-token-env", "JOB"), environ={})
    with pytest.raises(OIDCError) as refused:
        login(s, http=dex.client(), edges=Edges(environ={"JOB": token}))
    assert message in refused.value.message
    assert [f for f in dex.forms if f.get("grant_type") == flows.EXCHANGE_GRANT] == []
    assert token not in refused.value.message + refused.value.hint


def test_an_unknown_connector_and_a_missing_subject_are_named(tmp_path: Path) -> None:
    s = settings(tmp_path, "--client-id", "kubernetes", "--grant", "token-exchange",
                 "--connector-id", "nope", "--subject-token-env", "JOB")
    with pytest.raises(OIDCError, match="Dex has no connector 'nope' that takes token"):
        login(s, http=FakeDex().client(), edges=Edges(environ={"JOB": job_token()}))
    with pytest.raises(UsageError, match="needs --connector-id"):
        settings(tmp_path, "--client-id", "k", "--grant", "token-exchange")
    none = settings(tmp_path, *exchange_args())
    with pytest.raises(UsageError) as missing:
        login(none, http=FakeDex().client(), edges=Edges(environ={"GITHUB_ACTIONS": "true"}))
    assert "permissions: id-token: write" in missing.value.hint


def test_check_subject_uses_no_leeway(tmp_path: Path) -> None:
    s = settings(tmp_path, *exchange_args("--subject-token-env", "JOB"))
    token = job_token(exp=1000)
    with pytest.raises(OIDCError, match="expired 0 s ago"):
        check_subject(token, s, now=1000)
    assert check_subject(token, s, now=999)["sub"].startswith("repo:")


# --- GitHub Actions' token service (a real local server standing in for GitHub's) ----------------


@pytest.fixture
def actions() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            seen.append((self.headers.get("Authorization", ""),
                         query.get("audience", [""])[0]))
            ok = self.headers.get("Authorization") == "Bearer job-request-token"
            body = json.dumps({"value": job_token(query["audience"][0])} if ok else
                              {"message": "nope"}).encode()
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_job_token_is_fetched_with_the_audience_and_bearer(
        actions: tuple[str, list[tuple[str, str]]], tmp_path: Path) -> None:
    url, seen = actions
    token = github_actions_token(url, "job-request-token", "dexkit-ci")
    assert seen == [("Bearer job-request-token", "dexkit-ci")]
    assert json.loads(_payload(token))["aud"] == "dexkit-ci"
    with pytest.raises(OIDCError, match="answered HTTP 403") as refused:
        github_actions_token(url, "wrong", "dexkit-ci")
    assert "id-token: write" in refused.value.hint
    # Through a token exchange: the job's token is fetched when the grant runs.
    dex = FakeDex()
    environ = {"ACTIONS_ID_TOKEN_REQUEST_URL": url,
               "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "job-request-token"}
    s = settings(tmp_path, *exchange_args(), environ=environ)
    assert s.subject.kind == "github-actions"
    login(s, http=dex.client(), edges=Edges(environ=environ))
    assert seen[-1] == ("Bearer job-request-token", "dexkit-ci")
    assert dex.forms[-1]["subject_token"].count(".") == 2


# --- client credentials ---------------------------------------------------------------------------


def robot_args(*more: str) -> list[str]:
    return ["--client-id", "deploy-bot", "--grant", "client-credentials", "--audience",
            "kubernetes", *more]


def test_client_credentials_with_a_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("robot-secret\n")
    dex = FakeDex(grants=("client_credentials", "refresh_token"))
    s = settings(tmp_path, *robot_args("--client-secret-file", str(secret)))
    assert "robot-secret" not in repr(s)
    result = login(s, http=dex.client(), edges=Edges(environ={}))
    assert result.claims["azp"] == "deploy-bot" and "kubernetes" in result.claims["aud"]
    assert dex.forms[0]["client_secret"] == "robot-secret"
    assert set(dex.forms[0]["scope"].split()) >= {"openid", AUDIENCE_SCOPE + "kubernetes"}
    assert not {"offline_access", "email"} & set(dex.forms[0]["scope"].split())


def test_client_credentials_never_takes_the_secret_on_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as refused:
        settings(tmp_path, *robot_args("--oidc-client-secret", "s3cret"))
    assert "--client-secret-file" in refused.value.hint and "s3cret" not in str(refused.value)
    with pytest.raises(UsageError, match="needs client deploy-bot's secret"):
        settings(tmp_path, *robot_args())
    unset = settings(tmp_path, *robot_args("--client-secret-env", "BOT_SECRET"))
    with pytest.raises(UsageError, match="the client secret variable BOT_SECRET is not set"):
        login(unset, http=FakeDex(grants=("client_credentials",)).client(),
              edges=Edges(environ={}))


def test_client_credentials_on_a_dex_without_it_names_the_version(tmp_path: Path) -> None:
    s = settings(tmp_path, *robot_args("--client-secret-env", "S"))
    with pytest.raises(OIDCError) as refused:
        login(s, http=FakeDex().client(), edges=Edges(environ={"S": "robot-secret"}))
    assert "does not offer the client_credentials grant" in refused.value.message
    assert "v2.45.1" in refused.value.hint and "main branch" in refused.value.hint


def _payload(token: str) -> str:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()
