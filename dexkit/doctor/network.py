"""Network checks, from this machine to the issuer: name, port, TLS, discovery, JWKS.

When the TLS handshake with dexkit's CA fails, the certificate the server presents is fetched
once more without verification and named: ``ssl/cert.pem`` itself, another certificate from
dexkit's CA, a self-signed one, or one from another CA. That answer is the fix.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING, Any

from cryptography import x509

from dexkit.config import OIDCConnector
from dexkit.doctor.core import Context, Result, Skip, check, fail, ok, warn
from dexkit.doctor.local import covers, names_of
from dexkit.errors import OIDCError
from dexkit.oidc.discovery import (
    WELL_KNOWN,
    discover,
    explain_difference,
    get_json,
    handshake,
    tls_context,
)
from dexkit.oidc.flows import CLIENT_CREDENTIALS_GRANT, CLIENT_CREDENTIALS_HINT, EXCHANGE_GRANT
from dexkit.pki import inspect_cert

if TYPE_CHECKING:
    import datetime as dt

    from dexkit.oidc.discovery import Provider

# What the API server's JWT authenticator accepts when no --oidc-signing-algs narrows it (the
# AuthenticationConfiguration has no such field).
KUBERNETES_JWT_ALGS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
                       "PS256", "PS384", "PS512")
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def _where(ctx: Context) -> str:
    return f"{ctx.config.issuer_host}:{ctx.config.issuer_port}"


def addresses(ctx: Context) -> list[str]:
    config = ctx.config
    return ctx.fact("network.addresses",
                    lambda: ctx.edges.resolve(config.issuer_host, config.issuer_port))


@check("network.resolve", needs=("local.config",))
def issuer_resolves(ctx: Context) -> Result:
    """The issuer's host resolves to an address."""
    host = ctx.config.issuer_host
    try:
        found = addresses(ctx)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        return fail(f"the issuer host '{host}' does not resolve ({reason})",
                    f"add '{host}' to DNS, or to /etc/hosts here and on every API-server node "
                    "(for kind, 'dexkit render' writes kind/hosts.sh); the API server must "
                    "resolve it too")
    return ok(f"'{host}' resolves to {', '.join(found)}")


def _first_accepting(ctx: Context) -> str:
    """The first address that accepts TCP on the issuer's port (the one TLS will use)."""
    def connect() -> str:
        port = ctx.config.issuer_port
        errors = []
        for address in addresses(ctx):
            try:
                with socket.create_connection((address, port), timeout=ctx.edges.timeout):
                    return address
            except OSError as exc:
                errors.append(f"{address}: {_os_reason(exc)}")
        raise ConnectionError("; ".join(errors) or "no address")
    return ctx.fact("network.address", connect)


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


@check("network.tcp", needs=("network.resolve",))
def port_accepts(ctx: Context) -> Result:
    """The issuer's port accepts TCP connections."""
    try:
        address = _first_accepting(ctx)
    except ConnectionError as exc:
        service = ctx.config.dex.service
        exposed = f"NodePort {service.node_port}" if service.type == "NodePort" else \
            f"{service.type} port {service.port}"
        return fail(f"nothing accepts TCP connections on {_where(ctx)} ({exc})",
                    "Dex is not running or not reachable at the issuer's port: see "
                    f"cluster.deployment and cluster.service (the Service exposes {exposed}), "
                    "and any port-forward, ingress or load balancer on the way")
    return ok(f"{_where(ctx)} accepts TCP (at {address})")


def _handshake(ctx: Context, verify: bool) -> tuple[bytes, str]:
    """The server's leaf certificate (DER) and TLS version; verified against ssl/ca.pem and
    the issuer's host when ``verify``."""
    host, port = ctx.config.issuer_host, ctx.config.issuer_port
    context = ssl.create_default_context(cafile=str(ctx.paths.ca)) if verify else \
        tls_context(None, insecure=True)
    return handshake(_first_accepting(ctx), port, host, context, timeout=ctx.edges.timeout)


@check("network.tls", needs=("network.tcp", "local.tls-files"))
def tls_handshake(ctx: Context) -> Result:
    """The TLS handshake with the issuer succeeds trusting only dexkit's CA; on failure, whose
    certificate is served."""
    ca_name = ctx.relative(ctx.paths.ca)
    try:
        der, version = _handshake(ctx, verify=True)
    except ssl.SSLCertVerificationError as exc:
        return _untrusted(ctx, exc.verify_message or str(exc))
    except (ssl.SSLError, OSError) as exc:
        return fail(f"the TLS handshake with {_where(ctx)} failed: {_os_reason(exc)}",
                    "is Dex serving https on this port (its web.https listener)? Plain HTTP, or "
                    "a proxy that is not set up for TLS, fails like this")
    served = _served(ctx, der)
    if served == ctx.cert:
        return ok(f"{_where(ctx)} {version}: the server presents "
                  f"{ctx.relative(ctx.paths.cert)}, verified by {ca_name}")
    return warn(f"{_where(ctx)} {version} verifies with {ca_name}, but the server presents "
                f"another certificate from dexkit's CA than {ctx.relative(ctx.paths.cert)} "
                f"(serial {served.serial_number:x}, expires "
                f"{served.not_valid_after_utc:%Y-%m-%d})",
                "a rotated certificate that is not deployed yet: run 'dexkit deploy'")


def _served(ctx: Context, der: bytes) -> x509.Certificate:
    """The server's certificate, inspected whole like dexkit's own (a malformed one is a
    TLSError naming the server, which fails the check)."""

    return inspect_cert(x509.load_der_x509_certificate(der),
                        f"the certificate {_where(ctx)} presents",
                        hint="make Dex serve ssl/cert.pem: run 'dexkit deploy'")


def _untrusted(ctx: Context, reason: str) -> Result:
    try:
        der, _ = _handshake(ctx, verify=False)
        served = _served(ctx, der)
    except (ssl.SSLError, OSError, ValueError) as exc:
        return fail(f"the certificate of {_where(ctx)} does not verify with dexkit's CA "
                    f"({reason}), and could not be fetched to say whose it is: {exc}",
                    "check what listens on the issuer's port")
    message, hint = whose(served, ours=ctx.cert, ca=ctx.ca, host=ctx.config.issuer_host,
                          now=ctx.now, cert_name=ctx.relative(ctx.paths.cert),
                          tls_secret=f"{ctx.config.namespace}/{ctx.config.tls_secret_name}")
    return fail(f"{_where(ctx)}: the certificate does not verify with "
                f"{ctx.relative(ctx.paths.ca)} ({reason}): {message}", hint)


def whose(served: x509.Certificate, *, ours: x509.Certificate, ca: x509.Certificate, host: str,
          now: dt.datetime, cert_name: str = "ssl/cert.pem",
          tls_secret: str) -> tuple[str, str]:
    """Name the certificate a server presents, in relation to dexkit's: a sentence and a hint."""
    deploy = (f"run 'dexkit deploy': it puts {cert_name} and its key into Secret {tls_secret}, "
              "and "
              "Dex restarts with them")
    subject = served.subject.rfc4514_string() or "no subject"
    if served == ours:
        expired = served.not_valid_after_utc <= now
        return (f"the server presents {cert_name} itself"
                + (f", which expired on {served.not_valid_after_utc:%Y-%m-%d}" if expired else ""),
                "fix the local.* checks above ('dexkit certs rotate'), then 'dexkit deploy'")
    if _issued_by(served, ca):
        if not covers(served, host):
            return (f"the server presents a certificate from dexkit's CA for "
                    f"{names_of(served)}, which does not cover '{host}'", deploy)
        if served.not_valid_after_utc <= now:
            return (f"the server presents an older certificate from dexkit's CA that expired "
                    f"on {served.not_valid_after_utc:%Y-%m-%d}", deploy)
        return ("the server presents another certificate from dexkit's CA than "
                f"{cert_name}", deploy)
    elsewhere = (f"; or something other than Dex answers on the issuer's port (an ingress or "
                 f"load balancer with its own certificate): it must present {cert_name}")
    if served.issuer == served.subject and _issued_by(served, served):
        return (f"the server presents a self-signed certificate ({subject}), not {cert_name}",
                deploy + elsewhere)
    return (f"the server presents a certificate issued by '{served.issuer.rfc4514_string()}' "
            f"({subject}), not by dexkit's CA ('{ca.subject.rfc4514_string()}')",
            deploy + elsewhere)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:
        return False
    return True


def discovery_document(ctx: Context) -> dict[str, Any]:
    """``<issuer>/.well-known/openid-configuration``, fetched trusting only dexkit's CA."""

    url = ctx.config.issuer.rstrip("/") + WELL_KNOWN
    return ctx.fact("network.discovery", lambda: get_json(ctx.http, url, "discovery"))


def provider(ctx: Context) -> Provider:
    """The full provider (endpoints for a login), by dexkit's own discovery."""

    return ctx.fact("network.provider", lambda: discover(ctx.http, ctx.config.issuer))


def judge_discovery(document: dict[str, Any], issuer: str, url: str) -> Result:
    """What the API server needs from discovery (the issuer, byte for byte, and the JWKS),
    then what a login needs (the authorization and token endpoints)."""

    published = str(document.get("issuer", ""))
    if published != issuer:
        return fail(f"{url} publishes issuer '{published}', not '{issuer}': "
                    f"{explain_difference(issuer, published)}",
                    "make Dex's 'issuer' and the API server's issuer URL identical, byte for "
                    "byte (both are rendered from dexkit.yaml: 'dexkit deploy', 'dexkit "
                    "apiserver patch')")
    if not document.get("jwks_uri"):
        return fail(f"{url} has no jwks_uri: the API server cannot fetch the signing keys",
                    "is this really Dex? check what serves the issuer URL")
    missing = [k for k in ("authorization_endpoint", "token_endpoint") if not document.get(k)]
    if missing:
        return warn(f"{url} publishes issuer '{published}' (byte for byte) and its keys, but "
                    f"no {' or '.join(missing)}: tokens verify, yet nobody can log in here",
                    "Dex always publishes both: check that Dex, not another issuer, serves "
                    "this URL")
    grants = ", ".join(document.get("grant_types_supported") or []) or "none listed"
    return ok(f"{url} publishes issuer '{published}' (byte for byte); grants: {grants}")


@check("network.discovery", needs=("network.tls",))
def discovery(ctx: Context) -> Result:
    """Discovery answers and its issuer equals the configured issuer byte for byte."""

    url = ctx.config.issuer.rstrip("/") + WELL_KNOWN
    try:
        document = discovery_document(ctx)
    except OIDCError as exc:
        return fail(exc.message, f"{exc.hint}; Dex serves discovery under its issuer's path, "
                    "so a 404 or a page that is not JSON means another path, or another server "
                    "than Dex, behind the issuer URL")
    return judge_discovery(document, ctx.config.issuer, url)


def key_algorithm(key: dict[str, Any]) -> str | None:
    """A JWK's algorithm: its ``alg``, else what its key type implies (Dex always sets alg)."""
    if key.get("alg"):
        return str(key["alg"])
    if key.get("kty") == "RSA":
        return "RS256"
    if key.get("kty") == "EC":
        return _EC_ALGS.get(str(key.get("crv")))
    return None


def accepted_algorithms(ctx: Context) -> tuple[str, ...]:
    api = ctx.config.api_server
    return tuple(api.signing_algs) if api.mode == "flags" else KUBERNETES_JWT_ALGS


def judge_jwks(jwks: dict[str, Any], accepted: tuple[str, ...], uri: str,
               flag: str) -> Result:
    """JWKS keys against the algorithms the API server accepts (pure, for the check and its
    tests)."""
    keys = [k for k in jwks.get("keys") or [] if isinstance(k, dict)]
    signing = [k for k in keys if k.get("use", "sig") == "sig"]
    if not signing:
        return fail(f"the JWKS at {uri} has no signing keys",
                    "Dex creates its signing keys at start: check its storage and its log")
    algs = sorted({a for a in map(key_algorithm, signing) if a})
    usable = [a for a in algs if a in accepted]
    if not usable:
        return fail(f"the JWKS at {uri} has keys for {', '.join(algs) or 'no known algorithm'}"
                    f", but the API server accepts only {', '.join(accepted)}{flag}",
                    "Dex signs ID tokens with RS256: put RS256 in apiServer.signingAlgs and "
                    "re-apply the API server's flags ('dexkit apiserver patch')")
    return ok(f"{len(signing)} signing key(s) at {uri}: {', '.join(algs)}, accepted by the API "
              f"server")


@check("network.jwks", needs=("network.discovery",))
def jwks(ctx: Context) -> Result:
    """JWKS answers with keys of an algorithm the API server accepts."""

    uri = str(discovery_document(ctx)["jwks_uri"])
    document = get_json(ctx.http, uri, "JWKS")
    flags = ctx.config.api_server.mode == "flags"
    return judge_jwks(document, accepted_algorithms(ctx), uri,
                      " (--oidc-signing-algs)" if flags else "")


@check("network.grants", needs=("network.discovery",))
def grants(ctx: Context) -> Result:
    """Dex offers the grants dexkit.yaml's robots need: token exchange, client_credentials."""

    config = ctx.config
    wanted = []
    if any(isinstance(c, OIDCConnector) and c.token_exchange for c in config.connectors):
        wanted.append(EXCHANGE_GRANT)
    if config.robot_ids:
        wanted.append(CLIENT_CREDENTIALS_GRANT)
    if not wanted:
        raise Skip("no robot in dexkit.yaml (tokenExchange, clientCredentials)")
    offered = list(discovery_document(ctx).get("grant_types_supported") or [])
    missing = [g for g in wanted if g not in offered]
    if CLIENT_CREDENTIALS_GRANT in missing:
        return fail(f"the Dex at {config.issuer} does not offer client_credentials (it offers "
                    f"{', '.join(offered) or 'none'}), which client '{config.robot_ids[0]}' "
                    f"needs; dex.image is {config.dex.image}", CLIENT_CREDENTIALS_HINT)
    if missing:
        return fail(f"the Dex at {config.issuer} does not offer token exchange (it offers "
                    f"{', '.join(offered) or 'none'})", "Dex serves it from v2.38: check "
                    "oauth2.grantTypes in dex.extraConfig")
    return ok(f"Dex offers {', '.join(wanted)}")
