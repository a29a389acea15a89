"""The subject token of a token exchange: the CI job's own ID token, found and checked.

Where it comes from (:class:`dexkit.oidc.settings.SubjectSource`): a file, a variable, or, in a
GitHub Actions job with ``permissions: id-token: write``, GitHub's token service: a GET of
``$ACTIONS_ID_TOKEN_REQUEST_URL`` with ``&audience=<aud>`` appended and the bearer
``$ACTIONS_ID_TOKEN_REQUEST_TOKEN``, answered with ``{"value": "<JWT>"}`` (what
``core.getIDToken()`` of actions/toolkit does).

Rules, checked here before the token is sent, each refusal one line that names why:
- it is a JWT and has not expired (``exp``, no leeway: Dex allows none either);
- its ``iss`` is the connector's issuer (``--subject-issuer``), when given;
- its ``aud`` holds the audience the connector is for (``--subject-audience``), when given.
  Dex itself checks the signature, the issuer and the expiry, but not the audience (its oidc
  connector verifies exchanged tokens with SkipClientIDCheck, v2.45.1 and main alike), so
  this is where a token meant for another service is stopped, for a job that goes through
  dexkit; what the token may do at the cluster is RBAC's, on the username Dex maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from dexkit.errors import OIDCError, UsageError
from dexkit.oidc import options
from dexkit.oidc.tokens import unverified_claims

if TYPE_CHECKING:
    import httpx

    from dexkit.oidc.settings import LoginSettings, SubjectSource

ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105 - a URN


def read_subject(settings: LoginSettings, environ: Mapping[str, str],
                 github: Callable[[str, str, str], str] | None = None) -> str:
    """The subject token from its source (``github`` fetches a GitHub Actions job's: url,
    bearer, audience -> JWT)."""
    source = settings.subject
    if source is None:
        raise UsageError("the token exchange has no subject token",
                         "pass --subject-token-file or --subject-token-env")
    token = _from_source(source, settings, environ, github or github_actions_token)
    if not token:
        raise UsageError(f"the subject token in {source.describe()} is empty",
                         "write the CI job's ID token there (one line, a JWT)")
    return token


def _from_source(source: SubjectSource, settings: LoginSettings, environ: Mapping[str, str],
                 github: Callable[[str, str, str], str]) -> str:
    if source.kind == "file":
        try:
            with open(source.where, encoding="utf-8") as handle:  # noqa: PTH123
                return handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the subject token file {source.where}: "
                             f"{getattr(exc, 'strerror', None) or exc}",
                             "check --subject-token-file") from None
    if source.kind == "env":
        if source.where not in environ:
            raise UsageError(f"the subject token variable {source.where} is not set",
                             f"export {source.where} with the CI job's ID token")
        return environ[source.where].strip()
    url, bearer = environ.get(options.ACTIONS_URL), environ.get(options.ACTIONS_TOKEN)
    if not url or not bearer:
        hint = ("pass --subject-token-file FILE or --subject-token-env VAR, or run in a GitHub "
                "Actions job with 'permissions: id-token: write'")
        if environ.get("GITHUB_ACTIONS") == "true":
            hint = (f"this GitHub Actions job has no {options.ACTIONS_URL}: give it "
                    "'permissions: id-token: write' (or pass --subject-token-file)")
        raise UsageError("no subject token for the token exchange", hint)
    if not settings.subject_audience:
        raise UsageError("a GitHub Actions job's token is asked for with an audience, and "
                         "none was given", "pass --subject-audience (the connector's "
                         "tokenExchange.audience in dexkit.yaml)")
    return github(url, bearer, settings.subject_audience)


def github_actions_token(url: str, bearer: str, audience: str, *,
                         http: httpx.Client | None = None) -> str:
    """The job's ID token for ``audience`` from GitHub's token service."""
    # httpx (~45 ms) only for GitHub's token service.
    import httpx  # noqa: PLC0415

    sep = "&" if "?" in url else "?"
    target = f"{url}{sep}{urlencode({'audience': audience})}"
    client = http or httpx.Client(timeout=10.0, headers={"User-Agent": "dexkit"})
    try:
        response = client.get(target, headers={"Authorization": f"Bearer {bearer}",
                                               "Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise OIDCError(f"cannot reach the GitHub Actions token service: {exc}",
                        f"the job's {options.ACTIONS_URL} must be reachable from here") from None
    finally:
        if http is None:
            client.close()
    if response.status_code != 200:
        raise OIDCError(f"the GitHub Actions token service answered HTTP "
                        f"{response.status_code} for the job's ID token",
                        "give the job 'permissions: id-token: write' (a pull request from a "
                        "fork gets no ID token)")
    try:
        value = response.json().get("value")
    except (ValueError, AttributeError):
        value = None
    if not isinstance(value, str) or not value:
        raise OIDCError("the GitHub Actions token service answered without a token ('value')",
                        "check the job's ACTIONS_ID_TOKEN_REQUEST_URL")
    return value


def check_subject(token: str, settings: LoginSettings, now: float | None = None) -> dict[str, Any]:
    """The subject token's claims (unverified: Dex verifies its signature), or a refusal that
    names which rule of the module's it breaks."""
    try:
        claims = unverified_claims(token)
    except OIDCError:
        raise OIDCError("the subject token is not a JWT (an ID token)",
                        "pass the CI job's OIDC ID token, not an access token or a "
                        "secret") from None
    moment = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise OIDCError("the subject token has no exp claim", "pass an ID token")
    if exp <= moment:
        raise OIDCError(f"the subject token expired {int(moment - exp)} s ago (exp "
                        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(exp))})",
                        "fetch a fresh ID token from the CI system (a job's tokens are "
                        "short-lived)")
    issuer = claims.get("iss")
    if settings.subject_issuer and issuer != settings.subject_issuer:
        raise OIDCError(f"the subject token is from issuer '{issuer}', which connector "
                        f"'{settings.connector_id}' does not trust (it trusts "
                        f"'{settings.subject_issuer}')",
                        "exchange a token of the CI system the connector is for")
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    if settings.subject_audience and settings.subject_audience not in audiences:
        raise OIDCError(f"the subject token is for audience {audiences}, not "
                        f"'{settings.subject_audience}' (connector '{settings.connector_id}'s "
                        "tokenExchange.audience)",
                        f"ask the CI system for a token with audience "
                        f"'{settings.subject_audience}'")
    return claims
