"""Tokens that must be refused are refused, each with its reason (real keys, real JOSE)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from dexkit.errors import OIDCError
from dexkit.oidc.tokens import Expectations, unverified_claims, verify_id_token

ISSUER = "https://127.0.0.1:32000"
CLIENT = "kubernetes"
NOW = int(time.time())


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})


@pytest.fixture(scope="module")
def jwks(signing_key: RSAKey) -> dict[str, Any]:
    return KeySet([signing_key]).as_dict(private=False)


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "u1", "email": "admin@example.com",
              "email_verified": True, "groups": ["team-a"], "iat": NOW, "exp": NOW + 600,
              "nonce": "n1"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key: Any, alg: str = "RS256", **overrides: Any) -> str:
    return jwt.encode({"alg": alg, "kid": "k1"}, _claims(**overrides), key)


EXPECT = Expectations(issuer=ISSUER, client_id=CLIENT, nonce="n1")


def test_a_good_token_verifies(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    claims = verify_id_token(_sign(signing_key), jwks, EXPECT, NOW)
    assert claims["email"] == "admin@example.com"


def test_es256_is_allowed() -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "k1"})
    jwks = KeySet([key]).as_dict(private=False)
    assert verify_id_token(_sign(key, "ES256"), jwks, EXPECT, NOW)["sub"] == "u1"


def _refused(token: str, jwks: dict[str, Any], expect: Expectations = EXPECT) -> str:
    with pytest.raises(OIDCError) as info:
        verify_id_token(token, jwks, expect, NOW)
    assert info.value.hint
    return info.value.message


def test_wrong_signature(jwks: dict[str, Any]) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    assert "signature does not verify" in _refused(_sign(other), jwks)


def test_tampered_payload(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    head, _, sig = _sign(signing_key).split(".")
    forged = base64.urlsafe_b64encode(json.dumps(_claims(email="root@evil")).encode())
    token = f"{head}.{forged.decode().rstrip('=')}.{sig}"
    assert "signature does not verify" in _refused(token, jwks)


def test_alg_none(jwks: dict[str, Any]) -> None:
    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(_claims())}."
    assert "alg 'none'" in _refused(token, jwks)


def test_hmac_keyed_with_the_public_key_is_refused(signing_key: RSAKey,
                                                   jwks: dict[str, Any]) -> None:
    """The algorithm-confusion forgery: HS256 with the RSA public key as the secret."""
    import hashlib
    import hmac

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    signing_input = (b64(json.dumps({"alg": "HS256", "kid": "k1"}).encode()) + "." +
                     b64(json.dumps(_claims()).encode()))
    secret = signing_key.as_pem(private=False)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert "alg 'HS256'" in _refused(f"{signing_input}.{b64(mac)}", jwks)


def test_wrong_audience(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    message = _refused(_sign(signing_key, aud="example-app"), jwks)
    assert "audience" in message and "kubernetes" in message


def test_wrong_issuer(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    assert "issuer is 'https://127.0.0.1:32000/'" in _refused(
        _sign(signing_key, iss=ISSUER + "/"), jwks)


def test_expired(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    assert "expired" in _refused(_sign(signing_key, exp=NOW - 120, iat=NOW - 700), jwks)


def test_expiry_within_leeway_is_accepted(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    assert verify_id_token(_sign(signing_key, exp=NOW - 30), jwks, EXPECT, NOW)


def test_issued_in_the_future(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    assert "future" in _refused(_sign(signing_key, iat=NOW + 600, exp=NOW + 1200), jwks)


def test_missing_nonce(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    assert "nonce" in _refused(_sign(signing_key, nonce=None), jwks)


def test_wrong_nonce(signing_key: RSAKey, jwks: dict[str, Any]) -> None:
    assert "nonce" in _refused(_sign(signing_key, nonce="other"), jwks)


def test_azp_must_name_us_with_several_audiences(signing_key: RSAKey,
                                                 jwks: dict[str, Any]) -> None:
    token = _sign(signing_key, aud=[CLIENT, "other"], azp="other")
    assert "azp" in _refused(token, jwks)


def test_garbage_is_a_clear_error(jwks: dict[str, Any]) -> None:
    assert "not a JWT" in _refused("garbage", jwks)
    with pytest.raises(OIDCError):
        unverified_claims("a.b")
