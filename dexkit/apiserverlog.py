"""What the kube-apiserver's own log says about its OIDC authenticator.

The API server starts its OIDC authenticator in the background and retries the issuer's
discovery every 10 s. Until one attempt succeeds, every token is refused with a bare 401
("authenticator not initialized" in the log, nothing in the answer), and the only line that
names the cause is the error of the last attempt (k8s.io/apiserver, ``oidc.go``)::

    E1205 21:19:12.958899       1 oidc.go:433] oidc authenticator: initializing plugin: Get
    "https://dex.example.com:32000/.well-known/openid-configuration": dial tcp: lookup
    dex.example.com on 10.215.1.1:53: ... i/o timeout

Rules:
- Only the last such line counts, and only when it is recent (:data:`RECENT` before ``now``,
  klog's time of day read as UTC, the year taken from ``now``): a failing authenticator writes
  one every 10 s, so an older one was followed by a success (which is not logged).
- A line about another issuer (its discovery URL does not start with ours) is not ours.
- The error is sorted into what the user must fix: the name does not resolve where the API
  server runs, the address does not answer, TLS is not trusted, or something else; each has
  its own hint. Pure: the callers (``verify``, ``doctor``) read the log.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

MARKER = "oidc authenticator: initializing plugin: "
RECENT = dt.timedelta(seconds=35)
TAIL_LINES = 400
Cause = Literal["resolve", "reach", "tls", "issuer", "other"]
_KLOG = re.compile(r"^[EWIF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})")
_URL = re.compile(r'"(https?://[^"]+)"')


@dataclass(frozen=True)
class AuthenticatorFailure:
    """The API server's last failed attempt to initialize its authenticator for the issuer."""

    error: str  # what follows "initializing plugin: "
    at: dt.datetime | None

    def cause(self) -> Cause:
        text = self.error
        if "lookup " in text and any(s in text for s in (
                "no such host", "i/o timeout", "server misbehaving", "Temporary failure",
                "connection refused")):
            return "resolve"
        if "x509:" in text or "certificate" in text:
            return "tls"
        if "issuer did not match" in text:
            return "issuer"
        if any(s in text for s in ("connection refused", "no route to host", "i/o timeout",
                                   "network is unreachable", "deadline exceeded",
                                   "connection reset")):
            return "reach"
        return "other"


def _when(line: str, now: dt.datetime) -> dt.datetime | None:
    match = _KLOG.match(line)
    if match is None:
        return None
    month, day, hour, minute, second = (int(g) for g in match.groups())
    year = now.year - 1 if month > now.month else now.year
    try:
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        return None


def last_failure(log: str, issuer: str, now: dt.datetime) -> AuthenticatorFailure | None:
    """The recent failure for ``issuer`` in an API-server log, by the module's rules."""
    for line in reversed(log.splitlines()):
        if MARKER not in line:
            continue
        error = line.split(MARKER, 1)[1].strip()
        urls = _URL.findall(error)
        if urls and not urls[0].startswith(issuer.rstrip("/")):
            continue  # another issuer's authenticator
        at = _when(line, now)
        if at is not None and now - at > RECENT:
            return None
        return AuthenticatorFailure(error, at)
    return None


def explain(failure: AuthenticatorFailure, issuer: str) -> tuple[str, str]:
    """One message and one hint for a failure."""
    host = urlsplit(issuer).hostname or issuer
    cause = failure.cause()
    said = f"(its log: {failure.error})"
    if cause == "resolve":
        return (f"the API server cannot resolve {host}, so its OIDC authenticator never "
                f"initialized and it refuses every token {said}",
                f"make {host} resolve where the API server runs: with kind, create the "
                "cluster from the config 'dexkit render' writes (its kubeadm patch gives the "
                "API server's Pod the name; an edit of the node's /etc/hosts after the Pod "
                "started does not reach it); elsewhere DNS or hostAliases in its static Pod")
    if cause == "reach":
        return (f"the API server cannot reach the issuer {issuer}, so its OIDC authenticator "
                f"never initialized and it refuses every token {said}",
                "is Dex running (dexkit deploy --wait), and does the issuer's host and port "
                "lead to it from the API server's own network (with kind: the issuer port "
                "must equal Dex's NodePort)?")
    if cause == "tls":
        return (f"the API server does not trust Dex's certificate, so its OIDC authenticator "
                f"never initialized and it refuses every token {said}",
                "give the API server the project's ssl/ca.pem at --oidc-ca-file (or the "
                "AuthenticationConfiguration's certificateAuthority), then let it retry")
    if cause == "issuer":
        return (f"the issuer Dex announces is not the API server's {issuer}, so its OIDC "
                f"authenticator never initialized {said}",
                "render Dex's issuer and the API server's issuer URL from one dexkit.yaml")
    return (f"the API server's OIDC authenticator for {issuer} never initialized, so it "
            f"refuses every token {said}", "read the kube-apiserver's log around that line")
