"""The doctor's machinery: results, the registry of checks, the shared facts, the run.

Rules:

- A check is one small function registered with :func:`check` under an id ``<group>.<name>``;
  it returns :func:`ok`, :func:`warn` or :func:`fail` (each with a message; a hint for the last
  two) or :func:`skip` with the reason. The runner stamps the id on the result.
- Checks run group by group in :data:`GROUPS` order, and in each group in the order of their
  module. A check ``needs`` only checks that run before it (a unit test holds the registry to
  that). It runs only when each of them passed (ok or warn); otherwise it is
  skipped and says which link it waited for, so a broken link is reported once, where it
  breaks, and not again by everything behind it.
- ``cluster`` checks talk to the Kubernetes API and are skipped with ``--offline``; ``login``
  checks need ``--login password|device``.
- Facts several checks share (the config, the certificates, the cluster client, the token) are
  loaded once through :meth:`Context.fact`; a fact that failed to load fails the first check
  that asks for it, and the others that ask step aside (skip) and name that check: one broken
  file is one failure.
- A check never ends the run: a :class:`~dexkit.errors.DexkitError` becomes its failure with the
  error's hint, and any other exception a failure that says the check itself broke.
- The edges (clock, name resolution, the cluster client, HTTP, the environment) come in through
  :class:`Edges`, so unit tests replace them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from dexkit import pki
from dexkit.config import load_config
from dexkit.errors import DexkitError
from dexkit.kube import Target, connect
from dexkit.layout import tls_paths
from dexkit.oidc.discovery import make_client

if TYPE_CHECKING:
    import httpx
    from cryptography import x509

    from dexkit.config import Config, LoadedConfig
    from dexkit.kube import Cluster

Status = Literal["ok", "warn", "fail", "skip"]
LoginMode = Literal["none", "password", "device"]
GROUPS = ("local", "network", "cluster", "apiserver", "token", "security")
T = TypeVar("T")


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What one check found: ``status`` and a sentence, and for warn/fail what to do next."""

    id: str
    status: Status
    message: str
    hint: str = ""

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


def ok(message: str) -> Result:
    return Result("", "ok", message)


def warn(message: str, hint: str) -> Result:
    return Result("", "warn", message, hint)


def fail(message: str, hint: str) -> Result:
    return Result("", "fail", message, hint)


def skip(reason: str) -> Result:
    return Result("", "skip", reason)


class Skip(Exception):
    """Raised inside a check that does not apply here; the message says why."""


# --- the registry ---------------------------------------------------------------------------

CheckFn = Callable[["Context"], Result]


@dataclass(frozen=True)
class Check:
    id: str
    fn: CheckFn
    needs: tuple[str, ...] = ()
    cluster: bool = False
    login: bool = False

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def title(self) -> str:
        """The first line of the function's docstring: what the check proves."""
        return (self.fn.__doc__ or "").strip().split("\n", 1)[0]


REGISTRY: dict[str, Check] = {}


def check(check_id: str, *, needs: tuple[str, ...] = (), cluster: bool = False,
          login: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated function as check ``check_id`` (``group.name``)."""
    group = check_id.split(".", 1)[0]
    if group not in GROUPS or "." not in check_id:
        raise ValueError(f"check id '{check_id}' must be '<group>.<name>' with a group in "
                         f"{GROUPS}")

    def register(fn: CheckFn) -> CheckFn:
        if check_id in REGISTRY:
            raise ValueError(f"check id '{check_id}' is registered twice")
        REGISTRY[check_id] = Check(check_id, fn, needs, cluster, login)
        return fn
    return register


def ordered() -> list[Check]:
    """Every registered check in run order: by group, then as registered in its module."""
    return sorted(REGISTRY.values(), key=lambda c: GROUPS.index(c.group))


# --- what the run is asked to do, and its edges -----------------------------------------------


@dataclass(frozen=True)
class DoctorRequest:
    directory: Path
    target: Target | None = None
    offline: bool = False
    login: LoginMode = "none"
    username: str | None = None
    # One of dexkit.yaml's clusters: the checks see the config as its API server does.
    cluster: str | None = None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, as the system resolver (and so Dex's clients) sees
    them; ``socket.gaierror`` when it does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _connect(target: Target) -> Cluster:
    return connect(target)


def _http(ca_file: Path) -> httpx.Client:
    return make_client(ca_file, timeout=5.0)


@dataclass(frozen=True)
class Edges:
    """Everything outside the process; unit tests pass fakes."""

    clock: Callable[[], dt.datetime] = _utc_now
    resolve: Callable[[str, int], list[str]] = resolve_host
    connect: Callable[[Target], Cluster] = _connect
    http: Callable[[Path], httpx.Client] = _http
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    timeout: float = 5.0


# --- the shared facts -----------------------------------------------------------------------


@dataclass
class _Failed:
    error: BaseException
    # The check that reported it: the others that need the same fact step aside, so that
    # one broken file is one failure, not one per check that reads it.
    reported_by: str | None = None


class Context:
    """One run: the request, the edges, the results so far, and facts loaded once."""

    def __init__(self, request: DoctorRequest, edges: Edges) -> None:
        self.request = request
        self.edges = edges
        self.now = edges.clock()
        self.results: dict[str, Result] = {}
        self._facts: dict[str, object] = {}
        self.current: str | None = None  # the check running now
        self._closers: list[Callable[[], None]] = []

    def fact(self, key: str, load: Callable[[], T]) -> T:
        """``load()`` once per run; its value, or the same exception, every time after."""
        if key not in self._facts:
            try:
                self._facts[key] = load()
            except Exception as exc:
                self._facts[key] = _Failed(exc)
        value = self._facts[key]
        if isinstance(value, _Failed):
            if value.reported_by is None or value.reported_by == self.current:
                value.reported_by = self.current
                raise value.error
            raise Skip(f"needs what {value.reported_by} could not read (reported there)")
        return cast("T", value)

    def provide(self, key: str, value: object) -> None:
        """Set a fact before the checks run (tests; callers that already hold it)."""
        self._facts[key] = value

    def passed(self, check_id: str) -> bool:
        result = self.results.get(check_id)
        return result is not None and result.status in ("ok", "warn")

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):  # best effort at the end of the run
                closer()
        self._closers.clear()

    # facts of the project --------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        return self.request.directory

    @property
    def loaded(self) -> LoadedConfig:
        return self.fact("loaded", lambda: load_config(self.directory))

    @property
    def config(self) -> Config:
        """dexkit.yaml's config; with ``--cluster``, as that cluster's API server sees it."""
        base = self.loaded.config
        name = self.request.cluster
        if name is None:
            return base
        return self.fact("cluster-config", lambda: base.for_cluster(name))

    @property
    def paths(self) -> pki.TLSPaths:
        return tls_paths(self.directory, self.config)

    def relative(self, path: Path) -> str:
        """``ssl/cert.pem`` rather than the absolute path, when it is inside the project."""
        try:
            return str(path.relative_to(self.directory))
        except ValueError:
            return str(path)

    @property
    def ca(self) -> x509.Certificate:
        return self.fact("ca", lambda: pki.load_cert(self.paths.ca))

    @property
    def cert(self) -> x509.Certificate:
        return self.fact("cert", lambda: pki.load_cert(self.paths.cert))

    @property
    def key(self) -> pki.PrivateKey:
        return self.fact("key", lambda: pki.load_key(self.paths.key))

    # the cluster ---------------------------------------------------------------------------------
    @property
    def target(self) -> Target:
        return self.request.target or Target()

    @property
    def cluster(self) -> Cluster:
        return self.fact("cluster", lambda: self.edges.connect(self.target))

    # HTTP to the issuer, trusting only dexkit's CA ----------------------------------------------
    @property
    def http(self) -> httpx.Client:
        def make() -> httpx.Client:
            client = self.edges.http(self.paths.ca)
            self.on_close(client.close)
            return client
        return self.fact("http", make)


# --- the run --------------------------------------------------------------------------------


def _gate(chk: Check, ctx: Context) -> Result | None:
    """A skip when the check cannot run here, else None."""
    if chk.cluster and ctx.request.offline:
        return skip("--offline: the cluster is not contacted")
    if chk.login and ctx.request.login == "none":
        return skip("no login asked for (--login password or --login device)")
    for need in chk.needs:
        got = ctx.results.get(need)
        if got is None:
            return skip(f"needs {need}, which did not run")
        if got.status == "fail":
            return skip(f"needs {need}, which failed")
        if got.status == "skip":
            # Say the root cause, not a chain of "needs X which needs Y".
            return skip(got.message if got.message.startswith(("--offline", "no login"))
                        else f"needs {need}, which was skipped")
    return None


def run_check(chk: Check, ctx: Context) -> Result:
    ctx.current = chk.id
    result = _gate(chk, ctx)
    if result is None:
        try:
            result = chk.fn(ctx)
        except Skip as reason:
            result = skip(str(reason))
        except DexkitError as exc:
            result = fail(exc.message, exc.hint)
        except Exception as exc:
            result = fail(f"the check itself broke: {type(exc).__name__}: {exc}",
                          "report it as a dexkit bug, with this line")
    return replace(result, id=chk.id)


def run_checks(request: DoctorRequest, checks: Sequence[Check],
               edges: Edges | None = None) -> list[Result]:
    ctx = Context(request, edges or Edges())
    try:
        for chk in checks:
            ctx.results[chk.id] = run_check(chk, ctx)
    finally:
        ctx.close()
    return list(ctx.results.values())


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    failed: tuple[str, ...]
    warned: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failed

    def sentence(self) -> str:
        parts = [f"{self.counts.get(s, 0)} {word}" for s, word in
                 (("fail", "failed"), ("warn", "warnings"), ("ok", "ok"), ("skip", "skipped"))]
        verdict = "no broken link found" if self.passed else \
            f"broken: {', '.join(self.failed)}"
        return f"{verdict} ({', '.join(parts)})"


def summarise(results: list[Result]) -> Summary:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return Summary(counts, tuple(r.id for r in results if r.status == "fail"),
                   tuple(r.id for r in results if r.status == "warn"))


def as_json(results: list[Result]) -> dict[str, Any]:
    summary = summarise(results)
    return {
        "passed": summary.passed,
        "counts": summary.counts,
        "failed": list(summary.failed),
        "warnings": list(summary.warned),
        "results": [{"id": r.id, "group": r.group, "status": r.status, "message": r.message,
                     "hint": r.hint} for r in results],
    }
