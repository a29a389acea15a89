"""Building the three images in the engine (rootfs, base, node), each a lookup when its key is
cached, and preloading the images kubeadm asks for into the node's containerd store.
"""

from __future__ import annotations

import datetime as dt
import os
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
from dexkit.sandbox.kindnode.inputs import (
    BASE_REPO,
    LABEL,
    LIBC,
    NODE_REPO,
    PACKAGES,
    ROOTFS_REPO,
    KubeadmImages,
    NodeInputs,
    Progress,
    _run,
    kubeadm_images,
)
from dexkit.sandbox.kindnode.layers import base_overlay, node_overlay, trim_systemd

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
