"""Reading the kube-apiserver's log for its OIDC authenticator's last failed attempt."""

from __future__ import annotations

import datetime as dt

import pytest

from dexkit.apiserverlog import AuthenticatorFailure, explain, last_failure

ISSUER = "https://dex.example.com:32000"
NOW = dt.datetime(2026, 12, 5, 21, 19, 20, tzinfo=dt.UTC)
# As kube-apiserver 1.34 wrote it on a kind node whose hosts file lacked the issuer's name.
LOOKUP = ('E1205 21:19:12.958899       1 oidc.go:419] oidc authenticator: initializing plugin: '
          'Get "https://dex.example.com:32000/.well-known/openid-configuration": dial tcp: '
          'lookup dex.example.com on 10.215.1.1:53: read udp 10.215.1.2:60937->10.215.1.1:53: '
          'i/o timeout')
REFUSED = ('E1205 21:19:15.000000       1 oidc.go:433] oidc authenticator: initializing plugin: '
           'Get "https://dex.example.com:32000/.well-known/openid-configuration": dial tcp '
           '127.0.0.1:32000: connect: connection refused')
UNTRUSTED = ('E1205 21:19:15.000000       1 oidc.go:433] oidc authenticator: initializing '
             'plugin: Get "https://dex.example.com:32000/.well-known/openid-configuration": '
             'tls: failed to verify certificate: x509: certificate signed by unknown authority')
OTHER = ('E1205 21:19:18.000000       1 oidc.go:433] oidc authenticator: initializing plugin: '
         'Get "https://other.example.com/.well-known/openid-configuration": dial tcp: lookup '
         'other.example.com: no such host')
NOISE = 'E1205 21:19:19.000000       1 authentication.go:75] "Unable to authenticate the ' \
        'request" err="[invalid bearer token, oidc: authenticator not initialized]"'


@pytest.mark.parametrize(("line", "cause", "words"), [
    (LOOKUP, "resolve", "the API server cannot resolve dex.example.com"),
    (REFUSED, "reach", "the API server cannot reach the issuer https://dex.example.com:32000"),
    (UNTRUSTED, "tls", "the API server does not trust Dex's certificate"),
])
def test_the_last_recent_failure_is_named_by_its_cause(line: str, cause: str,
                                                       words: str) -> None:
    failure = last_failure("\n".join(["I1205 21:19:00.0 1 x.go:1] start", line, NOISE]),
                           ISSUER, NOW)
    assert failure is not None
    assert failure.cause() == cause
    assert failure.at == dt.datetime(2026, 12, 5, 21, 19, int(line[12:14]), tzinfo=dt.UTC)
    message, hint = explain(failure, ISSUER)
    assert message.startswith(words)
    assert failure.error in message and hint


def test_the_resolve_hint_names_the_kind_config_and_why_a_node_edit_is_not_enough() -> None:
    failure = last_failure(LOOKUP, ISSUER, NOW)
    assert failure is not None
    hint = explain(failure, ISSUER)[1]
    assert "create the cluster from the config 'dexkit render' writes" in hint
    assert "an edit of the node's /etc/hosts after the Pod started does not reach it" in hint


def test_an_old_failure_was_followed_by_a_success() -> None:
    later = NOW + dt.timedelta(seconds=60)
    assert last_failure(LOOKUP, ISSUER, later) is None


def test_another_issuers_failure_is_not_ours() -> None:
    assert last_failure(OTHER, ISSUER, NOW) is None
    assert last_failure("\n".join([LOOKUP, OTHER]), ISSUER, NOW) is not None


def test_no_failure_in_the_log() -> None:
    assert last_failure(NOISE, ISSUER, NOW) is None
    assert last_failure("", ISSUER, NOW) is None


def test_a_line_of_last_year_in_january() -> None:
    january = dt.datetime(2027, 1, 1, 0, 0, 5, tzinfo=dt.UTC)
    line = LOOKUP.replace("E1205 21:19:12", "E1231 23:59:50")
    failure = last_failure(line, ISSUER, january)
    assert failure is not None and failure.at is not None and failure.at.year == 2026


def test_an_unknown_error_still_gets_a_message() -> None:
    failure = AuthenticatorFailure("something new", None)
    assert failure.cause() == "other"
    assert explain(failure, ISSUER)[0].startswith(
        "the API server's OIDC authenticator for https://dex.example.com:32000 never initialized")
