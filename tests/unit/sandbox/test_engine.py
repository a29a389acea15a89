"""The kind harness's engine: the parts that decide what to touch, without starting one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dexkit.errors import DexkitError
from dexkit.sandbox import engine, hostchanges

HYBRID = """\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
"""
PROC_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpu\t3\t1\t1
memory\t2\t1\t1
hugetlb\t0\t1\t1
net_cls\t0\t1\t1
net_prio\t0\t1\t1
perf_event\t0\t1\t1
rdma\t0\t1\t0
"""


def test_the_machines_own_mount_namespace_is_never_the_engines() -> None:
    """stop kills every process of the engine's namespace: it must refuse this machine's own
    (a start that read dockerd's namespace before unshare(2) ran recorded exactly that)."""
    own = str(Path("/proc/self/ns/mnt").readlink())
    with pytest.raises(DexkitError, match="this machine's own mount namespace"):
        hostchanges.namespace_pids(own)
    with pytest.raises(DexkitError, match="runs in this machine's own mount namespace"):
        hostchanges.private_namespace(os.getpid())
    state = engine.EngineState(mount_ns=own)
    assert "processes remain in the engine's namespace" not in " ".join(
        engine.leftovers(engine.EngineLayout(Path("/nonexistent/dexkit-test")), state))


def test_unmounted_v1_controllers_are_those_the_kernel_enables_and_nobody_mounts() -> None:
    assert hostchanges.unmounted_controllers(PROC_CGROUPS, HYBRID) == [
        "hugetlb", "net_cls,net_prio", "perf_event"]
    v2 = "31 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    assert hostchanges.unmounted_controllers(PROC_CGROUPS, v2) == []


def test_nsdelegate_is_read_from_the_super_options() -> None:
    assert hostchanges.nsdelegate_mounts(HYBRID) == ["/sys/fs/cgroup/unified"]
    assert hostchanges.nsdelegate_mounts(HYBRID.replace(",nsdelegate", "")) == []


@pytest.mark.parametrize(("bounding", "lacks"), [("000001fffeffffff", True),
                                                 ("000001ffffffffff", False)])
def test_cap_sys_resource_in_the_bounding_set(bounding: str, lacks: bool) -> None:
    assert hostchanges.lacks_cap_sys_resource(f"Name:\tx\nCapBnd:\t{bounding}\n") is lacks


def test_the_runc_wrapper_drops_cap_sys_resource_and_runs_the_real_runc(tmp_path: Path) -> None:
    fake = tmp_path / "runc"
    fake.write_text(f"#!{sys.executable}\nimport sys, json\n"
                    f"json.dump(sys.argv[1:], open({str(tmp_path / 'args')!r}, 'w'))\n")
    fake.chmod(0o755)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(hostchanges.runc_wrapper(sys.executable, str(fake)))
    wrapper.chmod(0o755)
    caps = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": {"capabilities": {
        "bounding": caps, "effective": caps, "permitted": caps}}}))
    subprocess.run([str(wrapper), "--root", "/r", "create", "--bundle", str(bundle), "id"],
                   check=True)
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_NET_ADMIN"]
    assert json.loads((tmp_path / "args").read_text()) == [
        "--root", "/r", "create", "--bundle", str(bundle), "id"]
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"capabilities": {"bounding": caps}, "args": ["sh"]}))
    subprocess.run([str(wrapper), "exec", "--process", str(process), "id"], check=True)
    assert json.loads(process.read_text())["capabilities"]["bounding"] == [
        "CAP_CHOWN", "CAP_NET_ADMIN"]


def test_dockerd_keeps_its_state_and_traffic_to_itself(tmp_path: Path) -> None:
    layout = engine.EngineLayout(tmp_path / "cache", tmp_path / "run")
    argv = engine.dockerd_argv(layout, wrapper=True)
    assert f"--data-root={tmp_path / 'cache' / 'docker'}" in argv
    assert f"--host=unix://{tmp_path / 'run' / 'docker.sock'}" in argv
    for flag in ("--bridge=none", "--ip-forward=false", "--ip-masq=false",
                 "--userland-proxy=false", "--default-runtime=nosysres"):
        assert flag in argv
    assert not any(a.startswith("--bip") for a in argv)
    assert "--default-runtime=nosysres" not in engine.dockerd_argv(layout, wrapper=False)
