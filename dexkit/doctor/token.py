"""Token checks (``--login password|device``): a real login, and the token as the API server
needs it.

The login is made as kubectl would make it: with the client ID and scopes of the one kubeconfig
user that logs in to this issuer, when there is one (so a user that forgets the ``groups``
scope is caught here), else with dexkit.yaml's client and scopes. The ID token's signature is
verified against the issuer's JWKS; its ``iss``, ``aud``, ``email_verified`` and groups are then
each judged by their own check, against the API server's live values where they can be seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dexkit import kube
from dexkit.apiserverlog import explain, last_failure
from dexkit.doctor.apiserver import ApiServerView, logs, views
from dexkit.doctor.core import Context, Result, Skip, check, fail, ok, warn
from dexkit.doctor.local import login_users
from dexkit.doctor.network import provider
from dexkit.errors import ClusterError
from dexkit.oidc.discovery import explain_difference
from dexkit.oidc.session import Edges, run_grant
from dexkit.oidc.settings import project_scopes, project_settings
from dexkit.oidc.tokens import (
    Expectations,
    fetch_jwks,
    unverified_claims,
    unverified_header,
    verify_id_token,
)
from dexkit.verify import mapping_mismatch, unverified_email


@dataclass(frozen=True)
class Login:
    id_token: str
    claims: dict[str, Any]
    client_id: str
    scopes: tuple[str, ...]
    via: str  # whose settings the login used, for messages


def _client_settings(ctx: Context) -> tuple[str, tuple[str, ...], str]:
    exact = [u for u in login_users(ctx) if u.issuer == ctx.config.issuer]
    if len(exact) == 1 and exact[0].client_id:
        user = exact[0]
        return user.client_id or "", user.scopes, f"kubeconfig user '{user.name}'"
    cluster = ctx.config.selected_cluster
    if cluster is not None:  # --cluster: the login client, narrowed to that cluster
        return (ctx.config.login_client_id, project_scopes(ctx.config),
                f"dexkit.yaml's login client for cluster '{cluster.name}'")
    return ctx.config.api_server.client_id, project_scopes(ctx.config), "dexkit.yaml's client"


def login(ctx: Context) -> Login:
    def load() -> Login:
        client_id, scopes, via = _client_settings(ctx)
        # The same settings (and so the same password order) as 'dexkit login' and verify.
        settings = project_settings(ctx.directory, ctx.config, grant=ctx.request.login,
                                    username=ctx.request.username, client_id=client_id,
                                    scopes=scopes, extra=["--skip-open-browser"],
                                    environ=ctx.edges.environ)
        found = provider(ctx)
        # a look: no refresh token, which would revoke the one kubectl's cache holds
        tokens = run_grant(settings.looking_only(), ctx.http, found,
                           edges=Edges(environ=ctx.edges.environ), interactive=False)
        # The signature, expiry and nonce are verified here; iss and aud are judged by their
        # own checks below, against the API server, so verification takes the token's own.
        audiences = unverified_claims(tokens.id_token).get("aud")
        first = audiences if isinstance(audiences, str) else (list(audiences or []) or [""])[0]
        unverified = unverified_claims(tokens.id_token)
        expect = Expectations(issuer=str(unverified.get("iss", "")), client_id=str(first),
                              nonce=tokens.nonce, authorized_party=unverified.get("azp"))
        claims = verify_id_token(tokens.id_token, fetch_jwks(ctx.http, found), expect,
                                 int(ctx.now.timestamp()))
        return Login(tokens.id_token, claims, client_id, tuple(scopes), via)
    return ctx.fact("token.login", load)


@check("token.login", needs=("network.discovery", "local.config"), login=True)
def logs_in(ctx: Context) -> Result:
    """A login succeeds and its ID token's signature verifies against the issuer's JWKS."""
    got = login(ctx)
    who = got.claims.get("email") or got.claims.get("sub")
    alg = unverified_header(got.id_token).get("alg")
    return ok(f"{ctx.request.login} login as {who} with {got.via} ('{got.client_id}', scopes "
              f"{' '.join(got.scopes)}): ID token signed {alg}, signature verified")


def _views(ctx: Context) -> list[ApiServerView]:
    """The API servers whose configuration can be seen (none offline or when hidden)."""
    if ctx.request.offline or not ctx.passed("apiserver.visible"):
        return []
    mode = ctx.results.get("apiserver.mode")
    if mode is not None and mode.status == "fail":
        # Its values would be empty: comparing the token with them says nothing new.
        raise Skip("apiserver.mode failed: the API server has no OIDC configuration to compare "
                   "the token with")
    return views(ctx)


@check("token.issuer", needs=("token.login",), login=True)
def token_issuer(ctx: Context) -> Result:
    """The token's iss is the configured issuer (and the API server's), byte for byte."""
    iss = str(login(ctx).claims.get("iss", ""))
    wanted = [("dexkit.yaml", ctx.config.issuer)]
    wanted += [(v.source, v.flag("oidc-issuer-url") or "") for v in _views(ctx)
               if v.mode == "flags"]
    for where, issuer in wanted:
        if iss != issuer:
            return fail(f"the token's iss is '{iss}', {where} has '{issuer}': "
                        f"{explain_difference(issuer, iss)}",
                        "Dex's issuer and the API server's issuer URL must be identical: "
                        "re-render both from dexkit.yaml ('dexkit deploy', 'dexkit apiserver "
                        "patch')")
    return ok(f"iss is '{iss}', as " + " and ".join(w for w, _ in wanted) + " say")


@check("token.audience", needs=("token.login",), login=True)
def token_audience(ctx: Context) -> Result:
    """The token's aud holds the client ID the API server accepts."""
    got = login(ctx)
    raw = got.claims.get("aud")
    audiences = [raw] if isinstance(raw, str) else [str(a) for a in raw or []]
    wanted = [("dexkit.yaml's apiServer.clientID", ctx.config.api_server.client_id)]
    wanted += [(f"{v.source}'s --oidc-client-id", v.flag("oidc-client-id") or "")
               for v in _views(ctx) if v.mode == "flags"]
    for where, client_id in wanted:
        if client_id not in audiences:
            return fail(f"the token's aud is {audiences}, but {where} is '{client_id}': the "
                        "API server refuses it (401)",
                        "log in with the client the API server trusts, and make dexkit.yaml's "
                        "apiServer.clientID, Dex's client and the API server's flag one value "
                        "('dexkit kubeconfig', 'dexkit apiserver patch')")
    return ok(f"aud {audiences} holds '{ctx.config.api_server.client_id}'")


@check("token.email-verified", needs=("token.login",), login=True)
def email_verified(ctx: Context) -> Result:
    """With the email username claim, the token's email_verified is not false."""
    claims = login(ctx).claims
    api = ctx.config.api_server
    if api.username_claim != "email":
        return ok(f"the username claim is '{api.username_claim}': email_verified does not "
                  "matter")
    if "email" not in claims:
        return fail("the token has no 'email' claim, the API server's username claim",
                    "request the 'email' scope, and check that the connector returns an email")
    if unverified_email(ctx.config, claims):
        return fail(f"email_verified is false for {claims['email']}: the API server refuses an "
                    "email username that is not verified",
                    "verify the address upstream (or, for a connector that cannot, use another "
                    "username claim with a prefix)")
    return ok(f"email {claims['email']}, email_verified "
              f"{claims.get('email_verified', 'absent (allowed)')}")


@check("token.groups", needs=("token.login",), login=True)
def groups(ctx: Context) -> Result:
    """The token carries the groups claim the API server maps (the groups scope was asked)."""
    got = login(ctx)
    claim = ctx.config.api_server.groups_claim
    if not claim:
        return ok("no groups claim is configured (apiServer.groupsClaim is empty)")
    value = got.claims.get(claim)
    if value is None:
        if "groups" not in got.scopes:
            return fail(f"the token has no '{claim}' claim: the login ({got.via}) did not "
                        f"request the 'groups' scope (scopes: {' '.join(got.scopes)})",
                        "add the 'groups' scope to the login ('dexkit kubeconfig' writes it; "
                        "kubelogin needs --oidc-extra-scope=groups)")
        return fail(f"the token has no '{claim}' claim although the 'groups' scope was "
                    "requested: the connector returned no groups for this user",
                    "check the connector's group settings (GitHub orgs and teams, LDAP "
                    "groupSearch, static users' groups)")
    if not isinstance(value, list):
        return fail(f"the token's '{claim}' claim is a {type(value).__name__}, not a list",
                    "map a list-valued claim with apiServer.groupsClaim (Dex's is 'groups')")
    if not value:
        return warn(f"the token's '{claim}' claim is empty: group RBAC bindings cannot match "
                    "this user", "give the user groups upstream, or bind RBAC to the user")
    prefix = ctx.config.api_server.groups_prefix
    return ok(f"{claim}: {', '.join(map(str, value))} (the API server sees "
              f"{', '.join(prefix + str(g) for g in value)})")


# The API server's OIDC authenticator retries discovery every 10 s (and then serves at once).
DISCOVERY_ROUND = 12.0


@check("token.review", needs=("token.login", "cluster.reachable"), cluster=True, login=True)
def review(ctx: Context) -> Result:
    """The API server accepts the token and maps user and groups as dexkit.yaml promises
    (SelfSubjectReview)."""
    got = login(ctx)
    # The API server retries discovery every 10 s: a freshly configured one may need a round.
    # A refusal that a failed check above already explains is not waited for.
    explained = any(r.status == "fail" and check_id.startswith(("apiserver.", "token."))
                    for check_id, r in ctx.results.items())
    deadline = time.monotonic() + (0 if explained else DISCOVERY_ROUND)
    while True:
        try:
            identity = kube.who_am_i(kube.connect(ctx.target, bearer_token=got.id_token))
            break
        except ClusterError as exc:
            if exc.status != 401:
                raise
            if time.monotonic() > deadline:
                return _refused(ctx)
            time.sleep(2)
    mismatch = mapping_mismatch(ctx.config, got.claims, identity)
    if mismatch is not None:
        return fail(*mismatch)
    return ok(f"the API server sees '{identity.username}' in {', '.join(identity.groups)}")


def _refused(ctx: Context) -> Result:
    """A 401: named from the API server's own log when its authenticator never initialized."""
    if ctx.passed("apiserver.visible"):
        for source, text in logs(ctx).items():
            failure = last_failure(text, ctx.config.issuer, ctx.now)
            if failure is not None:
                message, hint = explain(failure, ctx.config.issuer)
                return fail(f"the API server refuses the token (401): {message} ({source})",
                            hint)
    return fail("the API server refuses the token (401 Unauthorized)",
                "the failing checks above name why (apiserver.*, token.*); the API server's "
                "log says 'Unable to authenticate the request'")
