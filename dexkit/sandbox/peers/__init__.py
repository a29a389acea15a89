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

from dexkit.sandbox.peers.catalog import (
    COREDNS_MODULE,
    COREDNS_VERSION,
    DEFAULT_KUBERNETES,
    DEFAULT_PEERS,
    ENV_OVERRIDES,
    ETCD_MODULE,
    ETCD_VERSION,
    HELM_MODULE,
    HELM_VERSION,
    KIND_MODULE,
    KIND_VERSION,
    KUBELOGIN_MODULE,
    KUBELOGIN_VERSION,
    KUBERNETES_MODULE,
    KUBERNETES_PEERS,
    KUBERNETES_RELEASES,
    MANIFEST,
    NODE_ALIAS,
    NODE_PEERS,
    PEER_NAMES,
    Manifest,
    PeerLocation,
    PeerSpec,
    binary_dir,
    cache_root,
    list_peers,
    locate,
    peer_spec,
    require_peer,
    resolve_kubernetes_version,
    select_peers,
    sha256_file,
)
from dexkit.sandbox.peers.dex import (
    DEFAULT_DEX,
    DEX_BUILDS,
    DEX_COMMIT,
    DEX_MAIN,
    DEX_MODULE,
    DEX_PSEUDO,
    DEX_RELEASE,
    DEX_VERSION,
    DexBuild,
    dex_build,
    dex_build_for_image,
    dex_build_for_version,
)
from dexkit.sandbox.peers.gobuild import (
    GO_TAIL_LINES,
    HEARTBEAT_SECONDS,
    GoRunner,
    Progress,
    build_peers,
    go_env,
    go_missing,
    go_proxy_env,
    go_version,
    proxy_without_direct,
    remove_work_dirs,
)
from dexkit.sandbox.peers.gomod import (
    Replace,
    check_pseudo_version,
    kubernetes_ldflags,
    parse_replaces,
    pseudo_version,
    staging_modules,
    staging_version,
)

__all__ = [
    "COREDNS_MODULE",
    "COREDNS_VERSION",
    "DEFAULT_DEX",
    "DEFAULT_KUBERNETES",
    "DEFAULT_PEERS",
    "DEX_BUILDS",
    "DEX_COMMIT",
    "DEX_MAIN",
    "DEX_MODULE",
    "DEX_PSEUDO",
    "DEX_RELEASE",
    "DEX_VERSION",
    "ENV_OVERRIDES",
    "ETCD_MODULE",
    "ETCD_VERSION",
    "GO_TAIL_LINES",
    "HEARTBEAT_SECONDS",
    "HELM_MODULE",
    "HELM_VERSION",
    "KIND_MODULE",
    "KIND_VERSION",
    "KUBELOGIN_MODULE",
    "KUBELOGIN_VERSION",
    "KUBERNETES_MODULE",
    "KUBERNETES_PEERS",
    "KUBERNETES_RELEASES",
    "MANIFEST",
    "NODE_ALIAS",
    "NODE_PEERS",
    "PEER_NAMES",
    "DexBuild",
    "GoRunner",
    "Manifest",
    "PeerLocation",
    "PeerSpec",
    "Progress",
    "Replace",
    "binary_dir",
    "build_peers",
    "cache_root",
    "check_pseudo_version",
    "dex_build",
    "dex_build_for_image",
    "dex_build_for_version",
    "go_env",
    "go_missing",
    "go_proxy_env",
    "go_version",
    "kubernetes_ldflags",
    "list_peers",
    "locate",
    "parse_replaces",
    "peer_spec",
    "proxy_without_direct",
    "pseudo_version",
    "remove_work_dirs",
    "require_peer",
    "resolve_kubernetes_version",
    "select_peers",
    "sha256_file",
    "staging_modules",
    "staging_version",
]
