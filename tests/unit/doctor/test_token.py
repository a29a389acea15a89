"""Token checks over a login given as a fact (the claims Dex would sign)."""

from __future__ import annotations

import datetime as dt
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from dexkit.config import load_config
from dexkit.doctor.apiserver import pod_view
from dexkit.doctor.core import Context, Result
from dexkit.doctor.token import Login
from tests.unit.doctor.helpers import ISSUER, context, run
from tests.unit.doctor.test_apiserver import _pod

Project = Callable[..., Path]
SCOPES = ("openid", "email", "groups", "profile", "offline_access")


def _claims(**changes: Any) -> dict[str, Any]:
    claims = {"iss": ISSUER, "aud": "kubernetes", "sub": "Cg", "email": "admin@example.com",
              "email_verified": True, "groups": ["team-a", "team-a/admins"]}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _ctx(project: Path, claims: dict[str, Any], scopes: tuple[str, ...] = SCOPES,
         facts: dict[str, object] | None = None) -> Context:
    login = Login("e30.e30.sig", claims, "kubernetes", scopes, "dexkit.yaml's client")
    return context(project, login="password", facts={"token.login": login, **(facts or {})})


def test_a_good_token_passes_every_claim_check(new_project: Project) -> None:
    ctx = _ctx(new_project(), _claims())
    for check_id in ("token.issuer", "token.audience", "token.email-verified", "token.groups"):
        assert run(ctx, check_id).status == "ok", check_id
    assert run(ctx, "token.groups").message == ("groups: team-a, team-a/admins (the API server "
                                                "sees oidc:team-a, oidc:team-a/admins)")


def test_email_verified_false_fails(new_project: Project) -> None:
    result = run(_ctx(new_project(), _claims(email_verified=False)), "token.email-verified")
    assert result.status == "fail"
    assert result.message == ("email_verified is false for admin@example.com: the API server "
                              "refuses an email username that is not verified")


def test_email_verified_does_not_matter_for_another_claim(new_project: Project) -> None:
    project = new_project(apiServer={"usernameClaim": "sub"})
    assert run(_ctx(project, _claims(email_verified=False)), "token.email-verified").status \
        == "ok"


def test_groups_scope_not_requested_fails_and_says_so(new_project: Project) -> None:
    result = run(_ctx(new_project(), _claims(groups=None), scopes=("openid", "email")),
                 "token.groups")
    assert result.status == "fail"
    assert "did not request the 'groups' scope (scopes: openid email)" in result.message
    assert "--oidc-extra-scope=groups" in result.hint


def test_groups_requested_but_none_returned(new_project: Project) -> None:
    result = run(_ctx(new_project(), _claims(groups=None)), "token.groups")
    assert result.status == "fail" and "connector returned no groups" in result.message


def test_empty_groups_warn(new_project: Project) -> None:
    assert run(_ctx(new_project(), _claims(groups=[])), "token.groups").status == "warn"


def test_issuer_of_the_token_differs(new_project: Project) -> None:
    result = run(_ctx(new_project(), _claims(iss=ISSUER + "/")), "token.issuer")
    assert result.status == "fail" and "differ only by a trailing slash" in result.message


def _visible(project: Path, client_id: str) -> dict[str, object]:
    config = load_config(project).config
    pod = _pod(config, lambda cmd: [f"--oidc-client-id={client_id}"
                                    if c.startswith("--oidc-client-id=") else c for c in cmd])
    return {"apiserver.views": [pod_view(pod, config)]}


def test_audience_against_the_api_servers_client_id(new_project: Project) -> None:
    project = new_project()
    ctx = _ctx(project, _claims(), facts=_visible(project, "example-app"))
    ctx.results["apiserver.visible"] = Result("apiserver.visible", "ok", "")
    result = run(ctx, "token.audience")
    assert result.status == "fail"
    assert result.message == ("the token's aud is ['kubernetes'], but Pod "
                              "kube-system/kube-apiserver-node1's --oidc-client-id is "
                              "'example-app': the API server refuses it (401)")


def test_audience_against_the_config(new_project: Project) -> None:
    result = run(_ctx(new_project(), _claims(aud=["example-app"])), "token.audience")
    assert result.status == "fail" and "apiServer.clientID is 'kubernetes'" in result.message


def test_login_is_skipped_without_login_option(new_project: Project) -> None:
    ctx = context(new_project())
    assert run(ctx, "token.login").status == "skip"


# --- the login itself, against a fake provider (a unit-level stand-in, not Dex) -------------------


def _fake_provider(key: Any, *, groups_if_asked: bool = True,
                   seen: list[dict[str, str]] | None = None) -> Callable[[Path], Any]:
    """Discovery, a password grant that signs an RS256 ID token, and the JWKS."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={
                "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/keys",
                "grant_types_supported": ["authorization_code", "password"]})
        if request.url.path == "/keys":
            return httpx.Response(200, json=KeySet([key]).as_dict(private=False))
        if request.url.path == "/token":
            form = dict(urllib.parse.parse_qsl(request.content.decode()))
            if seen is not None:
                seen.append(form)
            now = int(time.time())
            claims = {"iss": ISSUER, "aud": form["client_id"], "sub": "Cg",
                      "email": form["username"], "email_verified": True, "iat": now,
                      "exp": now + 600, "nonce": form["nonce"]}
            if groups_if_asked and "groups" in form["scope"].split():
                claims["groups"] = ["team-a"]
            token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, key)
            return httpx.Response(200, json={"id_token": token, "token_type": "bearer"})
        return httpx.Response(404)
    return lambda ca: httpx.Client(transport=httpx.MockTransport(handler))


def test_password_login_verifies_the_token_and_feeds_the_claim_checks(
        new_project: Project) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
    seen: list[dict[str, str]] = []
    project = new_project()
    ctx = context(project, login="password", http=_fake_provider(key, seen=seen),
                  environ={"DEXKIT_PASSWORD": "from-the-environment"})
    ctx.now = dt.datetime.now(dt.UTC)
    result = run(ctx, "token.login")
    assert result.status == "ok", result
    assert result.message.startswith("password login as admin@example.com with dexkit.yaml's "
                                     "client ('kubernetes', scopes openid email groups")
    assert "signature verified" in result.message
    assert seen[0]["password"] == "from-the-environment"
    assert run(ctx, "token.groups").status == "ok"
    assert run(ctx, "token.audience").status == "ok"


def test_login_with_a_forged_signature_fails(new_project: Project) -> None:
    signer = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
    published = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
    fake = _fake_provider(signer)

    def swapped(ca: Path) -> Any:
        inner = fake(ca)

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/keys":
                return httpx.Response(200, json=KeySet([published]).as_dict(private=False))
            return inner.send(request)
        return httpx.Client(transport=httpx.MockTransport(handler))

    ctx = context(new_project(), login="password", http=swapped,
                  environ={"DEXKIT_PASSWORD": "x"})
    ctx.now = dt.datetime.now(dt.UTC)
    result = run(ctx, "token.login")
    assert result.status == "fail" and "signature does not verify" in result.message


def test_password_login_without_a_password_says_where_to_put_it(new_project: Project) -> None:
    project = new_project()
    for stored in (project / ".dexkit" / "passwords").glob("*"):
        stored.unlink()
    ctx = context(project, login="password", http=_fake_provider(None))
    result = run(ctx, "token.login")
    assert result.status == "fail" and result.message == "no password for admin@example.com"
    assert "DEXKIT_PASSWORD" in result.hint


def test_issuer_and_audience_skip_when_the_api_server_has_no_oidc_configuration(
        new_project: Project) -> None:
    """Not 'the scheme differs ('' vs 'https')': apiserver.mode already said it (a kind
    cluster whose kubeadm patch was skipped)."""
    from dexkit.doctor.core import Result as R

    project = new_project()
    config = load_config(project).config
    no_flags = pod_view(_pod(config, lambda c: [a for a in c if not a.startswith("--oidc-")]),
                        config)
    ctx = _ctx(project, _claims(), facts={"apiserver.views": [no_flags]})
    assert run(ctx, "apiserver.mode").status == "fail"
    for check_id in ("token.issuer", "token.audience"):
        ctx.results["apiserver.visible"] = R("apiserver.visible", "ok", "seen")
        result = run(ctx, check_id)
        assert result.status == "skip", result
        assert "apiserver.mode failed" in result.message


def test_a_refused_token_is_named_from_the_api_servers_log(new_project: Project) -> None:
    """token.review's 401, when the API server's authenticator never initialized: the cause in
    one line (here: the kind recipe's old failure, a name the API server's Pod cannot resolve)."""
    import datetime as dt

    from dexkit.doctor.core import Result as R
    from dexkit.doctor.token import _refused
    from tests.unit.test_apiserverlog import LOOKUP

    project = new_project()
    config = load_config(project).config
    view = pod_view(_pod(config), config)
    assert view is not None
    ctx = context(project, now=dt.datetime(2026, 12, 5, 21, 19, 20, tzinfo=dt.UTC),
                  login="password", facts={"apiserver.views": [view],
                                           "apiserver.logs": {view.source: LOOKUP}})
    ctx.results["apiserver.visible"] = R("apiserver.visible", "ok", "seen")
    result = _refused(ctx)
    assert result.status == "fail"
    assert result.message.startswith("the API server refuses the token (401): the API server "
                                     "cannot resolve dex.example.com")
    assert "kubeadm patch gives the API server's Pod the name" in result.hint
    quiet = context(project, login="password",
                    facts={"apiserver.views": [view], "apiserver.logs": {view.source: ""}})
    quiet.results["apiserver.visible"] = R("apiserver.visible", "ok", "seen")
    assert _refused(quiet).message == "the API server refuses the token (401 Unauthorized)"
