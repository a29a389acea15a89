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

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dexkit import files
from dexkit.errors import DexkitError
from dexkit.sandbox import images, peers
from dexkit.sandbox.engine import Engine
from dexkit.sandbox.images import Entry, ImageConfig

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


# --- the node image -------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeImage:
    name: str  # dexkit.local/kind-node:v1.37.2-<key>
    kubernetes_version: str
    built: bool  # False: taken from the cache
    seconds: float


def node_image_name(kubernetes_version: str, key: str) -> str:
    return f"{NODE_REPO}:v{kubernetes_version}-{key}"


def build_node_image(engine: Engine, kubernetes_version: str, progress: Progress | None = None,
                     *, clock: Callable[[], float] = time.monotonic) -> NodeImage:
    """The node image for a Kubernetes release, from the cache when its inputs are unchanged."""
    say = progress or (lambda _line: None)
    started = clock()
    inputs = NodeInputs.gather(kubernetes_version)
    name = node_image_name(kubernetes_version, inputs.node_key())
    if _has_image(engine, name):
        return NodeImage(name, kubernetes_version, False, clock() - started)
    say(f"building the kind node image {name} (cold: minutes)")
    rootfs = f"{ROOTFS_REPO}:{inputs.rootfs_key()}"
    if not _has_image(engine, rootfs):
        _build_rootfs(engine, inputs, rootfs, say)
    base = f"{BASE_REPO}:{inputs.base_key()}"
    if not _has_image(engine, base):
        _build_base(engine, inputs, rootfs, base, say)
    _build_node(engine, inputs, rootfs, base, name, say)
    _forget_older(engine, kubernetes_version, keep=name)
    return NodeImage(name, kubernetes_version, True, clock() - started)


def _has_image(engine: Engine, name: str) -> bool:
    return bool(engine.docker("images", "-q", name, timeout=60).strip())


def _forget_older(engine: Engine, kubernetes_version: str, keep: str) -> None:
    """Drop this release's node images of other inputs: each is gigabytes."""
    listed = engine.docker("images", NODE_REPO, "--format", "{{.Repository}}:{{.Tag}}")
    old = [n for n in listed.split() if n != keep and
           n.startswith(f"{NODE_REPO}:v{kubernetes_version}-")]
    if old:
        engine.docker("rmi", *old, check=False)


def _workdir(what: str) -> Path:
    base = peers.cache_root() / "work"
    files.ensure_dir(base, 0o755)
    return Path(tempfile.mkdtemp(prefix=f"kind-{what}-", dir=base))


def _run(argv: Sequence[str], what: str, *, timeout: float = 1200, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                            timeout=timeout, cwd=cwd, env=env)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise DexkitError(f"{what} failed ({argv[0]} exit {result.returncode}):\n{tail}",
                          "see the command's output above")
    return result.stdout


# --- 1. rootfs ------------------------------------------------------------------------------


def _build_rootfs(engine: Engine, inputs: NodeInputs, name: str, say: Progress) -> None:
    work = _workdir("rootfs")
    root = work / "rootfs"
    try:
        say(f"  debootstrap {inputs.release} from the machine's apt mirror ...")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
              inputs.release, str(root), inputs.mirror], "debootstrap", timeout=1800)
        trim_systemd(root)
        say("  importing it ...")
        _import(engine, root, name, changes=[])
    finally:
        shutil.rmtree(work, ignore_errors=True)


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


def _import(engine: Engine, root: Path, name: str, changes: Sequence[str]) -> None:
    """``tar | docker import``: the directory as a one-layer image."""
    args = [str(engine.layout.bin / "docker"), "import"]
    for change in changes:
        args += ["--change", change]
    env = {**os.environ, **engine.env}
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                           stdout=subprocess.PIPE)
    try:
        result = subprocess.run([*args, "-", name], stdin=tar.stdout, env=env,
                                capture_output=True, text=True, check=False, timeout=1200)
    finally:
        if tar.stdout:
            tar.stdout.close()
        tar.wait()
    if result.returncode != 0 or tar.returncode != 0:
        raise DexkitError(f"importing {name} failed: {result.stderr.strip()}",
                          f"the engine's log is {engine.layout.log}")


# --- 2. base --------------------------------------------------------------------------------


def _build_base(engine: Engine, inputs: NodeInputs, rootfs: str, name: str,
                say: Progress) -> None:
    say("  kind's base files ...")
    work = _workdir("base")
    try:
        overlay = work / "overlay"
        base_overlay(overlay, inputs.kind_dir)
        (work / "Dockerfile").write_text(
            f"FROM {rootfs}\nCOPY overlay/ /\n"
            'ENV container=docker\nSTOPSIGNAL SIGRTMIN+3\n'
            'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]\n'
            f'LABEL {LABEL}.description="kind v{peers.KIND_VERSION} base files on Debian '
            f'{inputs.release}, built by dexkit\'s kind harness"\n')
        engine.docker("build", "--network=none", "-q", "-t", name, str(work), timeout=1200)
    finally:
        shutil.rmtree(work, ignore_errors=True)


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


# --- 3. node --------------------------------------------------------------------------------


def _build_node(engine: Engine, inputs: NodeInputs, rootfs: str, base: str, name: str,
                say: Progress) -> None:
    work = _workdir("node")
    try:
        wanted = kubeadm_images(inputs.binaries["kubeadm"], inputs.kubernetes_version)
        say(f"  images kubeadm {inputs.kubernetes_version} names ...")
        archives = _image_archives(engine, inputs, wanted, rootfs, work)
        overlay = work / "overlay"
        say("  preloading them into the node's containerd ...")
        preload(overlay / "var/lib/containerd", archives, work / "containerd")
        node_overlay(overlay, inputs, wanted)
        (work / "Dockerfile").write_text(
            f"FROM {base}\nCOPY overlay/ /\n"
            f'LABEL {LABEL}.description="kind node image of Kubernetes '
            f'v{inputs.kubernetes_version} built by dexkit\'s kind harness from its peers"\n'
            f'LABEL {LABEL}.version="v{inputs.kubernetes_version}"\n')
        say("  committing the node image ...")
        engine.docker("build", "--network=none", "-q", "-t", name, str(work), timeout=1800)
    finally:
        shutil.rmtree(work, ignore_errors=True)


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


def _created(kubernetes_version: str) -> dt.datetime:
    del kubernetes_version
    return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _image_archives(engine: Engine, inputs: NodeInputs, wanted: KubeadmImages, rootfs: str,
                    work: Path) -> list[Path]:
    """One archive per image kubeadm names (see the module rules for what each holds)."""
    version = inputs.kubernetes_version
    root_files = _libc_entries(engine, rootfs, work)
    out: list[Path] = []

    def write(role: str, entries: Iterable[Entry], config: ImageConfig) -> None:
        target = work / "archives" / f"{role}.tar"
        images.write_oci_archive(target, wanted.names[role], entries, config,
                                 created=_created(version))
        out.append(target)

    for role in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        write(role, [*root_files, Entry(f"/usr/local/bin/{role}", source=inputs.binaries[role],
                                        mode=0o755)],
              ImageConfig(cmd=(), entrypoint=(f"/usr/local/bin/{role}",),
                          labels=_labels(f"{role} v{version}", f"k8s.io/kubernetes v{version}")))
    write("etcd", [*root_files, Entry("/usr/local/bin/etcd", source=inputs.binaries["etcd"],
                                      mode=0o755), images.directory("/var/lib/etcd")],
          ImageConfig(cmd=("/usr/local/bin/etcd",), labels=_labels(
              f"etcd v{peers.ETCD_VERSION} (kubeadm {version} asks for "
              f"{wanted.tag('etcd')})", f"{peers.ETCD_MODULE} v{peers.ETCD_VERSION}")))
    write("coredns", [Entry("/coredns", source=inputs.binaries["coredns"], mode=0o755)],
          ImageConfig(cmd=(), entrypoint=("/coredns",), user="0:0", labels=_labels(
              f"CoreDNS v{peers.COREDNS_VERSION} (kubeadm {version} asks for "
              f"{wanted.tag('coredns')})", f"{peers.COREDNS_MODULE} v{peers.COREDNS_VERSION}")))
    write("pause", [Entry("/pause", source=inputs.binaries["pause"], mode=0o755)],
          ImageConfig(cmd=(), entrypoint=("/pause",), user="65535:65535",
                      labels=_labels("dexkit's pause.go", "dexkit")))
    out.append(_kube_proxy_archive(engine, inputs, wanted, rootfs, work))
    return out


def _labels(what: str, source: str) -> dict[str, str]:
    return {f"{LABEL}.description": f"{what}, built by dexkit's kind harness",
            f"{LABEL}.source": source}


def _libc_entries(engine: Engine, rootfs: str, work: Path) -> list[Entry]:
    """glibc's loader and libc from the node's Debian: the peers are linked against them."""
    container = engine.docker("create", rootfs, "/bin/true").strip()
    libs = work / "libc"
    libs.mkdir(parents=True, exist_ok=True)
    try:
        entries: list[Entry] = [Entry("/etc/nsswitch.conf", data=b"hosts: files dns\n"),
                                images.directory("/tmp", mode=0o1777)]  # noqa: S108 (in the image)
        for path in LIBC:
            local = libs / Path(path).name
            # docker cp follows the symlink (-L) so the real file is copied.
            engine.docker("cp", "-L", f"{container}:/{path}", str(local))
            entries.append(Entry(f"/{path}", source=local, mode=0o755))
        return entries
    finally:
        engine.docker("rm", "-f", container, check=False)


def _kube_proxy_archive(engine: Engine, inputs: NodeInputs, wanted: KubeadmImages,
                        rootfs: str, work: Path) -> Path:
    """kube-proxy needs iptables and its libraries: the node's Debian plus the peer."""
    context = work / "kube-proxy"
    context.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(inputs.binaries["kube-proxy"], context / "kube-proxy")
    (context / "kube-proxy").chmod(0o755)
    labels = _labels(f"kube-proxy v{inputs.kubernetes_version} on Debian {inputs.release}",
                     f"k8s.io/kubernetes v{inputs.kubernetes_version}")
    (context / "Dockerfile").write_text(
        f"FROM {rootfs}\nCOPY kube-proxy /usr/local/bin/kube-proxy\n"
        + "".join(f'LABEL {k}="{v}"\n' for k, v in labels.items()))
    name = wanted.names["kube-proxy"]
    engine.docker("build", "--network=none", "-q", "-t", name, str(context), timeout=1200)
    target = work / "archives" / "kube-proxy.tar"
    target.parent.mkdir(parents=True, exist_ok=True)
    engine.docker("save", "-o", str(target), name, timeout=1200)
    engine.docker("rmi", name, check=False)
    return target


def preload(root: Path, archives: Sequence[Path], work: Path) -> None:
    """Import the archives into a containerd content store at ``root`` as kind does (not
    unpacked: the node unpacks on first use), with the machine's containerd, which is the
    node's (both Debian's). containerd 1.6's ctr has no ``--label`` to pin them as kind does;
    kind's kubelet configuration never collects images (imageGCHighThresholdPercent: 100)."""
    state = work / "state"
    sock = work / "c.sock"
    root.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    config = work / "config.toml"
    config.write_text(f'version = 2\nroot = "{root}"\nstate = "{state}"\n'
                      'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                      f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = ""\n')
    log = (work / "containerd.log").open("wb")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DexkitError("the containerd that preloads the node's images did not "
                                  f"start; see {work / 'containerd.log'}", "check containerd")
            time.sleep(0.1)
        for archive in archives:
            _run(["ctr", f"--address={sock}", "--namespace=k8s.io", "images", "import",
                  "--all-platforms", "--no-unpack",
                  "--digests", str(archive)], f"importing {archive.name}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
