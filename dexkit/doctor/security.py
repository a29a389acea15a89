"""Security warnings: legal settings that hand out more trust than intended.

These never fail the run (a working setup can have them); each one says what an attacker, or
an unlucky group name, could do, and how to close it.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from dexkit.config import LDAPConnector, OIDCConnector
from dexkit.doctor.cluster import live, secret_bytes, server_clock
from dexkit.doctor.core import Context, Result, check, ok, warn
from dexkit.doctor.local import kubeconfig_documents, kubeconfig_section, login_users
from dexkit.render.dex import credential_envs

if TYPE_CHECKING:
    from dexkit.config import Config

# Client secrets published in Dex's docs and examples (examples/k8s, config-dev.yaml): the
# base64 text the guide uses, and the string it encodes.
EXAMPLE_SECRETS = frozenset({"ZXhhbXBsZS1hcHAtc2VjcmV0", "example-app-secret"})
CLOCK_SKEW_LIMIT = dt.timedelta(minutes=1)


@check("security.username-prefix", needs=("local.config",))
def username_prefix(ctx: Context) -> Result:
    """A username claim other than email has a prefix."""
    api = ctx.config.api_server
    prefix = ctx.config.effective_username_prefix
    if api.username_claim != "email" and not prefix:
        return warn(f"usernames are the '{api.username_claim}' claim without a prefix: whoever "
                    "controls that claim upstream can take any name, including another user's "
                    "or a 'system:' one",
                    "set apiServer.usernamePrefix (e.g. 'oidc:'), or leave it unset for the "
                    "API server's '<issuer>#' prefix")
    if api.username_claim == "email":
        return ok("usernames are verified email addresses"
                  + (f", prefixed '{prefix}'" if prefix else ""))
    return ok(f"usernames are '{prefix}<{api.username_claim}>'")


@check("security.groups-prefix", needs=("local.config",))
def groups_prefix(ctx: Context) -> Result:
    """Groups from Dex carry a prefix, so no upstream group can become system:masters."""
    api = ctx.config.api_server
    if not api.groups_claim:
        return ok("no groups are mapped (apiServer.groupsClaim is empty)")
    if not api.groups_prefix:
        return warn("groups from Dex are not prefixed: an upstream group named "
                    "'system:masters' would make its members cluster-admin",
                    "set apiServer.groupsPrefix (dexkit's default is 'oidc:') and prefix the "
                    "groups in RBAC bindings the same way")
    return ok(f"groups are prefixed '{api.groups_prefix}'")


def _client_secret_places(ctx: Context) -> list[tuple[str, str]]:
    """(where, value) for every client secret doctor can see; values are compared, never shown."""

    config: Config = ctx.config
    found: list[tuple[str, str]] = []
    for user in login_users(ctx):
        if user.client_secret:
            found.append((f"kubeconfig user '{user.name}' (--oidc-client-secret)",
                          user.client_secret))
    envs = credential_envs(config).clients
    for client_id, env in envs.items():
        value = ctx.edges.environ.get(env.env)
        if value:
            found.append((f"the environment variable {env.env} (client '{client_id}')", value))
    if ctx.request.offline or not ctx.passed("cluster.reachable"):
        return found

    for client_id, env in envs.items():
        secret = live(ctx, "Secret", env.secret)
        held = secret_bytes(secret, env.key) if secret else None
        if held:
            found.append((f"Secret {config.namespace}/{env.secret} (client '{client_id}')",
                          held.decode("utf-8", errors="replace").strip()))
    return found


@check("security.client-secret", needs=("local.config",))
def client_secret(ctx: Context) -> Result:
    """No client secret is left at a value published in Dex's examples."""
    places = _client_secret_places(ctx)
    exposed = [where for where, value in places if value in EXAMPLE_SECRETS]
    if exposed:
        return warn(f"the client secret in {', '.join(exposed)} is the example value from "
                    "Dex's docs (ZXhhbXBsZS1hcHAtc2VjcmV0): anyone can use that client",
                    "generate a random one (e.g. 'openssl rand -base64 32'), set it there and "
                    "run 'dexkit deploy'")
    if not places:
        return ok("no client secret in use (public clients with PKCE)")
    return ok(f"{len(places)} client secret(s) checked: none is a published example value")


@check("security.insecure", needs=("local.config",))
def insecure(ctx: Context) -> Result:
    """Nothing skips TLS verification, logs in over plain http or trusts unverified emails."""

    found = [f"kubeconfig user '{u.name}' ({_insecure_flag(u.tool)})"
             for u in login_users(ctx) if u.insecure]
    found += [f"kubeconfig user '{u.name}' (plain-http issuer {u.issuer}: the login and its "
              "tokens in clear text)" for u in login_users(ctx)
              if u.issuer.lower().startswith("http://")]
    for path, doc in kubeconfig_documents(ctx):
        for item in kubeconfig_section(path, doc, "clusters"):
            cluster = (item.get("cluster") if isinstance(item, dict) else None) or {}
            if isinstance(cluster, dict) and cluster.get("insecure-skip-tls-verify"):
                found.append(f"kubeconfig cluster '{item.get('name')}' in {path} "
                             "(insecure-skip-tls-verify)")
    for conn in ctx.config.connectors:
        if isinstance(conn, LDAPConnector) and conn.insecure_no_ssl:
            found.append(f"connector '{conn.id}' (insecureNoSSL: LDAP passwords in clear text)")
        if isinstance(conn, OIDCConnector) and conn.insecure_skip_email_verified:
            found.append(f"connector '{conn.id}' (insecureSkipEmailVerified: unverified emails "
                         "become usernames)")
    if found:
        return warn("TLS or email verification is switched off: " + "; ".join(found),
                    "use the https issuer and trust dexkit's CA instead ('dexkit kubeconfig' "
                    "writes both), and turn the insecure settings off")
    return ok("no --insecure, insecure-skip-tls-verify, plain-http issuer or insecure connector "
              "setting")


def _insecure_flag(tool: str) -> str:
    return "--insecure" if tool == "dexkit token" else "--insecure-skip-tls-verify"


@check("security.clock-skew", needs=("cluster.reachable",), cluster=True)
def clock_skew(ctx: Context) -> Result:
    """This machine's clock agrees with the API server's (its Date header) within a minute."""

    answer, local = server_clock(ctx)
    if answer.date is None or not isinstance(local, dt.datetime):
        return ok("the API server sent no Date header; skew not measured")
    skew = local - answer.date
    seconds = int(abs(skew.total_seconds()))
    if abs(skew) > CLOCK_SKEW_LIMIT:
        side = "ahead of" if skew > dt.timedelta(0) else "behind"
        return warn(f"this machine's clock is {seconds} s {side} the API server's (Date header "
                    f"{answer.date:%H:%M:%S} UTC)",
                    "sync the clocks (NTP): tokens are checked against exp and iat with little "
                    "leeway, certificates against notBefore")
    return ok(f"clocks agree within {max(seconds, 1)} s (the Date header has 1 s resolution)")
