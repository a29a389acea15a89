"""Local checks: dexkit.yaml, the TLS files, and the kubeconfig users that log in to Dex.

Each TLS check judges one thing: the chain check validates at a moment inside both validity
windows, so an expired certificate is reported by ``local.expiry`` alone, and a certificate
for another host by ``local.sans`` alone.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from dexkit import files
from dexkit.config import LOOPBACK_PORTS, Config, OIDCConnector, is_ip
from dexkit.doctor.core import Context, Result, Skip, check, fail, ok, warn
from dexkit.errors import UsageError
from dexkit.kubeconfig import kubeconfig_paths
from dexkit.kubeconfig import load as load_file
from dexkit.kuberc import kuberc_advice, read_policy
from dexkit.oidc import DEFAULT_SCOPES
from dexkit.oidc.discovery import explain_difference
from dexkit.pki import check_key_dir, fingerprint, is_ca, sans_of, verify_chain
from dexkit.pki import key_matches as matches
from dexkit.render.dex import dex_clients, exchange_connector_grants, render_dex_config
from dexkit.sandbox.controlplane import SandboxLayout, sandbox_dir

# warn when a certificate expires within this many days (the guide's certificates live 10)
EXPIRY_WARN_DAYS = 30


def covers(cert: x509.Certificate, host: str) -> bool:
    """Whether the certificate's SANs cover ``host`` (an IP SAN for an address; a DNS SAN or
    a one-label wildcard for a name), as TLS clients match them."""

    dns, ips = sans_of(cert)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.lower().rstrip(".")
        names = {d.lower() for d in dns}
        return name in names or ("." in name and "*." + name.split(".", 1)[1] in names)
    return address in {ipaddress.ip_address(i) for i in ips}


def names_of(cert: x509.Certificate) -> str:
    dns, ips = sans_of(cert)
    return ", ".join(dns + ips) or "none"


@check("local.config")
def config_valid(ctx: Context) -> Result:
    """dexkit.yaml validates and renders."""

    loaded = ctx.loaded
    config = ctx.config  # with --cluster, as that cluster's API server sees it
    render_dex_config(config)  # render-time rules (storage vs replicas, Secret names) too
    where = ctx.relative(loaded.path)
    if loaded.warnings:
        return warn(f"{where}: " + "; ".join(loaded.warnings),
                    "change dexkit.yaml if this is not on purpose")
    return ok(f"{where} is valid: issuer {config.issuer}, client '{config.api_server.client_id}', "
              f"API server mode {config.api_server.mode}")


@check("local.tls-files", needs=("local.config",))
def tls_files(ctx: Context) -> Result:
    """ca.pem, cert.pem and key.pem exist and parse; private keys are readable by the owner only."""
    paths = ctx.paths
    missing = [ctx.relative(p) for p in (paths.ca, paths.cert, paths.key) if not p.is_file()]
    if missing:
        return fail(f"missing {', '.join(missing)}",
                    f"run 'dexkit init --dir {ctx.directory}' to create the TLS files")

    check_key_dir(paths.dir)  # the rule init and certs rotate apply: a FileError fails here
    open_keys = [(p, stat.S_IMODE(p.stat().st_mode)) for p in (paths.key, paths.ca_key)
                 if p.is_file() and stat.S_IMODE(p.stat().st_mode) & 0o077]
    if open_keys:
        listed = ", ".join(f"{ctx.relative(p)} (mode {mode:04o})" for p, mode in open_keys)
        return fail(f"private keys readable by other users: {listed}",
                    "chmod 600 " + " ".join(ctx.relative(p) for p, _ in open_keys))
    ctx.ca, ctx.cert, ctx.key  # noqa: B018 - parse them now: a TLSError fails this check
    note = "" if paths.ca_key.is_file() else \
        f"; {ctx.relative(paths.ca_key)} is not here (kept offline? rotation needs it)"
    return ok(f"{ctx.relative(paths.ca)}, {ctx.relative(paths.cert)}, "
              f"{ctx.relative(paths.key)} present; keys are 0600{note}")


@check("local.key-match", needs=("local.tls-files",))
def key_matches(ctx: Context) -> Result:
    """key.pem is the private key of cert.pem."""

    cert, key = ctx.relative(ctx.paths.cert), ctx.relative(ctx.paths.key)
    if not matches(ctx.cert, ctx.key):
        return fail(f"{key} is not the key of {cert}: Dex cannot serve TLS with this pair",
                    "run 'dexkit certs rotate' to issue a matching pair, then 'dexkit deploy'")
    return ok(f"{key} matches {cert}")


@check("local.chain", needs=("local.tls-files",))
def chain_verifies(ctx: Context) -> Result:
    """cert.pem verifies against ca.pem (RFC 5280 path validation)."""

    ca_name, cert_name = ctx.relative(ctx.paths.ca), ctx.relative(ctx.paths.cert)
    ca, cert = ctx.ca, ctx.cert
    rotate = "run 'dexkit certs rotate' to re-issue cert.pem under this CA"
    if not is_ca(ca):
        return fail(f"{ca_name} is not a CA certificate (basicConstraints CA:FALSE)",
                    "run 'dexkit certs rotate --ca' to create a real CA")
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:
        return fail(f"{cert_name} (issuer {cert.issuer.rfc4514_string()}) was not issued by "
                    f"{ca_name} ({ca.subject.rfc4514_string()})", rotate)
    dns, ips = sans_of(cert)
    # Judge the chain for a name the certificate holds: the issuer's host when it covers it
    # (whether it does is local.sans's job), else its first name.
    host = ctx.config.issuer_host
    name = host if covers(cert, host) else (dns + ips + [""])[0].replace("*.", "wildcard.")
    # Judge the chain alone: at a moment both are valid (expiry is local.expiry's job).
    start = max(ca.not_valid_before_utc, cert.not_valid_before_utc)
    end = min(ca.not_valid_after_utc, cert.not_valid_after_utc)
    if start >= end:
        return fail(f"{cert_name} and {ca_name} are never valid at the same time", rotate)
    moment = start + (end - start) / 2
    problem = verify_chain(ca, cert, name, moment) if name else "the certificate has no SANs"
    if problem:
        return fail(f"{cert_name} does not verify against {ca_name}: {problem}", rotate)
    return ok(f"{cert_name} chains to {ca_name} ({ca.subject.rfc4514_string()})")


@check("local.sans", needs=("local.tls-files",))
def sans_cover_issuer(ctx: Context) -> Result:
    """cert.pem's SANs cover the issuer's host."""
    host, cert_name = ctx.config.issuer_host, ctx.relative(ctx.paths.cert)
    if not covers(ctx.cert, host):
        where = "tls.ips" if is_ip(host) else "tls.hosts"
        return fail(f"{cert_name} does not cover the issuer host '{host}' "
                    f"(SANs: {names_of(ctx.cert)}): every client will refuse Dex's certificate",
                    f"add '{host}' to {where} in dexkit.yaml, run 'dexkit certs rotate' and "
                    "'dexkit deploy'")
    return ok(f"{cert_name} covers '{host}' (SANs: {names_of(ctx.cert)})")


@check("local.expiry", needs=("local.tls-files",))
def expiry(ctx: Context) -> Result:
    """Days until cert.pem and ca.pem expire: warn under 30, fail when expired."""
    now = ctx.now
    lines: list[str] = []
    worst = "ok"
    hints: list[str] = []
    for role, cert, fix in ((ctx.relative(ctx.paths.cert), ctx.cert, "dexkit certs rotate"),
                            (ctx.relative(ctx.paths.ca), ctx.ca, "dexkit certs rotate --ca")):
        left = cert.not_valid_after_utc - now
        until = f"{cert.not_valid_after_utc:%Y-%m-%d}"
        if cert.not_valid_before_utc > now:
            lines.append(f"{role} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
                         " UTC")
            worst = "fail"
            hints.append("check this machine's clock")
        elif left <= dt.timedelta(0):
            lines.append(f"{role} expired on {until}")
            worst = "fail"
            hints.append(f"run '{fix}', then 'dexkit deploy'")
        elif left < dt.timedelta(days=EXPIRY_WARN_DAYS):
            lines.append(f"{role} expires in {left.days} days ({until})")
            worst = "warn" if worst == "ok" else worst
            hints.append(f"run '{fix}' soon, then 'dexkit deploy'")
        else:
            lines.append(f"{role}: {left.days} days left ({until})")
    message = "; ".join(lines)
    if worst == "fail":
        return fail(message, "; ".join(hints))
    if worst == "warn":
        return warn(message, "; ".join(hints))
    return ok(message)


# --- kubeconfig users that log in to this issuer ------------------------------------------------


@dataclass(frozen=True)
class LoginUser:
    """A kubeconfig user whose exec plugin logs in to an issuer: ``dexkit token`` or kubelogin
    (``kubectl oidc-login get-token``), with the settings that matter here."""

    name: str
    source: Path
    tool: str  # "dexkit token" | "kubelogin"
    issuer: str
    client_id: str | None
    scopes: tuple[str, ...]
    ca_files: tuple[str, ...]
    insecure: bool
    client_secret: str | None  # a literal secret on the command line (kubelogin)
    # The redirect URIs a browser login comes back on; empty when unknown or not a browser
    # login (password and device grants need none).
    redirect_uris: tuple[str, ...] = ()
    # dexkit token --audience (one cluster of several); the command kubectl runs.
    audience: str | None = None
    command: str = ""


# dexkit token asks for DEFAULT_SCOPES when none are given; kubelogin always asks for openid
# and adds --oidc-extra-scope values.


def _options(args: list[str]) -> list[tuple[str, str | None]]:
    """``--name=value`` and ``--name value`` pairs (a flag alone has value None)."""
    found: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if eq:
                found.append((name, value))
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                found.append((name, args[i + 1]))
                i += 1
            else:
                found.append((name, None))
        i += 1
    return found


def parse_login_user(name: str, source: Path, user: Any) -> LoginUser | None:
    exec_ = user.get("exec") if isinstance(user, dict) else None
    if not isinstance(exec_, dict):
        return None
    args = [str(a) for a in exec_.get("args") or []]
    opts = _options(args)
    values: dict[str, list[str]] = {}
    for key, value in opts:
        values.setdefault(key, []).append(value or "")
    flags = {key for key, _ in opts}
    if args[:1] == ["token"] and "issuer" in values:  # dexkit token (any way it is started)
        grant = _last(values, "grant") or "authcode"
        ports = [p for p in values.get("listen-port", []) if p.isdigit()] or \
            [str(p) for p in LOOPBACK_PORTS]
        # dexkit's loopback server: http://127.0.0.1:<port>/callback (dexkit.oidc.flows)
        redirects = tuple(f"http://127.0.0.1:{p}/callback" for p in ports) \
            if grant == "authcode" else ()
        return LoginUser(name, source, "dexkit token", _last(values, "issuer") or "",
                         _last(values, "client-id"),
                         tuple(values.get("scope") or DEFAULT_SCOPES),
                         tuple(values.get("ca-file") or ()), "insecure" in flags, None,
                         redirects, _last(values, "audience"), str(exec_.get("command", "")))
    if "oidc-issuer-url" in values:  # kubelogin: kubectl oidc-login get-token / kubelogin
        extra = [s for v in values.get("oidc-extra-scope", []) for s in v.split(",") if s]
        return LoginUser(name, source, "kubelogin", _last(values, "oidc-issuer-url") or "",
                         _last(values, "oidc-client-id"),
                         ("openid", *extra), tuple(values.get("certificate-authority") or ()),
                         "insecure-skip-tls-verify" in flags,
                         _last(values, "oidc-client-secret"))
    return None


def _last(values: dict[str, list[str]], key: str) -> str | None:
    """A string flag's value as both plugins read it: the last one given wins."""
    found = values.get(key)
    return found[-1] if found else None


def _same_issuer(a: str, b: str) -> bool:
    """The same issuer as a person would read it: case, a trailing slash and ``http`` for
    ``https`` aside (a login in clear text to this issuer's host is this issuer's problem)."""
    def plain(issuer: str) -> str:
        text = issuer.rstrip("/").lower()
        return "https://" + text.removeprefix("http://") if text.startswith("http://") else text
    return plain(a) == plain(b)


def kubeconfig_documents(ctx: Context) -> list[tuple[Path, dict[str, Any]]]:
    def load() -> list[tuple[Path, dict[str, Any]]]:
        explicit = ctx.target.kubeconfig
        environ = ctx.edges.environ.get("KUBECONFIG")
        if explicit is None and environ:
            paths = [Path(p) for p in environ.split(os.pathsep) if p]
        else:
            paths = kubeconfig_paths(explicit)
        if explicit is not None and _is_sandbox_admin(ctx, explicit) and not environ:
            # The project's sandbox was picked for the cluster; the users that log in live in
            # the user's own kubeconfig, where 'dexkit kubeconfig' writes them.
            paths += [p for p in kubeconfig_paths(None) if p not in paths]
        docs = [(p, _load_kubeconfig(load_file, p)) for p in paths if p.is_file()]
        for path, doc in docs:
            for name in ("users", "clusters", "contexts"):
                kubeconfig_section(path, doc, name)
        return docs
    return ctx.fact("kubeconfig.documents", load)


def _load_kubeconfig(load_file: Any, path: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = load_file(path)
    except (UnicodeDecodeError, RecursionError) as exc:
        what = "not a text file" if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
        raise UsageError(f"{path} is {what}, not a kubeconfig",
                         "fix or replace the file; 'kubectl config view' shows what kubectl "
                         "makes of it") from None
    return doc


def kubeconfig_section(path: Path, doc: dict[str, Any], name: str) -> list[Any]:
    """``users``/``clusters``/``contexts`` of a kubeconfig: a list, or a clear error."""

    section = doc.get(name)
    if section is None:
        return []
    if not isinstance(section, list):
        raise UsageError(f"{path}: '{name}' is not a list (it is {type(section).__name__})",
                         "fix the kubeconfig; 'kubectl config view' shows what kubectl makes "
                         "of it")
    return section


def _is_sandbox_admin(ctx: Context, path: Path) -> bool:
    return path.resolve() == SandboxLayout(sandbox_dir(ctx.directory.resolve())).kubeconfig


def login_users(ctx: Context) -> list[LoginUser]:
    """kubeconfig users that log in to this issuer (or to one that differs only by case or a
    trailing slash: the classic mismatch)."""
    def load() -> list[LoginUser]:
        found = []
        for path, doc in kubeconfig_documents(ctx):
            for item in kubeconfig_section(path, doc, "users"):
                if not isinstance(item, dict):
                    continue
                user = parse_login_user(str(item.get("name")), path, item.get("user"))
                if user is not None and _same_issuer(user.issuer, ctx.config.issuer):
                    found.append(user)
        return found
    return ctx.fact("kubeconfig.login-users", load)


@check("local.kubeconfig-user", needs=("local.config", "local.tls-files"))
def kubeconfig_user(ctx: Context) -> Result:
    """kubeconfig users for this issuer use its exact URL, the API server's client ID, the
    groups scope, a registered redirect URI and dexkit's CA."""

    users = login_users(ctx)
    if not users:
        raise Skip("no kubeconfig user logs in to this issuer ('dexkit kubeconfig' adds one)")
    config = ctx.config
    problems: list[str] = []
    # (kubelogin's redirect URI depends on its own flags and is not judged here)
    for user in users:
        who = f"kubeconfig user '{user.name}' ({user.tool})"
        if user.issuer != config.issuer:
            problems.append(f"{who} uses issuer '{user.issuer}', not '{config.issuer}': "
                            f"{explain_difference(config.issuer, user.issuer)}")
        audience = user.audience or user.client_id
        accepted = accepted_audiences(config)
        if audience not in accepted:
            problems.append(f"{who} logs in as client '{user.client_id}'"
                            + (f" for audience '{user.audience}'" if user.audience else "")
                            + f", but the API server accepts only tokens for "
                            f"'{' or '.join(accepted)}'")
        groups_claim = config.api_server.groups_claim
        if groups_claim and "groups" not in user.scopes:
            problems.append(f"{who} does not request the 'groups' scope "
                            f"(scopes: {' '.join(user.scopes)}): its tokens carry no "
                            f"'{groups_claim}' claim, so group RBAC never matches")
        problems += _ca_problems(ctx, who, user)
        problems += _redirect_problems(ctx, who, user)
    if problems:
        return fail("; ".join(problems),
                    "rewrite the user with 'dexkit kubeconfig' (it takes issuer, client ID, "
                    "scopes and CA from dexkit.yaml)")
    names = ", ".join(f"'{u.name}'" for u in users)
    return ok(f"{names}: issuer, client ID, groups scope, redirect URIs and CA as dexkit.yaml "
              "says")


def accepted_audiences(config: Config) -> list[str]:
    """The audiences an API server of the project accepts: its client ID, or with several
    clusters any cluster's (a kubeconfig holds a user for each; --cluster chooses which API
    server the other checks look at, not which users may exist)."""
    if config.clusters:
        return [c.client_id for c in config.clusters]
    return [config.api_server.client_id]


@check("local.robots", needs=("local.config",))
def robots(ctx: Context) -> Result:
    """The token-exchange connectors and the robot clients fit the Dex that runs them."""

    config = ctx.config
    exchange = [c for c in config.connectors
                if isinstance(c, OIDCConnector) and c.token_exchange is not None]
    if not exchange and not config.robot_ids:
        raise Skip("no tokenExchange connector and no clientCredentials client")
    parts = [f"connector '{c.id}' exchanges CI tokens of {c.issuer} for audience "
             f"'{c.token_exchange.audience}' (username from '{c.token_exchange.username_claim}')"
             for c in exchange if c.token_exchange is not None]
    parts += [f"client '{r}' logs in as itself (client_credentials)" for r in config.robot_ids]
    if exchange and exchange_connector_grants(config) is None:
        return warn("; ".join(parts) + f"; but Dex {config.dex.image} lists every connector "
                    "on its login page, the token-exchange one too (a browser login through "
                    "it fails)", "Dex 2.46+ (its main branch) takes a connector's grantTypes, "
                    "which dexkit renders to keep it out of browser logins")
    return ok("; ".join(parts))


@check("local.clusters", needs=("local.config",))
def clusters(ctx: Context) -> Result:
    """Each cluster of several has its own audience and a kubeconfig context whose token is
    for it."""
    config = ctx.loaded.config
    if not config.clusters:
        raise Skip("dexkit.yaml lists no clusters (one API server: apiServer)")
    users = login_users(ctx)
    covered = {u.audience for u in users if u.audience}
    missing = [c.name for c in config.clusters if c.client_id not in covered]
    summary = ", ".join(f"{c.name} (aud '{c.client_id}', login through "
                        f"'{config.cluster_login_client(c)}')" for c in config.clusters)
    if missing:
        return warn(f"{summary}; no kubeconfig user logs in for {', '.join(missing)}",
                    "run 'dexkit kubeconfig' (one context per cluster)")
    return ok(f"{summary}; a kubeconfig user for each")


@check("local.kuberc")
def kuberc(ctx: Context) -> Result:
    """kubectl's kuberc lets it run dexkit as a credential plugin (Kubernetes 1.35+)."""

    environ = ctx.edges.environ
    home = Path(environ["HOME"]) if environ.get("HOME") else None
    policy = read_policy(environ, home)
    if policy is None:
        raise Skip("no kuberc: kubectl runs any credential plugin")
    try:
        users = [u for u in login_users(ctx) if u.tool == "dexkit token"] \
            if ctx.passed("local.config") else []
    except Skip:
        users = []
    commands = sorted({u.command for u in users if u.command}) or ["dexkit"]
    problems = [advice for command in commands for advice in kuberc_advice(
        command, environ, home, which=lambda c: shutil.which(c, path=environ.get("PATH")))]
    if problems:
        result = fail if users else warn
        return result(problems[0][0], problems[0][1])
    return ok(f"{policy.path}: credentialPluginPolicy {policy.policy or 'AllowAll'} lets "
              f"kubectl run {', '.join(commands)}")


def _redirect_problems(ctx: Context, who: str, user: LoginUser) -> list[str]:
    """Dex answers 'Unregistered redirect_uri' to a browser login that comes back on a URI its
    client does not list; dexkit's loopback server tries its ports in order, so each one used
    must be registered."""

    client = next((c for c in dex_clients(ctx.config) if c.id == user.client_id), None)
    if client is None or not user.redirect_uris:
        return []
    missing = [uri for uri in user.redirect_uris if uri not in client.redirect_uris]
    if not missing:
        return []
    return [f"{who} logs in on {', '.join(missing)}, which client '{client.id}' does not "
            "register in redirectURIs: Dex refuses that login ('Unregistered redirect_uri')"]


def _ca_problems(ctx: Context, who: str, user: LoginUser) -> list[str]:
    problems = []
    ours = fingerprint(ctx.ca)
    for ca_file in user.ca_files:
        path = Path(ca_file)
        try:
            held = _certs_in(files.read_limited(path, trust=True))
        except OSError as exc:
            problems.append(f"{who} trusts {ca_file}, which cannot be read ({exc.strerror})")
            continue
        except files.FileError as exc:
            problems.append(f"{who} trusts {ca_file}, which dexkit does not read: {exc.message}")
            continue
        if ours not in {fingerprint(c) for c in held}:
            problems.append(f"{who} trusts {ca_file}, which does not hold dexkit's CA "
                            f"({ctx.relative(ctx.paths.ca)})")
    return problems


def _certs_in(data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []
