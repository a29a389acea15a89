"""The whole chain, proven: TLS trust → discovery → login → token → API server → RBAC.

Rules (the runner is shaped like :mod:`dexkit.doctor.core`'s):

- A step is one small function registered with :func:`step` under its name, in chain order;
  it returns a sentence of what it proved, or raises a :class:`~dexkit.errors.DexkitError`
  whose message and hint become its failure. The steps share one :class:`_State`.
- A step ``needs`` only steps that run before it (a unit test holds the registry to that), and
  runs only when each of them passed; otherwise it is skipped with "an earlier step failed".
  Each step needs the one before it: what a later link reports about a token an earlier link
  refused would mislead, so the first failure is the one reported.
- Each result carries its timing; a failure names the cause and the fix.
- The edges (clock, sleep, wall time, the TLS handshake, the HTTP client to the issuer) come in
  through :class:`Edges`, so unit tests replace them.
"""

from __future__ import annotations

import datetime as dt
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dexkit import kube
from dexkit.apiserverlog import TAIL_LINES, AuthenticatorFailure, explain, last_failure
from dexkit.config import ROBOT_USERNAME_PREFIX, Config
from dexkit.errors import ClusterError, DexkitError, OIDCError, UsageError
from dexkit.kube import Identity, Target
from dexkit.layout import tls_paths
from dexkit.oidc.discovery import Provider, discover, handshake, tls_context
from dexkit.oidc.flows import TokenSet
from dexkit.oidc.session import http_client, run_grant, verify_for
from dexkit.oidc.settings import LoginSettings, project_scopes
from dexkit.render.apiserver.authn import refuses_unverified_email
from dexkit.render.dex import NAME
from dexkit.rollout import not_serving
from dexkit.sandbox.target import running_sandbox

if TYPE_CHECKING:
    import httpx

Status = Literal["ok", "fail", "skip"]


@dataclass(frozen=True)
class Probe:
    """An authorization check: ``list nodes`` must (or must not) be allowed."""

    verb: str
    resource: str
    namespace: str | None = None
    expect_allowed: bool = True

    @classmethod
    def parse(cls, text: str, expect_allowed: bool = True) -> Probe:
        words = text.split()
        if len(words) not in (2, 3):
            raise UsageError(f"'{text}' is not 'VERB RESOURCE [NAMESPACE]'",
                             "for example --can 'list nodes' or --can 'get pods default'")
        return cls(words[0], words[1], words[2] if len(words) == 3 else None, expect_allowed)

    def __str__(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {self.resource}{where}"


@dataclass(frozen=True)
class VerifyRequest:
    config: Config
    project_dir: Path
    target: Target
    # How to log in: dexkit.oidc.settings.project_settings builds it from the project.
    login: LoginSettings
    expect_user: str | None = None
    expect_groups: tuple[str, ...] = ()
    probes: tuple[Probe, ...] = ()
    # The API server retries discovery every 10 s: a fresh issuer may need one more round.
    authenticator_wait: float = 25.0


@dataclass
class StepResult:
    name: str
    status: Status
    detail: str
    hint: str = ""
    seconds: float = 0.0


class Handshake(Protocol):
    def __call__(self, address: str, port: int, server_name: str, context: ssl.SSLContext, *,
                 timeout: float) -> tuple[bytes, str]: ...


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Edges:
    """Everything outside the process the steps lean on, besides the issuer and the cluster
    they prove; unit tests pass fakes."""

    clock: Callable[[], float] = time.monotonic  # timings and the review's deadline
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], dt.datetime] = _utc_now  # to read the API server's log by
    handshake: Handshake = handshake
    http: Callable[[LoginSettings], httpx.Client] = http_client


@dataclass
class _State:
    req: VerifyRequest
    edges: Edges = field(default_factory=Edges)
    http: Any = None
    provider: Provider | None = None
    tokens: TokenSet | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    identity: Identity | None = None


StepFn = Callable[[_State], str]


@dataclass(frozen=True)
class Step:
    name: str
    fn: StepFn
    needs: tuple[str, ...] = ()


STEPS: list[Step] = []


def step(name: str, *, needs: tuple[str, ...] = ()) -> Callable[[StepFn], StepFn]:
    """Register the decorated function as step ``name``, after those registered before it."""
    def register(fn: StepFn) -> StepFn:
        if any(s.name == name for s in STEPS):
            raise ValueError(f"step '{name}' is registered twice")
        STEPS.append(Step(name, fn, needs))
        return fn
    return register


def run_step(chosen: Step, state: _State, results: dict[str, StepResult]) -> StepResult:
    if any(results[need].status != "ok" for need in chosen.needs):
        return StepResult(chosen.name, "skip", "an earlier step failed")
    start = state.edges.clock()
    try:
        detail = chosen.fn(state)
    except DexkitError as exc:
        return StepResult(chosen.name, "fail", exc.message, exc.hint,
                          state.edges.clock() - start)
    return StepResult(chosen.name, "ok", detail, seconds=state.edges.clock() - start)


def run(req: VerifyRequest, edges: Edges | None = None) -> list[StepResult]:
    state = _State(req, edges or Edges())
    results: dict[str, StepResult] = {}
    try:
        for chosen in STEPS:
            results[chosen.name] = run_step(chosen, state, results)
    finally:
        if state.http is not None:
            state.http.close()
    return list(results.values())


def passed(results: list[StepResult]) -> bool:
    return all(r.status == "ok" for r in results)


# --- steps --------------------------------------------------------------------------------------


def _ca_file(state: _State) -> Path:
    return tls_paths(state.req.project_dir, state.req.config).ca


@step("TLS trust")
def step_tls(state: _State) -> str:
    """A TLS handshake with the issuer, trusting only dexkit's CA."""
    host, port = state.req.config.issuer_host, state.req.config.issuer_port
    login = state.req.login
    context = tls_context(None, insecure=login.insecure, more_files=login.ca_files,
                          ca_data=login.ca_data)
    try:
        _, version = state.edges.handshake(host, port, host, context, timeout=5)
    except ssl.SSLCertVerificationError as exc:
        raise OIDCError(f"Dex's certificate is not trusted by {_ca_file(state)}: "
                        f"{exc.verify_message}",
                        "serve Dex with ssl/cert.pem and ssl/key.pem from 'dexkit init' "
                        "('dexkit deploy' updates the TLS secret)") from None
    except OSError as exc:
        why = dex_not_serving(state.req)
        if why:
            raise OIDCError(f"cannot connect to {host}:{port}: Dex's {why}",
                            "scale it up, or run 'dexkit deploy', which applies dexkit.yaml's "
                            "replicas and waits until a login works") from None
        raise OIDCError(f"cannot connect to {host}:{port}: {exc}",
                        "is Dex running, and does the issuer host resolve to it?") from None
    return f"{host}:{port} {version}, certificate verified by ssl/ca.pem"


def dex_not_serving(req: VerifyRequest) -> str:
    """Why Dex's Deployment in the target cluster cannot answer ("Deployment dex/dex is
    scaled to 0 replicas"), or "" when it can, or when there is no such Deployment or no
    cluster to ask (Dex may run elsewhere): asked only once Dex did not answer."""
    ref = kube.ObjectRef("Deployment", NAME, req.config.namespace)
    try:
        found = kube.get_object(kube.connect(req.target), ref)
    except ClusterError:
        return ""
    why = not_serving(found) if found is not None else ""
    return f"{ref.describe()} {why}" if why else ""


@step("issuer discovery", needs=("TLS trust",))
def step_discovery(state: _State) -> str:
    state.http = state.edges.http(state.req.login)
    state.provider = discover(state.http, state.req.login.issuer)
    return f"issuer matches byte for byte; grants: {', '.join(state.provider.grant_types)}"


@step("login", needs=("issuer discovery",))
def step_login(state: _State) -> str:
    assert state.provider is not None
    login = state.req.login
    # a look: no refresh token, which would revoke the one kubectl's cache holds
    state.tokens = run_grant(login.looking_only(), state.http, state.provider)
    return f"{login.grant} grant as {login.username or 'the browser user'}"


@step("token claims", needs=("login",))
def step_token(state: _State) -> str:
    assert state.provider is not None and state.tokens is not None
    api = state.req.config.api_server
    state.claims = verify_for(state.req.login, state.http, state.provider, state.tokens)
    claims = state.claims
    robot = robot_of(state.req.config, claims)
    if robot is not None:
        return (f"aud={claims.get('aud')} iss ok, client '{robot}' as itself, "
                f"{api.groups_claim}={claims.get(api.groups_claim)}")
    if api.username_claim not in claims:
        raise OIDCError(f"the ID token has no '{api.username_claim}' claim (the API server's "
                        "username claim)", f"request the scope that carries it, or set "
                        f"apiServer.usernameClaim to one of {sorted(claims)}")
    if unverified_email(state.req.config, claims):
        raise OIDCError("email_verified is false: the API server refuses an email username "
                        "that is not verified", "verify the address upstream, or use another "
                        "username claim with a prefix")
    groups = claims.get(api.groups_claim)
    if api.groups_claim and groups is None:
        raise OIDCError(f"the ID token has no '{api.groups_claim}' claim",
                        "request the 'groups' scope, and check that the connector returns "
                        "groups")
    return (f"aud={api.client_id} iss ok, {api.username_claim}={claims[api.username_claim]}, "
            f"{api.groups_claim}={groups}")


@step("API server review", needs=("token claims",))
def step_review(state: _State) -> str:
    assert state.tokens is not None
    edges = state.edges
    deadline = edges.clock() + state.req.authenticator_wait
    session = kube.token_session(state.req.target, state.tokens.id_token)
    while True:
        try:
            state.identity = kube.review_identity(session)
            break
        except ClusterError as exc:
            if exc.status != 401:
                raise
            if edges.clock() > deadline:
                failure = authenticator_failure(state.req, edges.now())
                if failure is None:
                    raise
                raise ClusterError(*explain(failure, state.req.config.issuer)) from None
            edges.sleep(2)  # the authenticator may still be fetching Dex's discovery document
    return f"{state.identity.username} in {', '.join(state.identity.groups)}"


def unverified_email(config: Config, claims: dict[str, Any]) -> bool:
    """Whether the API server refuses ``claims`` for an unverified email: the username is the
    email claim and email_verified is false. A token without email_verified passes, as the API
    server checks the claim only when it is present; with apiServer.usernameExpression it is not
    checked at all (the expression and the rules say what is). Shared by verify and doctor."""
    return refuses_unverified_email(config) and claims.get("email_verified") is False


def robot_of(config: Config, claims: dict[str, Any]) -> str | None:
    """The robot client a client_credentials token is of (its azp), else None."""
    party = claims.get("azp")
    return str(party) if party in config.robot_ids else None


def authenticator_failure(req: VerifyRequest, now: dt.datetime) -> AuthenticatorFailure | None:
    """Why the API server's OIDC authenticator is not initialized, from its own log (see
    :mod:`dexkit.apiserverlog`); None when the log cannot be read or names nothing."""
    log = apiserver_log(req.project_dir, req.target)
    return last_failure(log, req.config.issuer, now) if log else None


def apiserver_log(project_dir: Path, target: Target) -> str:
    """The API server's recent log: its static Pod's (kubeadm, kind) through the API with the
    target's own credentials, else the project's running sandbox's log file; '' when neither
    can be read (a managed control plane, or no right to read kube-system's pods)."""
    try:
        cluster = kube.connect(target)
        pods = kube.list_objects(cluster, "Pod", namespace="kube-system",
                                 labels="component=kube-apiserver")
        text = "\n".join(kube.pod_log(cluster, "kube-system", p["metadata"]["name"],
                                       "kube-apiserver", tail=TAIL_LINES) for p in pods)
        if text:
            return text
    except ClusterError:
        pass
    state = running_sandbox(project_dir)
    if state is None or (target.kubeconfig is not None and
                         Path(state.kubeconfig) != Path(target.kubeconfig)):
        return ""
    logs = [Path(p.log) for p in state.processes if p.name == "kube-apiserver"]
    try:
        return logs[-1].read_text(errors="replace")[-200_000:] if logs else ""
    except OSError:
        return ""


def expected_identity(config: Config, claims: dict[str, Any]) -> tuple[str, list[str]]:
    """What the API server must make of ``claims``, by the config's mapping rules (a robot's
    token: 'client:<id>', see dexkit.render.apiserver.username_expression)."""
    api = config.api_server
    robot = robot_of(config, claims)
    username = ROBOT_USERNAME_PREFIX + robot if robot is not None and \
        api.username_expression is None else \
        config.effective_username_prefix + str(claims.get(api.username_claim, ""))
    raw = claims.get(api.groups_claim) or []
    groups = [api.groups_prefix + str(g) for g in (raw if isinstance(raw, list) else [raw])]
    return username, groups


def mapping_mismatch(config: Config, claims: dict[str, Any],
                     identity: Identity) -> tuple[str, str] | None:
    """(message, hint) when the API server's view of ``claims`` is not what the config
    promises; None when it is. Shared by verify and doctor."""
    username, groups = expected_identity(config, claims)
    api = config.api_server
    # A CEL expression (apiServer.usernameExpression/groupsExpression) is the API server's to
    # evaluate: dexkit cannot predict its result, so that part is not compared.
    if api.username_expression is not None:
        username = identity.username
    if api.groups_expression is not None:
        groups = []
    if identity.username != username:
        return (f"the API server sees user '{identity.username}', dexkit.yaml promises "
                f"'{username}'", "the API server's username claim or prefix differs from "
                "dexkit.yaml; re-render its flags (see 'dexkit doctor', apiserver.oidc)")
    missing = [g for g in groups if g not in identity.groups]
    if missing:
        return (f"the API server does not see groups {missing} (it sees "
                f"{list(identity.groups)})", "the API server's groups claim or prefix differs "
                "from dexkit.yaml (see 'dexkit doctor', apiserver.oidc)")
    return None


@step("claim mapping", needs=("API server review",))
def step_mapping(state: _State) -> str:
    assert state.identity is not None
    req, identity = state.req, state.identity
    mismatch = mapping_mismatch(req.config, state.claims, identity)
    if mismatch is not None:
        raise DexkitError(*mismatch)
    _, groups = expected_identity(req.config, state.claims)
    if req.expect_user is not None and identity.username != req.expect_user:
        raise DexkitError(f"user is '{identity.username}', expected '{req.expect_user}'",
                       "log in as the expected user")
    absent = [g for g in req.expect_groups if g not in identity.groups]
    if absent:
        raise DexkitError(f"expected groups {absent} are not among {list(identity.groups)}",
                       "check the user's groups upstream and the groups prefix")
    prefix = req.config.api_server.groups_prefix
    return f"user and {len(groups)} groups as promised (groups prefix '{prefix}')"


@step("authorization", needs=("claim mapping",))
def step_authorization(state: _State) -> str:
    assert state.tokens is not None
    if not state.req.probes:
        return "no probes asked (--can / --cannot)"
    session = kube.token_session(state.req.target, state.tokens.id_token)
    lines = []
    for probe in state.req.probes:
        result = kube.review_access(session, probe.verb, probe.resource, probe.namespace)
        if result.allowed != probe.expect_allowed:
            verdict = "allowed" if result.allowed else "denied"
            raise DexkitError(f"'{probe}' is {verdict}, expected "
                         f"{'allowed' if probe.expect_allowed else 'denied'}",
                         "bind a ClusterRole to the user's (prefixed) group, e.g. rbac: in "
                         "dexkit.yaml and 'dexkit deploy'" if probe.expect_allowed else
                         "this user has more rights than expected; check the bindings")
        lines.append(f"{probe}: {'yes' if result.allowed else 'no'}")
    return "; ".join(lines)


def scopes_for(config: Config) -> tuple[str, ...]:
    """dexkit's scopes for ``config`` (see dexkit.oidc.settings.project_scopes)."""
    return project_scopes(config)

