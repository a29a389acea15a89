"""The kind node image's inputs, read without building one."""

from __future__ import annotations

from pathlib import Path

import pytest

from dexkit.errors import DexkitError
from dexkit.sandbox import kindnode

DEB822 = """\
Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_is_the_machines_own_deb822_source(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert kindnode.apt_mirror("bookworm", tmp_path) == "http://mirror.example/debian"


def test_a_one_line_source_with_options(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main contrib\n")
    assert kindnode.apt_mirror("bookworm", tmp_path) == "http://one.example/debian"


def test_no_source_for_the_release_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://one.example/debian trixie main\n")
    with pytest.raises(DexkitError, match="no apt source for Debian bookworm main"):
        kindnode.apt_mirror("bookworm", tmp_path)


def test_debian_release_comes_from_os_release() -> None:
    assert kindnode.debian_release('ID=debian\nVERSION_CODENAME=bookworm\n') == "bookworm"
    with pytest.raises(DexkitError, match="this is not Debian"):
        kindnode.debian_release('ID=ubuntu\nVERSION_CODENAME=noble\n')


def test_containerd_config_takes_kubeadms_pause_and_no_negative_oom_score() -> None:
    kind = ('[plugins."io.containerd.grpc.v1.cri"]\n'
            '  sandbox_image = "registry.k8s.io/pause:3.10"\n'
            '  restrict_oom_score_adj = false\n')
    out = kindnode.containerd_config(kind, "registry.k8s.io/pause:3.10.2")
    assert '  sandbox_image = "registry.k8s.io/pause:3.10.2"\n' in out
    assert "  restrict_oom_score_adj = true\n" in out


def test_the_static_cni_is_one_nodes_bridge() -> None:
    import json

    conf = json.loads(kindnode.cni_conflist())
    bridge = conf["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["ipam"]["ranges"] == [[{"subnet": kindnode.POD_SUBNET}]]
    assert {p["type"] for p in conf["plugins"]} <= set(kindnode.CNI_PLUGINS)


def test_the_node_image_name_carries_the_release_and_the_inputs_digest() -> None:
    assert kindnode.node_image_name("1.37.2", "abc123") == \
        "dexkit.local/kind-node:v1.37.2-abc123"
