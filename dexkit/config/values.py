"""Value rules every section uses, and the defaults dexkit starts from.

The base of every section (:class:`Model`, :class:`Tagged`), the one way a validator reports a
problem (:func:`invalid`: the key, a sentence and a hint, which :mod:`dexkit.config.load` turns
into a line of the file), and the rules for values that several sections and other modules
share: the issuer, Go durations, quoting for messages, URL redaction.
"""

from __future__ import annotations

import json
import re
import typing
from typing import Annotated, Literal, NoReturn, TypeAlias

import msgspec
from msgspec import Meta

from dexkit import redact
from dexkit.issuer import Issuer, parse_issuer

# Re-exported: the host rules live with the issuer's parse, which applies them too.
from dexkit.issuer import is_dns_name as is_dns_name
from dexkit.issuer import is_ip as is_ip

CONFIG_FILE = "dexkit.yaml"
DEFAULT_ISSUER = "https://dex.example.com:32000"
DEFAULT_DEX_IMAGE = "ghcr.io/dexidp/dex:v2.45.1"
DEFAULT_CLIENT_ID = "kubernetes"
# kubelogin's ports: 8000, then 18000 when 8000 is taken (its --listen-address default).
LOOPBACK_PORTS = (8000, 18000)
KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096")
# Kubernetes minors whose API server dexkit renders for (AuthenticationConfiguration from 1.30).
# A minor newer than the newest is rendered as the newest, with a warning.
SUPPORTED_MINORS = range(30, 38)
# What dexkit proves on real API servers in CI (and the node on the newest); the default.
PROVEN_MINORS = range(35, 38)
DEFAULT_KUBERNETES_VERSION = "1.37"
# End of life of the minors dexkit still renders for but no longer proves (kubernetes.io's
# release history: 14 months after each release, the last patch on these days).
END_OF_LIFE: dict[int, str] = {30: "2025-06-28", 31: "2025-10-28", 32: "2026-02-28",
                               33: "2026-06-28", 34: "2026-10-27"}

KeyType: TypeAlias = Literal["ecdsa-p256", "rsa-2048", "rsa-3072", "rsa-4096"]
Port: TypeAlias = Annotated[int, Meta(ge=1, le=65535)]

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SEP = "\x1f"  # separates key, message and hint inside a validator's ValueError
_PART = "\x1e"  # separates the parts of a nested key inside it


def invalid(key: str | tuple[str | int, ...], message: str, hint: str = "") -> NoReturn:
    """Raise a validation error about ``key`` of the struct being checked, with a hint.

    A tuple names a nested key (``("extraConfig", "web")``), so the error points at its line.
    The text it raises is a small protocol that :mod:`dexkit.config.load` reads back; that
    module's docstring describes it.
    """
    if isinstance(key, tuple):
        key = _PART.join(str(part) for part in key)
    # The separators can never come from a value (a \x1f in an issuer once split the hint).
    clean = [part.replace(_SEP, "\\x1f") for part in (key, message, hint)]
    raise ValueError(_SEP + _SEP.join(clean))


class Model(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True,
            kw_only=True):
    """Base of every section: camelCase keys, unknown keys rejected, immutable."""


class Tagged(Model, frozen=True):
    """A member of a tagged union (connectors, storage): ``type`` is its tag in the YAML."""

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


# --- validators shared by several sections ---------------------------------------------------


_userinfo_span = redact.userinfo_span


def redact_url(value: str) -> str:
    """``value`` with any ``user:password@`` replaced by ``***@``: safe to print (the one rule
    every printer applies, :func:`dexkit.redact.url`)."""
    return redact.url(value)


def check_issuer(value: str) -> Issuer:
    """The rules the API server and Dex put on an issuer URL, as one readable error each; the
    issuer's parts, from the one parse every later use reads (:func:`dexkit.issuer.parse_issuer`).

    Credentials are checked first, and every message shows the URL without them: a password
    in an issuer must never reach a terminal or a CI log.
    """
    shown = quoted(redact_url(value))
    if _userinfo_span(value) is not None:
        raise ValueError(f"issuer must not contain credentials: {shown}")
    if re.search(r"[\x00-\x20\x7f-\x9f]", value) or not value.isascii():
        raise ValueError(f"issuer {json_quote(redact_url(value))} contains white space, a "
                         "control character or a non-ASCII character (Dex and the API server "
                         "compare it byte for byte; spell an international host name in its "
                         "xn-- form)")
    parts = parse_issuer(value, shown)
    if parts.scheme != "https":
        raise ValueError(f"issuer must be an https URL, got {shown} "
                         "(the API server accepts only https issuers)")
    if parts.path.endswith("/"):
        raise ValueError(f"issuer must not end with '/': {shown} (Dex and the API server "
                         "compare the issuer byte for byte; a trailing slash is the classic "
                         "mismatch)")
    return parts


def json_quote(value: str) -> str:
    """``value`` quoted with escapes, so white space and control characters show."""

    return json.dumps(value)


def quoted(value: str) -> str:
    """``'value'`` for a message; with JSON escapes when it holds anything unprintable (a
    control character must not reach the terminal, nor break the message into lines)."""
    return f"'{value}'" if value.isprintable() else json_quote(value)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                   "m": 60.0, "h": 3600.0}
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
# Go's time.Duration is an int64 of nanoseconds.
_MAX_DURATION = (2**63 - 1) * 1e-9


def duration_seconds(value: str) -> float:
    """Seconds in a Go duration (``24h``, ``1h30m``, ``90s``), as Dex parses its expiries with
    ``time.ParseDuration``; ValueError for anything it would refuse, or that is not positive."""
    text = value.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        match = _GO_DURATION.match(text, pos)
        if match is None:
            raise ValueError(f"'{value}' is not a duration (Go syntax: a number and a unit ns, "
                             "us, ms, s, m or h, e.g. '24h' or '1h30m')")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if text != value or not text:
        raise ValueError(f"'{value}' is not a duration (e.g. '24h' or '1h30m')")
    if total <= 0 or total > _MAX_DURATION:
        raise ValueError(f"duration '{value}' must be more than 0 and at most 2562047h")
    return total


def issuer_port(issuer: str) -> int:
    """The port clients connect to (ValueError for an issuer :func:`check_issuer` refuses)."""
    return parse_issuer(issuer).effective_port


def issuer_host(issuer: str) -> str:
    """The host clients connect to (ValueError for an issuer :func:`check_issuer` refuses)."""
    return parse_issuer(issuer).host


def _checked(key: str, check: typing.Callable[[str], object], value: str, hint: str = "") -> None:
    try:
        check(value)
    except ValueError as exc:
        invalid(key, str(exc), hint or getattr(exc, "hint", ""))
