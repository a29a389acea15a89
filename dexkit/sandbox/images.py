"""The node sandbox's images, built on this machine: no image registry is reachable, none is used.

Rules:
- Names say where an image came from: ``dexkit.local/pause:<tag>`` and
  ``dexkit.local/dex:v<Dex version>``, never a registry's name such as ``ghcr.io/dexidp/dex``,
  so nobody mistakes a local build for the project's published image.
- pause is dexkit's own program (``pause.go`` beside this module), built with
  ``CGO_ENABLED=0`` in a generated module with no dependencies: a static binary, so the image is
  that one file. Go, not C: every other peer is built by the same toolchain, so a user needs
  nothing new, and a static Go binary needs no static libc (glibc's ``libc.a``) on the machine.
- The Dex image is the Dex peer's binary (the one ``dexkit sandbox build --only dex`` made, from
  the pinned module version) plus files from that same module version's source, in the layout
  of the official image (Dex's Dockerfile at the release): ``/usr/local/bin/dex``, the web
  assets at ``/srv/dex/web`` (the binary embeds them too; the image ships them as the official
  one does, for ``frontend.dir``), ``/etc/dex/config.docker.yaml``, ``/var/dex`` and
  ``/etc/dex`` owned by 1001, ``/etc/passwd`` and ``/etc/group`` with ``dex`` as 1001,
  ``USER 1001:1001``, and the machine's CA bundle (Debian's ca-certificates) at
  ``/etc/ssl/certs/ca-certificates.crt``. Not included: ``docker-entrypoint`` and ``gomplate``,
  which only template a config for ``docker run``; the rendered Deployment runs ``dex serve``
  itself, so the image's command is ``dex serve /etc/dex/config.docker.yaml`` without them.
- Each image is one uncompressed layer ``FROM scratch``, written as an OCI image layout in a tar
  archive (what ``ctr images import`` takes). The archive is byte-for-byte a function of its
  inputs (fixed times, owners and order), so it is cached under the peers' cache and reused
  until an input changes. This small writer instead of umoci, skopeo or buildah: those build
  an image by unpacking a base, changing a root filesystem as root and repacking it, then need
  a second step to archive the layout; an image of a few known files from scratch is the
  simple case of the OCI image-layout spec, and its real reader (containerd's importer, then
  runc running it) is what the end-to-end tests check it with.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from dexkit import files
from dexkit.errors import DexkitError
from dexkit.sandbox import peers

Progress = Callable[[str], None]

REGISTRY = "dexkit.local"
DEX_UID = 1001
# Bumped whenever the layout written here changes, so cached archives are rebuilt.
FORMAT = "1"
PAUSE_SOURCE = Path(__file__).with_name("pause.go")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
# containerd's importer names the image after this annotation (images.AnnotationImageName).
CONTAINERD_NAME = "io.containerd.image.name"


# --- the layer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One file or directory of an image's layer."""

    path: str  # absolute, in the image
    data: bytes | None = None  # file contents, or
    source: Path | None = None  # a file to copy; neither: a directory
    mode: int = 0o644
    uid: int = 0
    gid: int = 0

    @property
    def is_dir(self) -> bool:
        return self.data is None and self.source is None


def directory(path: str, *, mode: int = 0o755, owner: int = 0) -> Entry:
    return Entry(path, mode=mode, uid=owner, gid=owner)


def tree(source: Path, target: str) -> list[Entry]:
    """Every directory and regular file below ``source``, at ``target`` in the image (modes made
    0755/0644: the Go module cache keeps its files read-only)."""
    entries = [directory(target)]
    for path in sorted(source.rglob("*")):
        inside = f"{target}/{path.relative_to(source).as_posix()}"
        if path.is_dir():
            entries.append(directory(inside))
        elif path.is_file():
            entries.append(Entry(inside, source=path))
    return entries


def _with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """The entries, each directory once, every parent present, in path order (parents first)."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        path = str(PurePosixPath("/") / entry.path.lstrip("/"))
        by_path[path] = Entry(path, entry.data, entry.source, entry.mode, entry.uid, entry.gid)
        for parent in PurePosixPath(path).parents:
            if str(parent) != "/":
                by_path.setdefault(str(parent), directory(str(parent)))
    return [by_path[p] for p in sorted(by_path, key=lambda p: PurePosixPath(p).parts)]


def write_layer(entries: Iterable[Entry], target: Path, *, mtime: int) -> None:
    """A reproducible tar layer: fixed mtime and owners, no user or group names, path order."""
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in _with_parents(entries):
            info = tarfile.TarInfo(entry.path.lstrip("/") + ("/" if entry.is_dir else ""))
            info.mtime = mtime
            info.uid, info.gid = entry.uid, entry.gid
            info.uname = info.gname = ""
            info.mode = entry.mode
            if entry.is_dir:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.data is not None:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                assert entry.source is not None
                info.size = entry.source.stat().st_size
                with entry.source.open("rb") as handle:
                    tar.addfile(info, handle)


# --- the OCI layout -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config the sandbox's images set."""

    cmd: tuple[str, ...]
    user: str = "0:0"
    env: tuple[str, ...] = (PATH_ENV,)
    entrypoint: tuple[str, ...] = ()
    working_dir: str = "/"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageArchive:
    """An image written as an OCI archive: what to import, and how containerd will name it."""

    name: str  # dexkit.local/dex:v2.45.1
    path: Path
    manifest_digest: str  # sha256:...
    layer_digest: str


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_oci_archive(target: Path, name: str, entries: Iterable[Entry], config: ImageConfig,
                      *, created: dt.datetime) -> ImageArchive:
    """Write ``name`` (``registry/repo:tag``) as a one-layer OCI image layout in a tar archive at
    ``target``, atomically; the bytes depend only on the arguments."""
    repository, _, tag = name.rpartition(":")
    if not repository or "/" in tag:
        raise DexkitError(f"'{name}' is not an image name with a tag", "use registry/repo:tag")
    files.ensure_dir(target.parent, 0o755)
    stamp = int(created.timestamp())
    layer_path = target.with_name(f".{target.name}.layer")
    write_layer(entries, layer_path, mtime=stamp)
    layer_digest = "sha256:" + peers.sha256_file(layer_path)
    layer_size = layer_path.stat().st_size
    image_config = _json_bytes({
        "architecture": "amd64", "os": "linux",
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {"User": config.user, "Env": list(config.env), "Cmd": list(config.cmd),
                   "Entrypoint": list(config.entrypoint) or None,
                   "WorkingDir": config.working_dir, "Labels": dict(config.labels)},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "created_by": "dexkit sandbox images (one layer, from scratch)"}],
    })
    manifest = _json_bytes({
        "schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(image_config),
                   "size": len(image_config)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": layer_size}],
    })
    index = _json_bytes({
        "schemaVersion": 2, "mediaType": MEDIA_INDEX,
        "manifests": [{"mediaType": MEDIA_MANIFEST, "digest": _digest(manifest),
                       "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {REF_NAME: tag, CONTAINERD_NAME: name}}],
    })
    blobs = {_digest(image_config): image_config, _digest(manifest): manifest}
    partial = target.with_name(f".{target.name}.partial")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}), stamp)
            _add_bytes(tar, "index.json", index, stamp)
            for name_ in ("blobs/", "blobs/sha256/"):
                info = tarfile.TarInfo(name_)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, stamp
                tar.addfile(info)
            for digest, data in sorted(blobs.items()):
                _add_bytes(tar, f"blobs/sha256/{digest.split(':', 1)[1]}", data, stamp)
            info = tarfile.TarInfo(f"blobs/sha256/{layer_digest.split(':', 1)[1]}")
            info.size, info.mode, info.mtime = layer_size, 0o644, stamp
            with layer_path.open("rb") as handle:
                tar.addfile(info, handle)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
        layer_path.unlink(missing_ok=True)
    return ImageArchive(name, target, _digest(manifest), layer_digest)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, mtime
    tar.addfile(info, io.BytesIO(data))


def read_oci_archive(path: Path) -> dict[str, Any]:
    """The index, manifest and config of a one-image archive (for checks and tests)."""
    with tarfile.open(path) as tar:
        def blob(name: str) -> bytes:
            member = tar.extractfile(name)
            if member is None:
                raise DexkitError(f"{path} has no {name}", "rebuild the image")
            return member.read()

        index = json.loads(blob("index.json"))
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.loads(blob(f"blobs/sha256/{manifest_digest.split(':', 1)[1]}"))
        config = json.loads(blob(f"blobs/sha256/{manifest['config']['digest'].split(':', 1)[1]}"))
    return {"index": index, "manifest": manifest, "config": config}


# --- static binaries ------------------------------------------------------------------------

_PT_INTERP = 3


def is_static_elf(path: Path) -> bool:
    """True for a 64-bit little-endian ELF without an interpreter (no dynamic loader needed)."""
    with path.open("rb") as handle:
        header = handle.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return False
        phoff = int.from_bytes(header[32:40], "little")
        phentsize = int.from_bytes(header[54:56], "little")
        phnum = int.from_bytes(header[56:58], "little")
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    return all(int.from_bytes(table[i:i + 4], "little") != _PT_INTERP
               for i in range(0, len(table), phentsize))


def _require_static(path: Path, what: str) -> None:
    if not is_static_elf(path):
        raise DexkitError(f"{path} is not a static executable, so it cannot run in the "
                          f"from-scratch {what} image (no libc there)",
                          "build it with CGO_ENABLED=0 (dexkit sandbox build does) or unset "
                          "the DEXKIT_* override that points at it")


# --- the two images -------------------------------------------------------------------------


def images_dir(root: Path | None = None) -> Path:
    return (root or peers.cache_root()) / "images"


def _go(args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None,
        what: str) -> str:
    merged = {**os.environ, "GOTOOLCHAIN": "local", **peers.go_proxy_env(), **(env or {})}
    try:
        result = subprocess.run(["go", *args], cwd=cwd, env=merged, capture_output=True,
                                text=True, check=False, timeout=600)
    except FileNotFoundError as exc:
        raise peers.go_missing() from exc
    if result.returncode != 0:
        tail = "\n".join(f"  {line}" for line in result.stderr.strip().splitlines()[-15:])
        raise DexkitError(f"'go {' '.join(args)}' failed while {what}:\n{tail}",
                          "check the Go toolchain and the module proxy")
    return result.stdout


def pause_tag() -> str:
    """The pause image's tag: its source's digest, so a changed program is a new image."""
    return hashlib.sha256(PAUSE_SOURCE.read_bytes() + FORMAT.encode()).hexdigest()[:12]


def pause_image_name() -> str:
    return f"{REGISTRY}/pause:{pause_tag()}"


def build_pause_binary(root: Path | None = None) -> Path:
    """``pause.go`` built static in a generated module under the cache's work directory."""
    work = (root or peers.cache_root()) / "work" / "pause"
    files.ensure_dir(work, 0o755)
    (work / "go.mod").write_text("module dexkit.local/pause\n\ngo 1.22\n")
    (work / "main.go").write_bytes(PAUSE_SOURCE.read_bytes())
    binary = work / "pause"
    _go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."], cwd=work,
        env={"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}, what="building the pause program")
    _require_static(binary, "pause")
    return binary


def build_pause_image(root: Path | None = None) -> ImageArchive:
    name = pause_image_name()
    target = images_dir(root) / f"pause-{pause_tag()}.tar"
    if target.is_file():
        return ImageArchive(name, target, *_digests(target))
    binary = build_pause_binary(root)
    return write_oci_archive(target, name, [Entry("/pause", source=binary, mode=0o755)],
                             ImageConfig(cmd=(), entrypoint=("/pause",), user="65535:65535",
                                         labels={"org.opencontainers.image.title":
                                                 "dexkit sandbox pause"}),
                             created=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


def _digests(path: Path) -> tuple[str, str]:
    data = read_oci_archive(path)
    return data["index"]["manifests"][0]["digest"], data["manifest"]["layers"][0]["digest"]


@dataclass(frozen=True)
class DexSource:
    """The Dex binary and the module source it was built from."""

    binary: Path
    version: str  # 2.45.1
    module_version: str  # v0.0.0-20260303133905-11d2eeb52b42
    module_dir: Path | None = None  # the module's files in Go's module cache, once looked up
    what: str = ""  # "Dex v2.45.1 (release)" / "Dex main at commit ... (not a release)"

    @property
    def committed_at(self) -> dt.datetime:
        stamp = self.module_version.split("-")[1] if self.module_version.count("-") >= 2 else ""
        try:
            return dt.datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        except ValueError:
            return dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def dex_image_name(version: str = peers.DEX_VERSION) -> str:
    return f"{REGISTRY}/dex:v{version}"


def dex_source(root: Path | None = None, dex: str | None = None) -> DexSource:
    """The built Dex peer (``dex``: see :data:`peers.DEX_BUILDS`) and the module version it was
    built from (no Go call: the source directory is looked up only when an image has to be
    written, see :func:`module_dir`)."""
    spec = peers.peer_spec("dex", dex=dex)
    binary = peers.require_peer("dex", root=root, dex=dex)
    location = peers.locate(spec, root=root)
    module_version = location.manifest.module_version if location.manifest else \
        spec.module_version
    build = peers.dex_build(dex)
    what = build.what if spec.version == build.version else f"Dex v{spec.version}"
    return DexSource(binary, spec.version, module_version, None, what)


def module_dir(module_version: str) -> Path:
    """Dex's module source in Go's module cache (downloaded by the peer's build)."""
    out = _go(["mod", "download", "-json", f"{peers.DEX_MODULE}@{module_version}"],
              cwd=Path.cwd() if not peers.cache_root().is_dir() else peers.cache_root(),
              env={"GOFLAGS": "-mod=mod"},
              what=f"locating {peers.DEX_MODULE}@{module_version}")
    info = json.loads(out)
    if info.get("Error") or not info.get("Dir"):
        raise DexkitError(f"cannot find the source of {peers.DEX_MODULE}@{module_version}: "
                          f"{info.get('Error', 'no directory')}",
                          "rebuild Dex with 'dexkit sandbox build --only dex --force'")
    return Path(info["Dir"])


def dex_entries(source: DexSource, ca_bundle: Path = CA_BUNDLE) -> list[Entry]:
    """The official image's layout (see the module docstring)."""
    if not ca_bundle.is_file():
        raise DexkitError(f"no CA bundle at {ca_bundle} for the Dex image",
                          "install Debian's ca-certificates (apt-get install ca-certificates)")
    source_dir = source.module_dir or module_dir(source.module_version)
    web = source_dir / "web"
    if not web.is_dir():
        raise DexkitError(f"{source_dir} has no web/ directory",
                          "is this the Dex module? rebuild Dex with --force")
    entries = [
        Entry("/usr/local/bin/dex", source=source.binary, mode=0o755),
        Entry("/etc/ssl/certs/ca-certificates.crt", source=ca_bundle),
        Entry("/etc/passwd", data=(f"root:x:0:0:root:/root:/sbin/nologin\n"
                                   f"dex:x:{DEX_UID}:{DEX_UID}:dex:/var/dex:/sbin/nologin\n"
                                   ).encode()),
        Entry("/etc/group", data=f"root:x:0:\ndex:x:{DEX_UID}:\n".encode()),
        directory("/var/dex", owner=DEX_UID),
        directory("/etc/dex", owner=DEX_UID),
        *tree(web, "/srv/dex/web"),
    ]
    sample = source_dir / "config.docker.yaml"
    if sample.is_file():
        entries.append(Entry("/etc/dex/config.docker.yaml", source=sample, uid=DEX_UID,
                             gid=DEX_UID))
    return entries


def build_dex_image(source: DexSource, root: Path | None = None,
                    ca_bundle: Path = CA_BUNDLE) -> ImageArchive:
    _require_static(source.binary, "Dex")
    name = dex_image_name(source.version)
    key = hashlib.sha256("\n".join([
        FORMAT, peers.sha256_file(source.binary), source.module_version,
        peers.sha256_file(ca_bundle)]).encode()).hexdigest()[:12]
    target = images_dir(root) / f"dex-{source.version}-{key}.tar"
    if target.is_file():
        return ImageArchive(name, target, *_digests(target))
    return write_oci_archive(
        target, name, dex_entries(source, ca_bundle),
        ImageConfig(cmd=("dex", "serve", "/etc/dex/config.docker.yaml"),
                    user=f"{DEX_UID}:{DEX_UID}", labels={
                        "org.opencontainers.image.title": "dex (built by dexkit sandbox)",
                        "org.opencontainers.image.version": f"v{source.version}",
                        "org.opencontainers.image.source": "https://github.com/dexidp/dex",
                        "org.opencontainers.image.revision": source.module_version,
                        "org.opencontainers.image.description":
                            source.what or f"Dex v{source.version}",
                    }),
        created=source.committed_at)


@dataclass(frozen=True)
class NodeImages:
    pause: ImageArchive
    dex: ImageArchive


def build_node_images(progress: Progress, root: Path | None = None,
                      dex: str | None = None) -> NodeImages:
    """Both images, from the cache when their inputs are unchanged."""
    progress("pause image (dexkit's own pause.go, CGO_ENABLED=0) ...")
    pause = build_pause_image(root)
    progress(f"  {pause.name} ({pause.path.name})")
    progress("Dex image (the Dex peer and its module's web assets) ...")
    image = build_dex_image(dex_source(root, dex), root)
    progress(f"  {image.name} ({image.path.name})")
    return NodeImages(pause, image)
