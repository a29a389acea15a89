"""kind node images built on this machine from the project's peers (the kind harness, level 3).

kind's own node images come from a registry this machine cannot reach; ``kind build
node-image`` fetches every image kubeadm lists from that registry too. So the harness builds a
node image the way ``kind build node-image`` lays one out, from local parts only.

Rules:
- Three images, each cached in the engine's image store under a tag that is the digest of its
  inputs, so a warm build is a lookup (and an input that changes is a new image):

  1. ``dexkit.local/kind-rootfs:<key>``: Debian from ``debootstrap`` (the machine's release and
     its own apt mirror, read from ``/etc/apt/sources.list*``; no host name is written in the
     repository) with the packages kind's base image installs, containerd and runc from Debian,
     and systemd trimmed as kind's base Dockerfile trims it.
  2. ``dexkit.local/kind-base:<key>``: that plus kind's base files (entrypoint, units, scripts,
     containerd config) read from kind's own module source at the version the harness runs.
  3. ``dexkit.local/kind-node:v<kubernetes>-<key>``: that plus kubeadm, kubelet and kubectl
     (the peers), ``/kind/version``, and every image ``kubeadm config images list`` names,
     imported into the node's containerd content store as kind imports them (not
     unpacked). The Dex image is not preloaded: the recipe loads it with ``kind load``.

- The images inside the node carry the names kubeadm asks for (``registry.k8s.io/...``): kind
  runs kubeadm with its own configuration, so no other name would be found, and a wrong one
  would be pulled from a registry. What each really is says its OCI labels: kube-apiserver,
  kube-controller-manager, kube-scheduler and kube-proxy are the peers of that Kubernetes
  release; etcd is the project's one etcd (:data:`peers.ETCD_VERSION`) under the tag of the
  release kubeadm asks for; CoreDNS is the one build (:data:`peers.COREDNS_VERSION`) under each
  minor's tag; pause is dexkit's own ``pause.go``.
- What this machine needs and a user's cluster never gets lives in the image, never in what
  dexkit renders: a static bridge CNI (kind's kindnetd is not served here; one node needs no
  routes between nodes), a placeholder for kind's CNI and storage manifests, the kubelet's
  ``--fail-cgroupv1=false`` (this machine is cgroup v1; Kubernetes >= 1.35 refuses it otherwise)
  and containerd's ``restrict_oom_score_adj`` (no CAP_SYS_RESOURCE here).
"""

from dexkit.sandbox.kindnode.build import (
    NodeImage,
    build_node_image,
    node_image_name,
    preload,
)
from dexkit.sandbox.kindnode.inputs import (
    BASE_REPO,
    CNI_PLUGINS,
    FORMAT,
    KIND_UNITS,
    LABEL,
    LIBC,
    NODE_REPO,
    PACKAGES,
    POD_SUBNET,
    ROOTFS_REPO,
    SOURCES,
    KubeadmImages,
    NodeInputs,
    Progress,
    apt_mirror,
    debian_release,
    kind_source,
    kubeadm_images,
)
from dexkit.sandbox.kindnode.layers import (
    CNI_MANIFEST,
    STORAGE_MANIFEST,
    base_overlay,
    cni_conflist,
    containerd_config,
    cri_base_spec,
    node_overlay,
    trim_systemd,
)

__all__ = [
    "BASE_REPO",
    "CNI_MANIFEST",
    "CNI_PLUGINS",
    "FORMAT",
    "KIND_UNITS",
    "LABEL",
    "LIBC",
    "NODE_REPO",
    "PACKAGES",
    "POD_SUBNET",
    "ROOTFS_REPO",
    "SOURCES",
    "STORAGE_MANIFEST",
    "KubeadmImages",
    "NodeImage",
    "NodeInputs",
    "Progress",
    "apt_mirror",
    "base_overlay",
    "build_node_image",
    "cni_conflist",
    "containerd_config",
    "cri_base_spec",
    "debian_release",
    "kind_source",
    "kubeadm_images",
    "node_image_name",
    "node_overlay",
    "preload",
    "trim_systemd",
]
