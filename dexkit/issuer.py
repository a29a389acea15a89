"""The issuer URL, parsed once: every part dexkit takes from an issuer comes from here.

An issuer string is read by several parsers: Go's ``net/url`` in Dex and the API server,
httpx in ``dexkit token``, and formerly ``urllib.parse`` in dexkit itself, which validated
``https://h:1:2`` with one reading of the port and then crashed on another. So dexkit has one
grammar, the strict intersection of theirs, and one function, :func:`parse_issuer`, that both
validates and splits: whatever it accepts, every later use (the port, the host, the path)
reads from its result and cannot fail.

The grammar: ``scheme://host[:port][/path]`` in printable ASCII, where

- the scheme is lower case: Go lower-cases it, so Dex's ``iss`` reads ``https://`` whatever
  the configuration says, and a configured ``HTTPS://`` would never match it byte for byte;
- there is no userinfo (``user:password@``), query or fragment;
- the host is an IP address (IPv6 in brackets, without a zone) or a DNS name (no wildcard,
  and a last label that is not a number: URL parsers read '999.1.1.1' as a bad address);
- the port, when present, is a decimal number from 1 to 65535 without a leading zero;
- the path has only characters a URL path may hold and no ``.``, ``..`` or empty segments
  (Go's HTTP muxes clean such paths and redirect, so Dex's endpoints under them are not where
  the issuer says); a trailing ``/`` is left to the callers' rules.

Imports only the standard library: ``dexkit token`` uses it on its login path.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import dataclass

# scheme "://" authority path ["?" query] ["#" fragment], as RFC 3986 splits a URL.
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)"
                  r"(?P<path>[^?#]*)(?P<rest>[?#].*)?", re.DOTALL)
# RFC 3986 path characters: unreserved, sub-delims, ':' and '@', '/' and %XX escapes.
_URL_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_UNPRINTABLE = re.compile(r"[\x00-\x20\x7f-\x9f]")
_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
EXAMPLE_HINT = "write it as https://host[:port][/path], e.g. https://dex.example.com:32000"


class IssuerError(ValueError):
    """An issuer dexkit cannot use, as one sentence (never with a password in it), and what to
    write instead where that can be said."""

    def __init__(self, message: str, hint: str = EXAMPLE_HINT) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Issuer:
    """The parts of a valid issuer URL (see the module's grammar)."""

    url: str
    scheme: str
    host: str  # as clients connect to it: lower case, an IPv6 address without brackets
    port: int | None  # as written; None when the URL has none
    path: str  # as written: '' or '/...'

    @property
    def effective_port(self) -> int:
        """The port clients connect to: the written one, else the scheme's default."""
        return self.port or (80 if self.scheme == "http" else 443)


def parse_issuer(value: str, shown: str | None = None) -> Issuer:
    """``value`` split by the module's grammar, or :class:`IssuerError` saying what is wrong.

    ``shown`` is how messages name the URL (the caller's redacted form); without it they say
    "the issuer". A part is echoed only when the URL holds no ``@``, so a password in a
    malformed userinfo (``https://u:pw/x@h``) is never printed.
    """
    subject = shown or "the issuer"
    safe = "@" not in value
    if _UNPRINTABLE.search(value) or not value.isascii():
        raise IssuerError(f"{subject} contains white space, a control character or a "
                          "non-ASCII character (Dex and the API server compare it byte for "
                          "byte; spell an international host name in its xn-- form)")
    match = _URL.fullmatch(value)
    if match is None:
        guess = f"write 'https://{value}'" if safe and "/" not in value.split(":", 1)[0] \
            and "://" not in value else EXAMPLE_HINT
        raise IssuerError(f"{subject} is not a URL of the form https://host[:port][/path]",
                          guess)
    scheme, authority, path = match.group("scheme", "authority", "path")
    if scheme != scheme.lower():
        fixed = f"'{scheme.lower()}{value[len(scheme):]}'" if safe else f"'{scheme.lower()}://'"
        raise IssuerError(f"the scheme '{scheme}' must be lower case (Go lower-cases it, so "
                          f"Dex's tokens would name '{scheme.lower()}://...' and never match the "
                          "issuer as written)", f"write {fixed}")
    if "@" in authority:
        raise IssuerError(f"{subject} must not contain credentials (user:password@)")
    if match.group("rest") is not None:
        raise IssuerError(f"{subject} must not have a query or fragment")
    host, port = _host_and_port(authority, subject, safe)
    _check_path(path, subject, f"{scheme}://{authority}" if safe else None)
    return Issuer(url=value, scheme=scheme, host=host, port=port, path=path)


def _host_and_port(authority: str, subject: str, safe: bool) -> tuple[str, int | None]:
    if authority.startswith("["):
        host, closing, after = authority[1:].partition("]")
        address = host.split("%", 1)[0]  # a zone is refused below, by name
        if not closing or not _is_ipv6(address) or (after and not after.startswith(":")):
            raise IssuerError(f"the host in {subject} is not a valid IPv6 address in brackets "
                              "(https://[2001:db8::1]:32000)")
    else:
        host, colon, port_text = authority.partition(":")
        after = colon + port_text
    if not host:
        raise IssuerError(f"{subject} has no host")
    _check_host(host, subject, safe)
    if not after:
        return host.lower(), None
    port = after[1:]
    if not re.fullmatch(r"[1-9][0-9]{0,4}", port) or int(port) > 65535:
        what = f"port '{port}'" if safe and re.fullmatch(r"[0-9:]{0,12}", port) else "port"
        raise IssuerError(f"the {what} in {subject} is not a port from 1 to 65535",
                          "write the port as a number from 1 to 65535 after the host "
                          "(https://dex.example.com:32000), or leave it out for 443")
    return host.lower(), int(port)


def _check_host(host: str, subject: str, safe: bool) -> None:
    """A host clients can connect to and a certificate can name: an IP address (no IPv6
    zone) or a DNS name whose last label is not a number (URL parsers read '999.1.1.1' as a
    bad IPv4 address)."""
    shown = f"'{host}'" if safe else f"in {subject}"
    if "%" in host and ":" in host:  # only an IPv6 address in brackets gets this far with both
        zone = f" ('%{host.split('%', 1)[1]}')" if safe else ""
        raise IssuerError(f"issuer host {shown} has an IPv6 zone{zone}, which only means "
                          "something on one machine and no certificate can hold")
    if host.startswith("*"):
        # A wildcard is a pattern certificates match, not a host anyone can connect to.
        raise IssuerError(f"issuer host {shown} is a wildcard: the issuer names the one host "
                          "clients connect to (a wildcard may go in tls.hosts)")
    if not (is_dns_name(host) or is_ip(host)):
        raise IssuerError(f"issuer host {shown} is not a valid DNS name or IP address")


def is_ip(value: str) -> bool:
    """An IPv4 or IPv6 address a certificate can hold: no IPv6 zone (``fe80::1%eth0``)."""
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_dns_name(value: str) -> bool:
    """A host name for a certificate SAN: labels of letters, digits and hyphens; ``*.`` first.

    The last label may not be a number (``999.1.1.1``, ``10.0x1``): URL parsers (WHATWG, and
    so browsers) read such a host as an IPv4 address, and fail on it.
    """
    name = value[2:] if value.startswith("*.") else value
    # No trailing dot: certificates and TLS server names never carry one (and the
    # verifiers refuse "a." outright).
    if not name or len(name) > 253 or is_ip(name) or name.endswith("."):
        return False
    labels = name.split(".")
    if re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]*", labels[-1]):
        return False
    return all(_HOST_LABEL.match(label) for label in labels)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _check_path(path: str, subject: str, origin: str | None) -> None:
    """``origin`` (scheme and authority) when the URL may be echoed, to say what to write."""
    what = f"the path '{path}'" if origin else f"the path in {subject}"
    if not _URL_PATH.fullmatch(path):
        raise IssuerError(f"{what} has characters a URL path cannot hold unescaped")
    segments = path.split("/")[1:]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash: the callers' rule
    cleaned = ("Go's HTTP servers clean it away and redirect, so Dex's endpoints would not be "
               "where the issuer says")
    for segment in segments:
        decoded = re.sub(r"%2[eE]", ".", segment)
        if decoded in (".", ".."):
            raise IssuerError(f"{what} has a '{decoded}' segment: {cleaned}",
                              _clean_path_hint(path, origin))
        if segment == "":
            raise IssuerError(f"{what} has an empty segment ('//'): {cleaned}",
                              _clean_path_hint(path, origin))


def _clean_path_hint(path: str, origin: str | None) -> str:
    """The issuer as Go's ``path.Clean`` leaves it (what Dex would then serve at)."""
    if origin is None:
        return "write the path without '.', '..' and empty segments"
    decoded = re.sub(r"%2[eE]", ".", path)
    clean = posixpath.normpath("/" + decoded.lstrip("/"))
    return f"write '{origin}{'' if clean == '/' else clean}'"
