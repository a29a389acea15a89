"""The peer catalogue: which peers exist, at which versions, how each is built (:class:`PeerSpec`),
and where a built or overridden binary is found (:func:`locate`, :func:`require_peer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dexkit.errors import DexkitError, UsageError
from dexkit.sandbox.peers.dex import DEX_MODULE, DEX_RELEASE, dex_build

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
