"""What a node image is built from: this machine's Debian release and apt mirror, kind's module
source, the images kubeadm lists, the peers; the keys that name each cached image; and the one
way a build step runs a command.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dexkit.errors import DexkitError
from dexkit.sandbox import images, peers

Progress = Callable[[str], None]

# Bumped whenever what is written here changes, so cached images are rebuilt.
FORMAT = "1"
ROOTFS_REPO = f"{images.REGISTRY}/kind-rootfs"
BASE_REPO = f"{images.REGISTRY}/kind-base"
NODE_REPO = f"{images.REGISTRY}/kind-node"
# kind's base image packages (images/base/Dockerfile) that Debian's release has, minus the
# network file systems; plus containerd, runc and the CNI plugins from Debian instead of kind's
# own builds, and dbus for systemd.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "conntrack", "iptables", "nftables", "iproute2",
            "ethtool", "util-linux", "mount", "kmod", "libseccomp2", "pigz", "e2fsprogs",
            "bash", "ca-certificates", "curl", "jq", "procps", "containerd", "runc",
            "containernetworking-plugins")
KIND_UNITS = ("kubelet.service", "containerd.service", "undo-mount-hacks.service")
POD_SUBNET = "10.244.0.0/24"  # the first /24 of kind's default podSubnet: one node
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
SOURCES = Path("/etc/apt")
LIBC = ("lib/x86_64-linux-gnu/libc.so.6", "lib64/ld-linux-x86-64.so.2")
LABEL = "org.opencontainers.image"


# --- inputs ---------------------------------------------------------------------------------


def debian_release(os_release: str | None = None) -> str:
    """The machine's Debian codename (``bookworm``)."""
    text = Path("/etc/os-release").read_text() if os_release is None else os_release
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    codename = values.get("VERSION_CODENAME", "").strip('"')
    if values.get("ID", "").strip('"') != "debian" or not codename:
        raise DexkitError("the kind harness builds its node image with Debian's debootstrap "
                          "from this machine's own Debian release; this is not Debian",
                          "run it on Debian (the project's CI machines are Debian 12)")
    return codename


def apt_mirror(release: str, sources: Path = SOURCES) -> str:
    """The URI the machine's apt configuration uses for ``release`` main (deb822 ``.sources``
    files and one-line ``.list`` files alike)."""
    candidates: list[Path] = []
    if (sources / "sources.list").is_file():
        candidates.append(sources / "sources.list")
    directory = sources / "sources.list.d"
    if directory.is_dir():
        candidates += sorted(p for p in directory.iterdir()
                             if p.suffix in (".list", ".sources"))
    for path in candidates:
        text = path.read_text(errors="replace")
        found = _deb822_uri(text, release) if path.suffix == ".sources" else \
            _one_line_uri(text, release)
        if found:
            return found
    raise DexkitError(f"no apt source for Debian {release} main in {sources}/sources.list*",
                      "the node image is bootstrapped from the machine's own apt mirror; "
                      "configure one (apt-get update must work)")


def _deb822_uri(text: str, release: str) -> str | None:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.strip().startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and \
                release in fields.get("suites", "").split() and \
                "main" in fields.get("components", "").split() and \
                fields.get("enabled", "yes").lower() != "no":
            uris = fields.get("uris", "").split()
            if uris:
                return uris[0]
    return None


def _one_line_uri(text: str, release: str) -> str | None:
    for line in text.splitlines():
        words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # no [options]
        if len(words) >= 4 and words[0] == "deb" and words[2] == release and "main" in words[3:]:
            return words[1]
    return None


def kind_source() -> Path:
    """kind's module source (its base image files) at the version the harness runs."""
    out = images._go(["mod", "download", "-json", f"{peers.KIND_MODULE}@v{peers.KIND_VERSION}"],
                     cwd=peers.cache_root() if peers.cache_root().is_dir() else Path.cwd(),
                     env={"GOFLAGS": "-mod=mod"},
                     what=f"locating {peers.KIND_MODULE}@v{peers.KIND_VERSION}")
    info = json.loads(out)
    if info.get("Error") or not info.get("Dir"):
        raise DexkitError(f"cannot find kind's source: {info.get('Error', 'no directory')}",
                          "check the Go module proxy")
    return Path(info["Dir"])


@dataclass(frozen=True)
class KubeadmImages:
    """What ``kubeadm config images list`` names for one release, by role."""

    names: dict[str, str]  # kube-apiserver -> registry.k8s.io/kube-apiserver:v1.37.2, ...

    def tag(self, role: str) -> str:
        return self.names[role].rsplit(":", 1)[1]


def kubeadm_images(kubeadm: Path, kubernetes_version: str) -> KubeadmImages:
    result = subprocess.run([str(kubeadm), "config", "images", "list", "--kubernetes-version",
                             f"v{kubernetes_version}"], capture_output=True, text=True,
                            check=False, timeout=60)
    if result.returncode != 0:
        raise DexkitError(f"kubeadm config images list failed: {result.stderr.strip()}",
                          "rebuild kubeadm ('dexkit sandbox build --only kubeadm')")
    names: dict[str, str] = {}
    for line in result.stdout.split():
        repo = line.rsplit(":", 1)[0].rsplit("/", 1)[1]
        names[repo] = line
    missing = {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
               "etcd", "pause", "coredns"} - set(names)
    if missing:
        raise DexkitError(f"kubeadm names no image for {', '.join(sorted(missing))}",
                          "check 'kubeadm config images list'")
    return KubeadmImages(names)


@dataclass(frozen=True)
class NodeInputs:
    """Everything a node image is made of."""

    kubernetes_version: str
    release: str
    mirror: str
    kind_dir: Path
    binaries: dict[str, Path]  # kubeadm, kubelet, kubectl, kube-*, etcd, coredns, pause

    @classmethod
    def gather(cls, kubernetes_version: str) -> NodeInputs:
        release = debian_release()
        binaries = {name: peers.require_peer(name, kubernetes_version) for name in (
            "kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager",
            "kube-scheduler", "kube-proxy", "etcd", "coredns")}
        binaries["pause"] = images.build_pause_binary()
        return cls(kubernetes_version, release, apt_mirror(release), kind_source(), binaries)

    def rootfs_key(self) -> str:
        return _key(FORMAT, self.release, self.mirror, *PACKAGES)

    def base_key(self) -> str:
        kind_files = sorted((self.kind_dir / "images" / "base" / "files").rglob("*"))
        return _key(self.rootfs_key(), peers.KIND_VERSION,
                    *(f"{p.name}:{peers.sha256_file(p)}" for p in kind_files if p.is_file()))

    def node_key(self) -> str:
        return _key(self.base_key(), self.kubernetes_version,
                    *(f"{n}:{peers.sha256_file(p)}" for n, p in sorted(self.binaries.items())))


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def _run(argv: Sequence[str], what: str, *, timeout: float = 1200, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                            timeout=timeout, cwd=cwd, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise DexkitError(f"{what} failed ({argv[0]} exit {result.returncode}):\n{tail}",
                          "see the command's output above")
    return result.stdout
