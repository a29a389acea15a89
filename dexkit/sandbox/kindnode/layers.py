"""What each layer holds, as files on a directory: systemd trimmed as kind trims it, kind's base
files with this machine's differences (static bridge CNI, containerd's settings), the node's
binaries.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dexkit.sandbox.kindnode.inputs import (
    CNI_PLUGINS,
    KIND_UNITS,
    POD_SUBNET,
    KubeadmImages,
    NodeInputs,
    _run,
)


def trim_systemd(root: Path) -> None:
    """What kind's base Dockerfile does to systemd, as file operations on the root."""
    for pattern in ("lib/systemd/system/multi-user.target.wants/*",
                    "etc/systemd/system/*.wants/*", "lib/systemd/system/local-fs.target.wants/*",
                    "lib/systemd/system/sockets.target.wants/*udev*",
                    "lib/systemd/system/sockets.target.wants/*initctl*",
                    "lib/systemd/system/basic.target.wants/*",
                    "lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service"):
        for path in root.glob(pattern):
            path.unlink()
    journald = root / "etc/systemd/journald.conf"
    journald.write_text(journald.read_text() + "ReadKMsg=no\n")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)


def base_overlay(overlay: Path, kind_dir: Path) -> None:
    """kind's base files (images/base/files) and this harness's differences, as a tree."""
    source = kind_dir / "images" / "base" / "files"
    for path in sorted(source.rglob("*")):
        target = overlay / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            executable = "bin" in path.relative_to(source).parts
            target.chmod(0o755 if executable else 0o644)
    # kind's units start the binaries it builds from /usr/local: Debian's are in /usr.
    links = {"usr/local/bin/containerd": "/usr/bin/containerd",
             "usr/local/bin/ctr": "/usr/bin/ctr",
             "usr/local/bin/containerd-shim-runc-v2": "/usr/bin/containerd-shim-runc-v2",
             "usr/local/sbin/runc": "/usr/sbin/runc"}
    links.update({f"opt/cni/bin/{p}": f"/usr/lib/cni/{p}" for p in CNI_PLUGINS})
    for unit in KIND_UNITS:
        links[f"etc/systemd/system/multi-user.target.wants/{unit}"] = f"/etc/systemd/system/{unit}"
    links["etc/systemd/system/systemd-binfmt.service"] = "/dev/null"
    for link, target_path in links.items():
        path = overlay / link
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target_path)
    (overlay / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
    (overlay / "etc/containerd/cri-base.json").write_text(cri_base_spec())
    (overlay / "etc/cni/net.d").mkdir(parents=True, exist_ok=True)
    (overlay / "etc/cni/net.d/10-dexkit-bridge.conflist").write_text(cni_conflist())
    default = overlay / "etc/default/kubelet"
    default.write_text(default.read_text().rstrip("\n") + " --fail-cgroupv1=false\n")
    manifests = overlay / "kind/manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / "default-cni.yaml").write_text(CNI_MANIFEST)
    (manifests / "default-storage.yaml").write_text(STORAGE_MANIFEST)


def cri_base_spec() -> str:
    """kind's ``/etc/containerd/cri-base.json``: ``ctr oci spec`` (Debian's containerd, the
    node's) with kind's product-files hook and without rlimits."""
    spec = json.loads(_run(["ctr", "oci", "spec"], "ctr oci spec"))
    hooks = spec.setdefault("hooks", {}).setdefault("createContainer", [])
    hooks.append({"path": "/kind/bin/mount-product-files.sh"})
    spec["process"].pop("rlimits", None)
    return json.dumps(spec, indent=2) + "\n"


def cni_conflist() -> str:
    """One node's pod network: a bridge with host-local addresses, portmap for hostPorts."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "dexkit-kind",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2) + "\n"


CNI_MANIFEST = """\
# kind applies this file as its default CNI. In a node image built by dexkit's kind harness the
# pod network is a static bridge (/etc/cni/net.d/10-dexkit-bridge.conflist): kindnetd's module
# is not served where it is built. One node needs nothing more.
apiVersion: v1
kind: ConfigMap
metadata:
  name: dexkit-kind-cni
  namespace: kube-system
data:
  cni: static bridge in /etc/cni/net.d (single node)
"""
STORAGE_MANIFEST = """\
# kind applies this file as its default storage. A node image built by dexkit's kind harness has
# no dynamic provisioner (local-path-provisioner is not served where it is built).
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
"""


def node_overlay(overlay: Path, inputs: NodeInputs, wanted: KubeadmImages) -> None:
    for name in ("kubeadm", "kubelet", "kubectl"):
        target = overlay / "usr/bin" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inputs.binaries[name], target)
        target.chmod(0o755)
    (overlay / "kind").mkdir(parents=True, exist_ok=True)
    (overlay / "kind/version").write_text(f"v{inputs.kubernetes_version}\n")
    config = inputs.kind_dir / "images/base/files/etc/containerd/config.toml"
    (overlay / "etc/containerd").mkdir(parents=True, exist_ok=True)
    (overlay / "etc/containerd/config.toml").write_text(
        containerd_config(config.read_text(), wanted.names["pause"]))


def containerd_config(kind_config: str, pause: str) -> str:
    """kind's containerd config with the pause image kubeadm names and, for a machine whose
    root lacks CAP_SYS_RESOURCE, no negative oom_score_adj."""
    out: list[str] = []
    for line in kind_config.splitlines():
        stripped = line.strip()
        if stripped.startswith("sandbox_image"):
            line = line[:len(line) - len(line.lstrip())] + f'sandbox_image = "{pause}"'
        elif stripped.startswith("restrict_oom_score_adj"):
            line = line[:len(line) - len(line.lstrip())] + "restrict_oom_score_adj = true"
        out.append(line)
    return "\n".join(out) + "\n"
