"""The sandbox's peers: etcd, kube-apiserver, kubectl, Dex (and kubelogin, helm), built from
their Go modules (and, for the node sandbox, kubelet, kube-proxy, kube-controller-manager and
kube-scheduler; for the kind harness, kubeadm, kind and CoreDNS).

Rules:
- A peer is found, in this order: the environment variable named in :data:`ENV_OVERRIDES`
  (a path to a binary; it wins over everything), then the cache
  ``${DEXKIT_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/dexkit}/bin/<name>-<version>/<name>``.
- A build never runs anything but the machine's ``go``: it generates a small module in the
  cache's ``work`` directory, lets ``go get`` resolve it through the configured module proxy
  with checksum verification left on, and links the binary into a temporary name that is
  renamed into place only once it is complete, next to a JSON manifest (versions, Go version,
  sha256, build time).
- kube-apiserver, kubectl and the node's four components come from ``k8s.io/kubernetes`` (one
  generated module, so one ``go get`` and a shared build cache), whose go.mod replaces its staging
  modules (``k8s.io/api`` …) with local directories; the generated module replaces each of them
  with the matching ``v0.<minor>.<patch>`` release. The list is read from the real go.mod of the
  requested version, never written down here.
- Dex is required at the pseudo-version of its release commit: its ``v2.x`` tags are not valid
  versions of the module ``github.com/dexidp/dex`` (no ``/v2`` suffix), and it is built with
  ``CGO_ENABLED=0`` (memory and kubernetes storage need no cgo).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dexkit import files
from dexkit.errors import DexkitError, UsageError

Progress = Callable[[str], None]

# Kubernetes minors the sandbox serves, each pinned to a patch release that the module proxy
# serves. The default is the newest; the proven range (what CI runs the API-server side on) is
# every minor here. 1.34 reached end of life on 2026-10-27 and is no longer built.
KUBERNETES_RELEASES: dict[str, str] = {
    "1.35": "1.35.4",
    "1.36": "1.36.3",
    "1.37": "1.37.2",
}
DEFAULT_KUBERNETES = "1.37"

# The etcd release kubeadm 1.37 runs (DefaultEtcdVersion "3.7.0-0" in k8s.io/kubernetes
# v1.37.2, cmd/kubeadm/app/constants/constants.go; 1.35 and 1.36 use it too).
ETCD_VERSION = "3.7.0"
ETCD_MODULE = "go.etcd.io/etcd/server/v3"

DEX_MODULE = "github.com/dexidp/dex"


@dataclass(frozen=True)
class DexBuild:
    """One Dex the sandbox can build: a release, or a commit of Dex's main branch.

    Dex's ``v2.x`` tags are not versions of the module ``github.com/dexidp/dex`` (no ``/v2``
    suffix), so every Dex is required at the pseudo-version of its commit:
    ``v0.0.0-<committer time, UTC>-<first 12 hex digits>``.
    """

    version: str  # what Dex calls itself (main.version without the v)
    commit: str
    module_version: str
    what: str  # said wherever the peer is named
    # Packages of Dex's module replaced at build time by dexkit's own source (see DEX_MAIN).
    replaced: tuple[tuple[str, str], ...] = ()

    @property
    def is_release(self) -> bool:
        return "-" not in self.version


# v2.45.1 is commit 11d2eeb52b42 (committed 2026-03-03 13:39:05 UTC).
DEX_RELEASE = DexBuild(
    version="2.45.1", commit="11d2eeb52b42e1980e14cb91e69dd9e3faab2076",
    module_version="v0.0.0-20260303133905-11d2eeb52b42", what="Dex v2.45.1 (release)")
# The code of Dex's next release: main at ab64ed778070 (committed 2026-08-06 15:14:24 UTC). Not
# a release. Its version is what Dex's own scripts/git-version gives an untagged commit: the
# newest tag with the minor bumped, the committer time as git prints it (%ci, local time of the
# commit: 17:14:24 +02:00) and eight hex digits.
#
# Built without its gRPC admin API. Dex's go.mod replaces github.com/dexidp/dex/api/v2 with its
# own ./api/v2, a replace that does not apply when Dex is required from another module; the
# require then gives api/v2 v2.4.0, which lacks what main's server/apiserver implements
# (UserIdentity, MFA, sessions, new client fields), and the module proxy serves no api/v2 of a
# later commit (every pseudo-version of the 17 commits that changed it since api/v2.4.0: 403).
# So server/apiserver, whose one caller registers the gRPC API when `grpc.addr` is set, is
# replaced by dexkit's package that answers every call Unimplemented. Everything else
# (server, storage, connectors, grants) is main's code as the module proxy serves it.
_DEX_MAIN_APISERVER = """\
// Package apiserver, replaced by dexkit for its Dex-main test peer: the module proxy serves no
// github.com/dexidp/dex/api/v2 of this Dex commit, and v2.4.0 lacks what Dex's own package
// implements. Dex's gRPC admin API therefore answers every call Unimplemented.
package apiserver

import (
	"log/slog"

	"github.com/dexidp/dex/api/v2"
	"github.com/dexidp/dex/server/backchannel"
	"github.com/dexidp/dex/server/connectors"
	"github.com/dexidp/dex/server/discovery"
	"github.com/dexidp/dex/storage"
)

// NewAPI has Dex's signature (cmd/dex/serve.go is its one caller).
func NewAPI(s storage.Storage, logger *slog.Logger, version string, conns *connectors.Cache,
	disc *discovery.Handler, bc *backchannel.Notifier) api.DexServer {
	logger.Warn("this Dex was built by dexkit without its gRPC API: every call is Unimplemented")
	return api.UnimplementedDexServer{}
}
"""
DEX_MAIN = DexBuild(
    version="2.46.0-20260806171424-ab64ed77", commit="ab64ed778070e983cbb10cfc07ea4bb397d14312",
    module_version="v0.0.0-20260806151424-ab64ed778070",
    what="Dex main at commit ab64ed778070 (2026-08-06; not a release; built without its gRPC "
         "admin API)",
    replaced=(("github.com/dexidp/dex/server/apiserver", _DEX_MAIN_APISERVER),))
DEX_BUILDS: dict[str, DexBuild] = {"release": DEX_RELEASE, "main": DEX_MAIN}
DEFAULT_DEX = "release"
# Kept for callers and the README: the default Dex.
DEX_VERSION = DEX_RELEASE.version
DEX_COMMIT = DEX_RELEASE.commit
DEX_PSEUDO = DEX_RELEASE.module_version

KUBELOGIN_VERSION = "1.34.0"
KUBELOGIN_MODULE = "github.com/int128/kubelogin"

# Helm, for `helm template` over the official Dex chart (render --format helm-values). Helm 4:
# this machine's package list approves helm.sh/helm/v4 v4.3.2, not helm.sh/helm/v3 v3.22.0.
HELM_VERSION = "4.3.2"
HELM_MODULE = "helm.sh/helm/v4"

# kind and what a kind node image needs besides Kubernetes (the kind harness, level 3). kind's
# release is the one whose default node image is Kubernetes 1.37 (kindest/node:v1.37.0).
KIND_VERSION = "0.33.0"
KIND_MODULE = "sigs.k8s.io/kind"
# The CoreDNS kubeadm 1.37 asks for (CoreDNSVersion "v1.14.6" in k8s.io/kubernetes v1.37.2,
# cmd/kubeadm/app/constants/constants.go); one build serves every minor's node image.
COREDNS_VERSION = "1.14.6"
COREDNS_MODULE = "github.com/coredns/coredns"

KUBERNETES_MODULE = "k8s.io/kubernetes"
# What the node sandbox (`dexkit sandbox up --node`) adds to the control plane; `--only node`
# names all four.
NODE_PEERS = ("kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
NODE_ALIAS = "node"
# kubeadm and kind: what a kind node image and `kind create cluster` need (the kind harness).
KUBERNETES_PEERS = ("kube-apiserver", "kubectl", *NODE_PEERS, "kubeadm")
PEER_NAMES = ("etcd", "kube-apiserver", "kubectl", "dex", "kubelogin", "helm", *NODE_PEERS,
              "kubeadm", "kind", "coredns")
# Peers `dexkit sandbox build` builds when no --only is given; kubelogin, helm and the node's
# components are on request.
DEFAULT_PEERS = ("etcd", "kube-apiserver", "kubectl", "dex")
ENV_OVERRIDES = {
    "etcd": "DEXKIT_ETCD",
    "kube-apiserver": "DEXKIT_KUBE_APISERVER",
    "kubectl": "DEXKIT_KUBECTL",
    "dex": "DEXKIT_DEX",
    "kubelogin": "DEXKIT_KUBELOGIN",
    "helm": "DEXKIT_HELM",
    "kube-controller-manager": "DEXKIT_KUBE_CONTROLLER_MANAGER",
    "kube-scheduler": "DEXKIT_KUBE_SCHEDULER",
    "kubelet": "DEXKIT_KUBELET",
    "kube-proxy": "DEXKIT_KUBE_PROXY",
    "kubeadm": "DEXKIT_KUBEADM",
    "kind": "DEXKIT_KIND",
    "coredns": "DEXKIT_COREDNS",
}
MANIFEST = "manifest.json"
HEARTBEAT_SECONDS = 30.0
GO_TAIL_LINES = 30


# --- versions -------------------------------------------------------------------------------

_K8S_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")


def resolve_kubernetes_version(wanted: str | None = None) -> str:
    """``1.34`` / ``v1.34`` / ``1.34.4`` / ``v1.34.4`` -> ``1.34.4`` (a served release).

    A minor picks its pinned patch; an explicit patch of a served minor is taken as given (the
    module proxy decides whether it exists).
    """
    text = (wanted or DEFAULT_KUBERNETES).strip()
    match = _K8S_VERSION.match(text)
    if not match:
        raise UsageError(f"'{wanted}' is not a Kubernetes version",
                         f"use one of {', '.join(KUBERNETES_RELEASES)} (or a patch, e.g. "
                         f"{KUBERNETES_RELEASES[DEFAULT_KUBERNETES]})")
    major, minor, patch = match.groups()
    key = f"{major}.{minor}"
    if key not in KUBERNETES_RELEASES:
        raise UsageError(f"Kubernetes {key} is not served by the sandbox",
                         f"use one of {', '.join(KUBERNETES_RELEASES)}")
    return f"{key}.{patch}" if patch is not None else KUBERNETES_RELEASES[key]


def staging_version(kubernetes_version: str) -> str:
    """The staging modules' release for a Kubernetes release: ``1.34.4`` -> ``v0.34.4``."""
    major, minor, patch = kubernetes_version.lstrip("v").split(".")
    if major != "1":
        raise UsageError(f"Kubernetes {kubernetes_version} has no staging-module mapping",
                         "use a 1.x release")
    return f"v0.{minor}.{patch}"


_PSEUDO = re.compile(r"^v0\.0\.0-(\d{14})-([0-9a-f]{12})$")


def pseudo_version(commit: str, committed_at: dt.datetime) -> str:
    """The Go pseudo-version of an untagged commit: ``v0.0.0-<UTC yyyymmddhhmmss>-<12 hex>``."""
    if not re.fullmatch(r"[0-9a-f]{12,40}", commit):
        raise UsageError(f"'{commit}' is not a git commit hash", "give 12 to 40 hex digits")
    if committed_at.tzinfo is None:
        raise UsageError("the commit time needs a time zone", "give it in UTC")
    stamp = committed_at.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S")
    return f"v0.0.0-{stamp}-{commit[:12]}"


def check_pseudo_version(version: str, commit: str) -> None:
    """Refuse a pseudo-version that is malformed or names another commit."""
    match = _PSEUDO.match(version)
    if not match:
        raise UsageError(f"'{version}' is not a v0.0.0 pseudo-version",
                         "expected v0.0.0-<yyyymmddhhmmss>-<12 hex digits>")
    if not commit.startswith(match[2]):
        raise UsageError(f"pseudo-version {version} names commit {match[2]}, not {commit[:12]}",
                         "take the commit hash of the release tag")


def kubernetes_ldflags(kubernetes_version: str, *, commit: str = "",
                       build_date: str = "") -> list[str]:
    """``-X`` flags so that ``--version`` and ``/version`` report the real release."""
    major, minor, _ = kubernetes_version.split(".")
    values = {
        "gitVersion": f"v{kubernetes_version}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
    }
    if commit:
        values["gitCommit"] = commit
    if build_date:
        values["buildDate"] = build_date
    flags: list[str] = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.{key}={value}" for key, value in values.items()]
    return flags


# --- go.mod ---------------------------------------------------------------------------------

_REPLACE_LINE = re.compile(
    r"^(?P<path>\S+)(?:\s+(?P<version>v\S+))?\s*=>\s*(?P<target>\S+)(?:\s+(?P<tversion>v\S+))?$"
)


@dataclass(frozen=True)
class Replace:
    path: str
    target: str
    version: str | None = None
    target_version: str | None = None

    @property
    def is_local(self) -> bool:
        """A replacement by a directory (``./x``, ``../x`` or absolute), not by a module."""
        return self.target.startswith(("./", "../", "/")) or self.target in (".", "..")


def parse_replaces(gomod: str) -> list[Replace]:
    """Every ``replace`` directive of a go.mod text, single-line or in a block."""
    replaces: list[Replace] = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if in_block:
            if line == ")":
                in_block = False
                continue
            body = line
        elif line.startswith("replace"):
            rest = line[len("replace"):].strip()
            if rest == "(":
                in_block = True
                continue
            if not rest or not raw.lstrip().startswith(("replace ", "replace\t", "replace(")):
                continue
            body = rest
        else:
            continue
        match = _REPLACE_LINE.match(body)
        if match:
            replaces.append(Replace(path=match["path"], target=match["target"],
                                    version=match["version"],
                                    target_version=match["tversion"]))
    return replaces


def staging_modules(gomod: str) -> list[str]:
    """The modules that k8s.io/kubernetes replaces with its own ``staging/`` directories."""
    modules = [r.path for r in parse_replaces(gomod)
               if r.is_local and r.target.lstrip("./").startswith("staging/")]
    if not modules:
        raise DexkitError("the k8s.io/kubernetes go.mod lists no staging modules",
                          "the module layout changed; check the go.mod of that release")
    return sorted(set(modules))


# --- where peers live -----------------------------------------------------------------------


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    """``$DEXKIT_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/dexkit``."""
    environ = os.environ if env is None else env
    if environ.get("DEXKIT_CACHE_DIR"):
        return Path(environ["DEXKIT_CACHE_DIR"]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "dexkit"


@dataclass(frozen=True)
class PeerSpec:
    """How to build one peer."""

    name: str
    version: str  # the release, without a leading v (1.34.4, 3.6.16, 2.45.1)
    module: str  # the module to require
    module_version: str  # the version to require it at (a tag or a pseudo-version)
    package: str  # the main package to build
    cgo: bool | None = None  # None: the toolchain default
    ldflags: tuple[str, ...] = ()
    # Modules (this peer's own, never a dependency) whose version the checksum database does
    # not know; only these skip it (GONOSUMDB), and only for this build.
    unverified: tuple[str, ...] = ()
    # (package, Go source): packages compiled from dexkit's source instead of the module's
    # (the module is vendored and `go build -overlay` swaps the package's files).
    replaced: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


def peer_spec(name: str, kubernetes_version: str | None = None,
              env: Mapping[str, str] | None = None, *, dex: str | None = None) -> PeerSpec:
    """How to build ``name``; ``dex`` picks the Dex (:data:`DEX_BUILDS`: ``release``, the
    default, or ``main``)."""
    environ = os.environ if env is None else env
    if name in KUBERNETES_PEERS:
        version = resolve_kubernetes_version(kubernetes_version)
        return PeerSpec(name=name, version=version, module=KUBERNETES_MODULE,
                        module_version=f"v{version}",
                        package=f"{KUBERNETES_MODULE}/cmd/{name}")
    if name == "etcd":
        return PeerSpec(name="etcd", version=ETCD_VERSION, module=ETCD_MODULE,
                        module_version=f"v{ETCD_VERSION}", package=ETCD_MODULE)
    if name == "dex":
        build = dex_build(dex)
        pseudo, version = build.module_version, build.version
        if build is DEX_RELEASE:
            pseudo = environ.get("DEXKIT_DEX_MODULE_VERSION") or pseudo
            version = environ.get("DEXKIT_DEX_VERSION") or version
        return PeerSpec(name="dex", version=version, module=DEX_MODULE,
                        module_version=pseudo, package=f"{DEX_MODULE}/cmd/dex", cgo=False,
                        # Dex's Makefile stamps its version the same way.
                        ldflags=(f"-X main.version=v{version}",), replaced=build.replaced)
    if name == "kubelogin":
        # The checksum database answers 404 for kubelogin v1.34.x through this machine's proxy,
        # so that one module is taken from the proxy unverified; its dependencies still are.
        return PeerSpec(name="kubelogin", version=KUBELOGIN_VERSION, module=KUBELOGIN_MODULE,
                        module_version=f"v{KUBELOGIN_VERSION}", package=KUBELOGIN_MODULE,
                        cgo=False, ldflags=(f"-X main.version=v{KUBELOGIN_VERSION}",),
                        unverified=(KUBELOGIN_MODULE,))
    if name == "helm":
        # Helm's Makefile stamps its version the same way; CGO off as in its release builds.
        return PeerSpec(name="helm", version=HELM_VERSION, module=HELM_MODULE,
                        module_version=f"v{HELM_VERSION}", package=f"{HELM_MODULE}/cmd/helm",
                        cgo=False, ldflags=(
                            f"-X {HELM_MODULE}/internal/version.version=v{HELM_VERSION}",
                            f"-X {HELM_MODULE}/internal/version.gitTreeState=clean"))
    if name == "kind":
        return PeerSpec(name="kind", version=KIND_VERSION, module=KIND_MODULE,
                        module_version=f"v{KIND_VERSION}", package=KIND_MODULE, cgo=False)
    if name == "coredns":
        # Static, as in CoreDNS's release images (its Makefile builds with CGO_ENABLED=0): the
        # node image's CoreDNS image is that one file.
        return PeerSpec(name="coredns", version=COREDNS_VERSION, module=COREDNS_MODULE,
                        module_version=f"v{COREDNS_VERSION}", package=COREDNS_MODULE, cgo=False,
                        ldflags=("-s", "-w"))
    raise UsageError(f"unknown peer '{name}'", f"use one of {', '.join(PEER_NAMES)}")


def dex_build(which: str | None = None) -> DexBuild:
    """``release`` (the default) or ``main``."""
    key = which or DEFAULT_DEX
    if key not in DEX_BUILDS:
        raise UsageError(f"unknown Dex build '{key}'", f"use one of {', '.join(DEX_BUILDS)}")
    return DEX_BUILDS[key]


def dex_build_for_version(version: str) -> str | None:
    """The key of the build whose version is ``version`` (``v`` optional), if any."""
    wanted = version.removeprefix("v")
    return next((key for key, build in DEX_BUILDS.items() if build.version == wanted), None)


def dex_build_for_image(image: str) -> str | None:
    """The build whose version an image's tag names (``ghcr.io/dexidp/dex:v2.45.1`` ->
    ``release``), if any: the sandbox runs the Dex that the project's image would run."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return dex_build_for_version(name.split(":", 1)[1]) if ":" in name else None


@dataclass(frozen=True)
class Manifest:
    """What was built, recorded beside the binary."""

    name: str
    version: str
    module: str
    module_version: str
    package: str
    go_version: str
    sha256: str
    built_at: str
    build_seconds: float
    cgo: bool | None = None
    ldflags: tuple[str, ...] = ()
    unverified: tuple[str, ...] = ()  # modules fetched without the checksum database
    replaced: tuple[str, ...] = ()  # packages compiled from dexkit's source instead

    def to_json(self) -> str:
        data = asdict(self)
        data["ldflags"] = list(self.ldflags)
        data["unverified"] = list(self.unverified)
        data["replaced"] = list(self.replaced)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data: dict[str, Any] = json.loads(text)
        data["ldflags"] = tuple(data.get("ldflags", ()))
        data["unverified"] = tuple(data.get("unverified", ()))
        data["replaced"] = tuple(data.get("replaced", ()))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class PeerLocation:
    """Where a peer is, or would be once built."""

    name: str
    version: str
    path: Path
    source: str  # "env" | "cache" | "missing"
    manifest: Manifest | None = None

    @property
    def available(self) -> bool:
        return self.source != "missing"


def binary_dir(spec: PeerSpec, root: Path | None = None) -> Path:
    return (root or cache_root()) / "bin" / spec.key


def locate(spec: PeerSpec, *, root: Path | None = None,
           env: Mapping[str, str] | None = None) -> PeerLocation:
    """Find ``spec``'s binary: its environment override, then the cache."""
    environ = os.environ if env is None else env
    override = environ.get(ENV_OVERRIDES[spec.name], "")
    if override:
        path = Path(override).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DexkitError(f"{ENV_OVERRIDES[spec.name]}={override} is not an executable file",
                              f"point it at a {spec.name} binary or unset it")
        return PeerLocation(spec.name, spec.version, path, "env")
    directory = binary_dir(spec, root)
    path = directory / spec.name
    manifest_path = directory / MANIFEST
    if path.is_file() and os.access(path, os.X_OK) and manifest_path.is_file():
        try:
            manifest = Manifest.from_json(manifest_path.read_text())
        except (ValueError, TypeError):
            manifest = None
        # An entry built from something else under the same name (another module version,
        # package or Go flags: an older dexkit, an override) is stale: it is rebuilt over.
        if manifest is not None and _built_from(manifest, spec):
            return PeerLocation(spec.name, spec.version, path, "cache", manifest)
    return PeerLocation(spec.name, spec.version, path, "missing")


def _built_from(manifest: Manifest, spec: PeerSpec) -> bool:
    same = (manifest.module, manifest.module_version, manifest.package, manifest.replaced) == (
        spec.module, spec.module_version, spec.package, tuple(p for p, _ in spec.replaced))
    # Kubernetes peers' ldflags carry the commit and build date: compare only fixed ones.
    return same and (spec.module == KUBERNETES_MODULE or manifest.ldflags == spec.ldflags)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- building -------------------------------------------------------------------------------


@dataclass
class GoRunner:
    """Runs ``go`` with one environment, output to a log, progress on a heartbeat."""

    workdir: Path
    log_path: Path
    progress: Progress
    go: str = "go"
    env: dict[str, str] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def __call__(self, what: str, args: Sequence[str], *, extra_env: Mapping[str, str] | None
                 = None, capture: bool = False, note: str = "") -> str:
        """Run ``go args`` in the work dir; one progress line before, one with the time after."""
        self.progress(f"{what} ..." + (f" ({note})" if note else ""))
        env = {**os.environ, **self.env, **(extra_env or {})}
        started = self.clock()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {self.go} {' '.join(args)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    [self.go, *args], cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if capture else log, stderr=log,
                )
            except FileNotFoundError as exc:
                raise go_missing(self.go) from exc
            out = b""
            next_beat = started + HEARTBEAT_SECONDS
            while True:
                try:
                    if capture:
                        out, _ = proc.communicate(timeout=1.0)
                    else:
                        proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    now = self.clock()
                    if now >= next_beat:
                        self.progress(f"  ... still {what} ({_elapsed(now - started)})")
                        next_beat = now + HEARTBEAT_SECONDS
        elapsed = self.clock() - started
        if proc.returncode != 0:
            lines = _tail_text(self.log_path, GO_TAIL_LINES)
            raise DexkitError(
                f"'go {' '.join(args)}' failed (exit {proc.returncode}) while {what}:\n"
                + "\n".join(f"  {line}" for line in lines),
                f"the whole go output is in {self.log_path}; module proxy refusals (403) mean "
                "that version is not served here")
        self.progress(f"done {what} ({_elapsed(elapsed)})")
        return out.decode()


def go_missing(go: str = "go") -> DexkitError:
    return DexkitError(f"the Go toolchain ('{go}') was not found",
                       "install Go (1.25 or newer) and put it on PATH, or point "
                       "DEXKIT_KUBE_APISERVER / DEXKIT_ETCD / DEXKIT_KUBECTL / DEXKIT_DEX at "
                       "prebuilt binaries")


def go_env(name: str, go: str = "go") -> str:
    """One ``go env`` value (what the go command will use: environment, then its env file)."""
    try:
        result = subprocess.run([go, "env", name], capture_output=True, text=True,
                                check=False, timeout=60,
                                env={**os.environ, "GOTOOLCHAIN": "local"})
    except FileNotFoundError as exc:
        raise go_missing(go) from exc
    if result.returncode != 0:
        raise DexkitError(f"'{go} env {name}' failed: {result.stderr.strip()}",
                          "check the Go installation")
    return result.stdout.strip()


def go_version(go: str = "go") -> str:
    return go_env("GOVERSION", go)


def proxy_without_direct(goproxy: str) -> str:
    """``GOPROXY`` without its ``direct`` entries (``off`` when nothing else is left).

    Go's default, ``https://proxy.golang.org,direct``, falls back to the source hosts whenever
    the proxy refuses a module: traffic that cannot succeed on a machine that reaches only a
    module proxy, and that a build should never make behind its user's back. A refusal then
    reaches the user as the proxy's own 403/404 instead.
    """
    kept: list[str] = []
    separators: list[str] = []
    for part in re.split(r"([,|])", goproxy):
        if part in (",", "|"):
            separators.append(part)
            continue
        if part.strip() and part.strip() != "direct":
            kept.append(part.strip())
    if not kept:
        return "off"
    # A "|" says "fall through on any error", a "," only on 404/410: keep the first kind seen.
    joiner = "|" if "|" in separators else ","
    return joiner.join(kept)


def go_proxy_env(go: str = "go") -> dict[str, str]:
    return {"GOPROXY": proxy_without_direct(go_env("GOPROXY", go))}


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _tail_text(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return []


def _base_env(spec: PeerSpec) -> dict[str, str]:
    env = {
        # Never let `go` swap itself for another toolchain download in the middle of a build.
        "GOTOOLCHAIN": "local",
        # The generated module is resolved by us, on purpose: go.mod is edited, not read-only.
        "GOFLAGS": _join_goflags(os.environ.get("GOFLAGS", ""), "-mod=mod"),
    }
    if spec.cgo is not None:
        env["CGO_ENABLED"] = "1" if spec.cgo else "0"
    if spec.unverified:
        existing = [p for p in os.environ.get("GONOSUMDB", "").split(",") if p]
        env["GONOSUMDB"] = ",".join([*existing, *spec.unverified])
    return env


def _join_goflags(existing: str, *extra: str) -> str:
    flags = existing.split()
    for flag in extra:
        name = flag.split("=", 1)[0]
        if not any(f.split("=", 1)[0] == name for f in flags):
            flags.append(flag)
    return " ".join(flags)


def _init_module(run: GoRunner, name: str) -> None:
    workdir = run.workdir
    for stale in ("go.mod", "go.sum", "tools.go", "overlay.json"):
        (workdir / stale).unlink(missing_ok=True)
    for stale_dir in ("vendor", "replaced"):
        shutil.rmtree(workdir / stale_dir, ignore_errors=True)
    run(f"creating module {name}", ["mod", "init", name])


def _module_info(run: GoRunner, module: str, version: str) -> dict[str, Any]:
    out = run(f"downloading {module}@{version}", ["mod", "download", "-json",
                                                  f"{module}@{version}"], capture=True)
    data: dict[str, Any] = json.loads(out)
    if data.get("Error"):
        raise DexkitError(f"cannot download {module}@{version}: {data['Error']}",
                          "the module proxy does not serve that version here; try another")
    return data


def build_peers(specs: Iterable[PeerSpec], *, progress: Progress, root: Path | None = None,
                go: str = "go", force: bool = False,
                clock: Callable[[], float] = time.monotonic) -> list[Manifest]:
    """Build every spec that is not yet in the cache (all of them with ``force``)."""
    wanted = list(specs)
    root = root or cache_root()
    todo = []
    for spec in wanted:
        override = os.environ.get(ENV_OVERRIDES[spec.name], "")
        if override and not force:
            progress(f"{spec.name}: {ENV_OVERRIDES[spec.name]}={override} is used; not building")
        elif force or locate(spec, root=root, env={}).source == "missing":
            todo.append(spec)
        else:
            progress(f"{spec.name} {spec.version}: already built in {binary_dir(spec, root)}")
    if not todo:
        return []
    gover = go_version(go)
    proxy = go_proxy_env(go)
    manifests: list[Manifest] = []
    # kube-apiserver and kubectl of one release share one generated module.
    groups: dict[tuple[str, str], list[PeerSpec]] = {}
    for spec in todo:
        groups.setdefault((spec.module, spec.module_version), []).append(spec)
    for (module, module_version), group in groups.items():
        manifests += _build_group(module, module_version, group, progress=progress, root=root,
                                  go=go, go_ver=gover, clock=clock, proxy=proxy)
    return manifests


def _build_group(module: str, module_version: str, group: list[PeerSpec], *, progress: Progress,
                 root: Path, go: str, go_ver: str, clock: Callable[[], float],
                 proxy: Mapping[str, str] | None = None) -> list[Manifest]:
    first = group[0]
    if not module_version:
        raise DexkitError(
            f"no module version is known for {first.name} {first.version}",
            "set DEXKIT_DEX_MODULE_VERSION to the pseudo-version of the release commit "
            "(v0.0.0-<UTC committer time>-<12-hex commit>)")
    label = "kubernetes" if module == KUBERNETES_MODULE else first.name
    workdir = root / "work" / f"{label}-{first.version}"
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "build.log"
    log_path.write_text(f"dexkit build of {module}@{module_version} "
                        f"({dt.datetime.now(dt.UTC).isoformat(timespec='seconds')})\n")
    run = GoRunner(workdir=workdir, log_path=log_path, go=go,
                   env={**_base_env(first), **(proxy or {})}, clock=clock,
                   progress=lambda line: progress(f"[{label} {first.version}] {line}"))
    started = clock()
    _init_module(run, f"dexkit.local/sandbox/{label}")
    info = _module_info(run, module, module_version)
    if module == KUBERNETES_MODULE:
        gomod_path = Path(info["GoMod"])
        modules = staging_modules(gomod_path.read_text())
        target = staging_version(first.version)
        run(f"replacing {len(modules)} staging modules with their {target} releases",
            ["mod", "edit", *[f"-replace={m}={m}@{target}" for m in modules]])
    run(f"resolving {module}@{module_version}",
        ["get", *[f"{spec.package}@{module_version}" for spec in group]])
    commit = str((info.get("Origin") or {}).get("Hash", ""))
    manifests = []
    for spec in group:
        manifests.append(_build_one(spec, run, root=root, go_ver=go_ver, commit=commit,
                                    group_started=started, clock=clock))
        started = clock()
    return manifests


def _build_one(spec: PeerSpec, run: GoRunner, *, root: Path, go_ver: str, commit: str,
               group_started: float, clock: Callable[[], float]) -> Manifest:
    built_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    ldflags = list(spec.ldflags)
    if spec.module == KUBERNETES_MODULE:
        ldflags = kubernetes_ldflags(spec.version, commit=commit,
                                     build_date=built_at.replace("+00:00", "Z"))
    directory = binary_dir(spec, root)
    files.ensure_dir(directory, 0o755)
    target = directory / spec.name
    partial = directory / f".{spec.name}.partial"
    partial.unlink(missing_ok=True)
    args = ["build", "-o", str(partial)]
    if spec.replaced:
        args += ["-mod=vendor", f"-overlay={_overlay(spec, run)}"]
    if ldflags:
        args += ["-ldflags", " ".join(ldflags)]
    args.append(spec.package)
    extra = {"CGO_ENABLED": "1" if spec.cgo else "0"} if spec.cgo is not None else None
    run(f"compiling {spec.name}", args, extra_env=extra,
        note=f"a cold build takes minutes; a line every {HEARTBEAT_SECONDS:.0f}s")
    partial.replace(target)
    manifest = Manifest(
        name=spec.name, version=spec.version, module=spec.module,
        module_version=spec.module_version, package=spec.package, go_version=go_ver,
        sha256=sha256_file(target), built_at=built_at,
        build_seconds=round(clock() - group_started, 1), cgo=spec.cgo, ldflags=tuple(ldflags),
        unverified=spec.unverified, replaced=tuple(package for package, _ in spec.replaced),
    )
    files.atomic_write(directory / MANIFEST, manifest.to_json())
    run.progress(f"built {target} ({manifest.build_seconds:.0f}s, sha256 {manifest.sha256[:12]})")
    return manifest


def _overlay(spec: PeerSpec, run: GoRunner) -> Path:
    """Vendor the module (go refuses overlays inside its module cache), then map every Go file
    of each replaced package to nothing but dexkit's one file for it; the overlay's path."""
    work = run.workdir
    files.atomic_write(work / "tools.go", "//go:build tools\n\npackage tools\n\nimport _ "
                       f'"{spec.package}"\n')
    run("vendoring the module (for the replaced packages)", ["mod", "vendor"])
    replace: dict[str, str | None] = {}
    for package, source in spec.replaced:
        vendored = work / "vendor" / package
        if not vendored.is_dir():
            raise DexkitError(f"{package} is not in {spec.module}@{spec.module_version}",
                              "the replaced package moved: check the module")
        for original in sorted(vendored.glob("*.go")):
            replace[str(original)] = None  # deleted from the build
        ours = work / "replaced" / package / "dexkit.go"
        ours.parent.mkdir(parents=True, exist_ok=True)
        ours.write_text(source)
        replace[str(vendored / "dexkit.go")] = str(ours)
    overlay = work / "overlay.json"
    files.atomic_write(overlay, json.dumps({"Replace": replace}, indent=1) + "\n")
    return overlay


def remove_work_dirs(root: Path | None = None) -> None:
    """Drop the generated modules (the Go module and build caches are Go's own)."""
    shutil.rmtree((root or cache_root()) / "work", ignore_errors=True)


def select_peers(only: Sequence[str] | None = None) -> list[str]:
    """The peer names ``--only`` asks for (validated; ``node`` stands for :data:`NODE_PEERS`),
    or the default set."""
    if not only:
        return list(DEFAULT_PEERS)
    wanted = {n for name in only for n in (NODE_PEERS if name == NODE_ALIAS else (name,))}
    unknown = [name for name in wanted if name not in PEER_NAMES]
    if unknown:
        raise UsageError(f"unknown peer '{unknown[0]}'",
                         f"use one of {', '.join(PEER_NAMES)} (or '{NODE_ALIAS}' for "
                         f"{', '.join(NODE_PEERS)})")
    return [name for name in PEER_NAMES if name in wanted]


def list_peers(kubernetes_version: str | None = None, names: Sequence[str] = PEER_NAMES,
               *, root: Path | None = None) -> list[PeerLocation]:
    return [locate(peer_spec(name, kubernetes_version), root=root) for name in names]


def require_peer(name: str, kubernetes_version: str | None = None, *,
                 root: Path | None = None, dex: str | None = None) -> Path:
    """The path of a built (or overridden) peer, or an error that says how to get it."""
    spec = peer_spec(name, kubernetes_version, dex=dex)
    location = locate(spec, root=root)
    if not location.available:
        version = f" --kubernetes-version {spec.version}" if spec.module == KUBERNETES_MODULE \
            else ""
        if name == "dex" and dex_build(dex) is not DEX_RELEASE:
            version = f" --dex {dex}"
        raise DexkitError(f"{name} {spec.version} is not built ({location.path} is missing)",
                          f"run 'dexkit sandbox build --only {name}{version}' (minutes on a cold "
                          f"machine) or set {ENV_OVERRIDES[name]} to a binary")
    return location.path
