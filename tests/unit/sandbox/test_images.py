"""The OCI archives the node sandbox imports: layout, reproducibility, the Dex image's files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import tarfile
from pathlib import Path

import pytest

from dexkit.errors import DexkitError
from dexkit.sandbox import images

CREATED = dt.datetime(2026, 3, 3, 13, 39, 5, tzinfo=dt.UTC)


def _write(tmp_path: Path, name: str = "dexkit.local/demo:v1") -> images.ImageArchive:
    (tmp_path / "bin").mkdir(parents=True, exist_ok=True)
    tool = tmp_path / "bin" / "tool"
    tool.write_bytes(b"\x7fELF not really")
    entries = [images.Entry("/usr/local/bin/tool", source=tool, mode=0o755),
               images.Entry("/etc/passwd", data=b"root:x:0:0::/:/sbin/nologin\n"),
               images.directory("/var/demo", owner=1001)]
    return images.write_oci_archive(tmp_path / "out" / "demo.tar", name, entries,
                                    images.ImageConfig(cmd=("tool",), user="1001:1001"),
                                    created=CREATED)


def _members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_archive_is_an_oci_image_layout_with_matching_digests(tmp_path: Path) -> None:
    archive = _write(tmp_path)
    with tarfile.open(archive.path) as tar:
        def read(name: str) -> bytes:
            member = tar.extractfile(name)
            assert member is not None
            return member.read()

        assert json.loads(read("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        index = json.loads(read("index.json"))
        (entry,) = index["manifests"]
        assert entry["annotations"] == {"org.opencontainers.image.ref.name": "v1",
                                        "io.containerd.image.name": "dexkit.local/demo:v1"}
        manifest_bytes = read(f"blobs/sha256/{entry['digest'].split(':')[1]}")
        assert entry["digest"] == "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        assert entry["size"] == len(manifest_bytes)
        manifest = json.loads(manifest_bytes)
        for descriptor in (manifest["config"], *manifest["layers"]):
            blob = read(f"blobs/sha256/{descriptor['digest'].split(':')[1]}")
            assert descriptor["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest()
            assert descriptor["size"] == len(blob)
        config = json.loads(read(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))
    assert config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]
    assert config["config"]["User"] == "1001:1001" and config["config"]["Cmd"] == ["tool"]
    assert archive.manifest_digest == entry["digest"]


def test_the_layer_has_parents_first_fixed_owners_and_times(tmp_path: Path) -> None:
    archive = _write(tmp_path)
    data = images.read_oci_archive(archive.path)
    digest = data["manifest"]["layers"][0]["digest"].split(":")[1]
    with tarfile.open(archive.path) as outer:
        layer = outer.extractfile(f"blobs/sha256/{digest}")
        assert layer is not None
        with tarfile.open(fileobj=layer) as tar:
            members = tar.getmembers()
    names = [m.name.rstrip("/") for m in members]
    assert names == ["etc", "etc/passwd", "usr", "usr/local", "usr/local/bin",
                     "usr/local/bin/tool", "var", "var/demo"]
    by_name = {m.name.rstrip("/"): m for m in members}
    assert by_name["usr/local/bin/tool"].mode == 0o755
    assert (by_name["var/demo"].uid, by_name["var/demo"].gid) == (1001, 1001)
    assert {m.mtime for m in members} == {int(CREATED.timestamp())}
    assert {m.uname for m in members} == {""}


def test_the_same_inputs_give_the_same_bytes(tmp_path: Path) -> None:
    first = _write(tmp_path / "a").path.read_bytes()
    second = _write(tmp_path / "b").path.read_bytes()
    assert first == second
    assert not list((tmp_path / "a" / "out").glob(".*"))  # no partial or layer file left


def test_a_name_without_a_tag_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DexkitError, match="not an image name with a tag"):
        _write(tmp_path, "dexkit.local/demo")


def test_static_elf_detection(tmp_path: Path) -> None:
    assert not images.is_static_elf(Path(sys.executable))  # dynamically linked
    not_elf = tmp_path / "script"
    not_elf.write_text("#!/bin/sh\n")
    assert not images.is_static_elf(not_elf)


def test_dex_image_layout_is_the_official_ones(tmp_path: Path) -> None:
    module = tmp_path / "dex"
    (module / "web" / "static").mkdir(parents=True)
    (module / "web" / "static" / "main.css").write_text("body{}")
    (module / "config.docker.yaml").write_text("issuer: x\n")
    binary = tmp_path / "dex-binary"
    binary.write_bytes(b"binary")
    ca = tmp_path / "ca.crt"
    ca.write_text("CA\n")
    source = images.DexSource(binary, "2.45.1", "v0.0.0-20260303133905-11d2eeb52b42", module)
    entries = {e.path: e for e in images.dex_entries(source, ca)}
    assert entries["/usr/local/bin/dex"].mode == 0o755
    assert entries["/srv/dex/web/static/main.css"].source == module / "web/static/main.css"
    assert entries["/etc/ssl/certs/ca-certificates.crt"].source == ca
    assert (entries["/var/dex"].uid, entries["/etc/dex"].uid) == (1001, 1001)
    assert b"dex:x:1001:1001" in (entries["/etc/passwd"].data or b"")
    assert source.committed_at == CREATED
    assert images.dex_image_name("2.45.1") == "dexkit.local/dex:v2.45.1"


def test_the_pause_tag_follows_its_source() -> None:
    assert images.pause_image_name() == f"dexkit.local/pause:{images.pause_tag()}"
    assert len(images.pause_tag()) == 12
    assert "syscall.Wait4" in images.PAUSE_SOURCE.read_text()
