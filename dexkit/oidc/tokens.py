"""ID token verification with a maintained JOSE library (joserfc), never hand-written JWT code.

Rules, as the API server applies them and a little stricter:
- the signature verifies against the issuer's JWKS, with an asymmetric algorithm from the
  allow-list (never ``none``, never HMAC: an HMAC "signature" keyed with a public key is the
  classic algorithm-confusion forgery);
- ``iss`` equals the issuer byte for byte; ``aud`` contains the client ID the API server
  trusts (and ``azp``, when present with several audiences, names it);
- ``exp`` is in the future and ``iat`` not in the future, each with a small leeway;
- ``nonce`` equals the one we sent, when we sent one.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dexkit.errors import OIDCError
from dexkit.oidc.discovery import get_json

if TYPE_CHECKING:
    import httpx

    from dexkit.oidc.discovery import Provider

# What verify_id_token imports: joserfc and, through it, cryptography (~50 ms).
VERIFIER_MODULES = ("joserfc.jwt", "joserfc.jwk", "joserfc.errors")

ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                   "ES512", "EdDSA")
LEEWAY_SECONDS = 60


@dataclass(frozen=True)
class Expectations:
    issuer: str
    client_id: str
    nonce: str | None = None
    # The client that asked, when it is not the audience (one cluster of several: the login
    # client; a robot). None: the audience itself.
    authorized_party: str | None = None
    algorithms: Collection[str] = ASYMMETRIC_ALGS
    leeway: int = LEEWAY_SECONDS


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT without checking anything: for expiry of our own cached tokens
    and for showing why a token was refused, never for trusting it."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise OIDCError(f"not a JWT: {exc}", "the token is damaged; log in again") from None
    if not isinstance(data, dict):
        raise OIDCError("the JWT payload is not a JSON object", "log in again")
    return data


def unverified_header(token: str) -> dict[str, Any]:
    try:
        part = token.split(".")[0]
        data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError) as exc:
        raise OIDCError(f"not a JWT: {exc}", "the token is damaged; log in again") from None
    return data if isinstance(data, dict) else {}


def fetch_jwks(http: httpx.Client, provider: Provider) -> dict[str, Any]:
    jwks = get_json(http, provider.jwks_uri, "JWKS")
    if not jwks.get("keys"):
        raise OIDCError(f"the JWKS at {provider.jwks_uri} has no keys",
                        "Dex creates its signing keys at start; check its storage and logs")
    return jwks


@contextlib.contextmanager
def verifier_loading() -> Iterator[None]:
    """Import the verifier in a thread while the body waits for Dex (a password grant, a
    refresh): the ID token the request brings is verified next. The body must import nothing
    itself (an HTTP request on a client already made does not), and the thread is joined when
    it ends, so no two imports ever run side by side; a failed import is left for
    verify_id_token to raise."""
    thread = threading.Thread(target=_import_verifier, name="dexkit-verifier-import",
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _import_verifier() -> None:
    for name in VERIFIER_MODULES:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def verify_id_token(token: str, jwks: dict[str, Any], expect: Expectations,
                    now: int) -> dict[str, Any]:
    """Verify ``token`` and return its claims; raise OIDCError naming the first broken rule."""
    # joserfc (~55 ms with cryptography) only when a token's signature is verified.
    from joserfc import jwt  # noqa: PLC0415
    from joserfc.errors import JoseError  # noqa: PLC0415
    from joserfc.jwk import KeySet  # noqa: PLC0415

    header = unverified_header(token)
    alg = str(header.get("alg", ""))
    allowed = [a for a in expect.algorithms if a in ASYMMETRIC_ALGS]
    if alg not in allowed:
        raise OIDCError(f"ID token signed with alg '{alg or 'none'}', which is not allowed "
                        f"(allowed: {', '.join(allowed)})",
                        "the token was forged or the issuer is misconfigured; never accept "
                        "'none' or HMAC-signed ID tokens")
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        decoded = jwt.decode(token, keys, algorithms=allowed)
    except (JoseError, ValueError) as exc:
        raise OIDCError(f"ID token signature does not verify against the issuer's keys: "
                        f"{exc}", "the token was not issued by this Dex (or its keys rotated "
                        "away); log in again") from None
    claims = dict(decoded.claims)
    check_claims(claims, expect, now)
    return claims


def check_claims(claims: dict[str, Any], expect: Expectations, now: int) -> None:
    if claims.get("iss") != expect.issuer:
        raise OIDCError(f"ID token issuer is '{claims.get('iss')}', expected '{expect.issuer}'",
                        "the issuer URL must match Dex's issuer byte for byte")
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else list(audiences or [])
    if expect.client_id not in audiences:
        raise OIDCError(f"ID token audience is {audiences}, not the client the API server "
                        f"trusts ('{expect.client_id}')",
                        "log in with the client ID given to the API server "
                        "(apiServer.clientID)")
    party = expect.authorized_party or expect.client_id
    if len(audiences) > 1 and claims.get("azp") not in (None, party):
        raise OIDCError(f"ID token azp is '{claims.get('azp')}', not '{party}'",
                        "log in with the client the API server trusts")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or exp + expect.leeway < now:
        raise OIDCError("ID token has expired" if isinstance(exp, int | float)
                        else "ID token has no exp claim", "log in again")
    if isinstance(iat, int | float) and iat - expect.leeway > now:
        raise OIDCError("ID token was issued in the future (iat); clocks disagree",
                        "check this machine's clock against Dex's")
    if expect.nonce is not None and claims.get("nonce") != expect.nonce:
        raise OIDCError("ID token nonce does not match the one this login sent",
                        "a replayed or foreign token; log in again")


def probe_token(issuer: str, audience: str) -> str:
    """A JWT with the issuer and audience the API server expects, signed by a throwaway key:
    it is refused either way, and the refusal's reason says whether discovery has happened."""
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from joserfc import jwt  # noqa: PLC0415
    from joserfc.jwk import ECKey  # noqa: PLC0415

    key = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": "dexkit-readiness-probe", "iat": now,
              "exp": now + 300}
    return jwt.encode({"alg": "ES256", "kid": "dexkit-probe"}, claims, key)
