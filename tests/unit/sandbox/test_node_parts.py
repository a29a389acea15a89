"""The node sandbox's pure parts: its network plan, configs, argv, hosts file, cgroup tree and
preflight refusals (the real node is tests/e2e/test_node*.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dexkit.config import load_config
from dexkit.errors import DexkitError
from dexkit.project import InitRequest, init_project
from dexkit.sandbox import cgroups, network, node
from dexkit.sandbox.controlplane import SandboxLayout

MOUNTINFO = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
28 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,name=systemd
29 30 8:1 / / rw,relatime - ext4 /dev/vda rw
"""


def test_cgroup_hierarchies_are_read_from_mountinfo() -> None:
    assert cgroups.hierarchies(MOUNTINFO) == [Path("/sys/fs/cgroup/memory"),
                                              Path("/sys/fs/cgroup/systemd"),
                                              Path("/sys/fs/cgroup/unified")]
    assert cgroups.is_v1_only(MOUNTINFO)
    assert not cgroups.is_v1_only(MOUNTINFO.replace("rw,memory\n", "rw,cpu\n"))


def test_the_cgroup_tree_is_made_in_every_hierarchy_and_refused_twice(tmp_path: Path) -> None:
    mounts = [tmp_path / "memory", tmp_path / "cpuset"]
    for mount in mounts:
        mount.mkdir()
    (tmp_path / "cpuset" / "cpuset.cpus").write_text("0-1\n")
    made = cgroups.create("dexkit", mounts)
    assert {p.relative_to(tmp_path).as_posix() for p in made} == {
        "memory/dexkit", "memory/dexkit/runtime", "cpuset/dexkit", "cpuset/dexkit/runtime"}
    with pytest.raises(DexkitError, match="already exists"):
        cgroups.create("dexkit", mounts)
    (tmp_path / "memory/dexkit/runtime/cgroup.procs").write_text("123\n456\n")
    assert cgroups.pids("dexkit", mounts) == {123, 456}


def test_overlapping_routes_are_found_and_default_and_loopback_ignored() -> None:
    routes = [{"dst": "default", "dev": "eth0"}, {"dst": "127.0.0.0/8", "dev": "lo"},
              {"dst": "192.0.2.0/24", "dev": "eth0"}, {"dst": "10.213.0.0/16", "dev": "tun0"}]
    assert network.overlapping_routes("10.213.0.0/24", routes) == ["10.213.0.0/16 dev tun0"]
    assert network.overlapping_routes("10.214.0.0/24", routes) == []


def test_the_pod_network_has_no_gateway_masquerade_or_default_route(tmp_path: Path) -> None:
    net = network.NodeNetwork()
    conf = json.loads(network.cni_conflist(net, "10.0.0.0/24", tmp_path / "ipam"))
    (bridge,) = conf["plugins"]
    assert (bridge["isGateway"], bridge["isDefaultGateway"], bridge["ipMasq"]) == \
        (False, False, False)
    assert bridge["ipam"]["routes"] == [{"dst": "10.0.0.0/24", "gw": "10.213.0.1"}]
    assert bridge["ipam"]["dataDir"] == str(tmp_path / "ipam")
    assert net.node_ip == "10.213.0.1" and net.prefix == 24


def test_listening_on_reads_proc_net(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text("  sl  local_address rem_address   st\n"
                     "   0: 0100007F:7D00 00000000:0000 0A 00000000:00000000\n"
                     "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000\n")
    real = Path.read_text

    def read(path: Path, *args: object, **kwargs: object) -> str:
        if str(path) in ("/proc/net/tcp", "/proc/net/tcp6"):
            return real(table) if str(path).endswith("tcp") else ""
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read)
    assert network.listening_on(32000)  # 0x7D00, LISTEN
    assert not network.listening_on(8080)  # 0x1F90 is ESTABLISHED, not listening


@pytest.fixture
def guide_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    init_project(InitRequest(directory=tmp_path, connector="static"))
    return load_config(tmp_path).config


def test_the_hosts_file_adds_the_issuer_host_on_loopback(guide_config) -> None:  # type: ignore[no-untyped-def]
    text = node.hosts_text(guide_config, "127.0.0.1 localhost\n")
    assert text.startswith("127.0.0.1 localhost\n")
    assert text.endswith("127.0.0.1\tdex.example.com\n")


def test_the_api_server_differs_from_level_one_only_where_the_node_needs(tmp_path: Path) -> None:
    layout = SandboxLayout(tmp_path)
    argv = node.node_apiserver_argv(
        ["kube-apiserver", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
         "--disable-admission-plugins=ServiceAccount", "--oidc-issuer-url=https://x"],
        layout, "10.213.0.1")
    assert argv[:4] == ["kube-apiserver", "--bind-address=10.213.0.1",
                        "--advertise-address=10.213.0.1", "--oidc-issuer-url=https://x"]
    assert f"--kubelet-client-certificate={layout.admin_cert}" in argv
    assert not any(a.startswith("--disable-admission-plugins") for a in argv)


def test_kubelet_kube_proxy_and_containerd_configs(tmp_path: Path) -> None:
    layout, nl = SandboxLayout(tmp_path), node.NodeLayout(tmp_path)
    kubelet = yaml.safe_load(node.kubelet_config(layout, nl, "10.213.0.1", 40000, 40001))
    assert (kubelet["cgroupDriver"], kubelet["cgroupRoot"], kubelet["failCgroupV1"]) == \
        ("cgroupfs", "/dexkit", False)
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{nl.containerd_socket}"
    proxy = yaml.safe_load(node.kube_proxy_config(tmp_path / "k", network.NodeNetwork(),
                                                  1, 2))
    assert proxy["mode"] == "iptables"
    assert proxy["nodePortAddresses"] == ["127.0.0.1/32", "10.213.0.1/32"]
    assert proxy["conntrack"]["maxPerCore"] == 0
    containerd = node.containerd_config(nl, "dexkit.local/pause:x")
    assert 'sandbox_image = "dexkit.local/pause:x"' in containerd
    assert "restrict_oom_score_adj = true" in containerd
    assert "netns_mounts_under_state_dir = true" in containerd
    assert len(str(nl.containerd_socket)) < 100


def test_the_project_must_name_the_local_dex_image(guide_config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DexkitError, match="which this node cannot pull") as failure:
        node.check_image(guide_config, "dexkit.local/dex:v2.45.1")
    assert "image: dexkit.local/dex:v2.45.1" in failure.value.hint


def test_preflight_refuses_without_root(guide_config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DexkitError, match="needs root") as failure:
        node.preflight(guide_config, network.NodeNetwork(), euid=1000)
    assert "sudo -E dexkit sandbox up --node" in failure.value.hint


def test_node_state_round_trips(tmp_path: Path) -> None:
    state = node.NodeState(bridge="dexkit0", sysctls={"kernel/panic": "1"},
                           absent=["/var/lib/cni"])
    state.save(tmp_path)
    assert node.NodeState.load(tmp_path) == state
    assert (tmp_path / node.STATE_FILE).stat().st_mode & 0o777 == 0o600
    assert node.is_node(tmp_path)
