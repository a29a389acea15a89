"""What the kind harness's engine and its nodes change on this machine outside the engine's own
directories: how to see each change and how to undo it (:mod:`dexkit.sandbox.engine` records
and calls these; nothing here decides when).

- Capabilities: a root without CAP_SYS_RESOURCE needs a runc that drops it (:func:`runc_wrapper`).
- cgroups: v1 controllers nobody mounted; the ``nsdelegate`` option a node's systemd sets on the
  shared cgroup2 superblock (cleared with a raw ``mount(2)``); directories nodes leave.
- Mount namespaces: the engine's own, never the machine's (:func:`namespace_pids` refuses it).
- Network: the engine's bridges and veths, iptables rules naming them outside docker's chains,
  the nftables tables iptables-nft created.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import shlex
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from dexkit.errors import DexkitError
from dexkit.sandbox import cgroups, network

CAP_SYS_RESOURCE = 24
MS_REMOUNT = 32
NFT = "nft"
CGROUP_ROOT = Path("/sys/fs/cgroup")
DOCKER0 = "docker0"
KIND_BRIDGE = "dexkind0"


def lacks_cap_sys_resource(status: str | None = None) -> bool:
    """True when this process's capability bounding set lacks CAP_SYS_RESOURCE (this VM's)."""
    text = Path("/proc/self/status").read_text() if status is None else status
    for line in text.splitlines():
        if line.startswith("CapBnd:"):
            return not (int(line.split()[1], 16) >> CAP_SYS_RESOURCE) & 1
    return False


def unmounted_controllers(proc_cgroups: str | None = None,
                          mountinfo: str | None = None) -> list[str]:
    """cgroup v1 controllers the kernel enables but no hierarchy mounts, as mount option
    lists (``net_cls,net_prio`` together, as systemd mounts them); empty on cgroup v2."""
    if not cgroups.is_v1_only(mountinfo):
        return []
    text = Path("/proc/cgroups").read_text() if proc_cgroups is None else proc_cgroups
    enabled = [line.split()[0] for line in text.splitlines()[1:]
               if len(line.split()) >= 4 and line.split()[3] == "1"]
    info = cgroups.MOUNTINFO.read_text() if mountinfo is None else mountinfo
    mounted: set[str] = set()
    for line in info.splitlines():
        words = line.partition(" - ")[2].split()
        if words and words[0] == "cgroup":
            mounted.update(words[-1].split(","))
    missing = [c for c in enabled if c not in mounted]
    wanted: list[str] = []
    if "net_cls" in missing and "net_prio" in missing:
        wanted.append("net_cls,net_prio")
        missing = [c for c in missing if c not in ("net_cls", "net_prio")]
    return sorted(wanted + missing)


def nsdelegate_mounts(mountinfo: str | None = None) -> list[str]:
    """cgroup2 mount points whose superblock has ``nsdelegate``."""
    text = cgroups.MOUNTINFO.read_text() if mountinfo is None else mountinfo
    found: list[str] = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        words = right.split()
        if words and words[0] == "cgroup2" and "nsdelegate" in words[-1].split(","):
            found.append(left.split()[4])
    return found


def clear_nsdelegate(mount_point: str) -> None:
    """Remount a cgroup2 superblock without ``nsdelegate``: ``mount -o remount`` passes the
    options it read back, so only a raw ``mount(2)`` with empty data clears it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(None, mount_point.encode(), None, MS_REMOUNT, b"") != 0:
        error = ctypes.get_errno()
        raise DexkitError(f"cannot remount {mount_point} without nsdelegate: "
                          f"{os.strerror(error)}", "remount it by hand (mount(2), MS_REMOUNT)")


def cgroup_tops() -> dict[str, list[str]]:
    return {str(h): sorted(p.name for p in h.iterdir() if p.is_dir())
            for h in cgroups.hierarchies()}


def runc_wrapper(python: str = sys.executable, runc: str | None = None) -> str:
    """A runc that drops CAP_SYS_RESOURCE from a container's bundle (create, run) and from an
    exec's process (exec --process), then runs the real runc: ``--privileged`` asks for every
    capability, and runc fails when the bounding set cannot grant one."""
    real = runc or shutil.which("runc") or "/usr/sbin/runc"
    return f"""#!{python} -IS
# Written by dexkit's kind harness (dexkit/sandbox/engine.py): this machine's root lacks
# CAP_SYS_RESOURCE, so every container and exec is given the capabilities it asked for minus it.
import json, os, sys

DROP = "CAP_SYS_RESOURCE"


def strip(process):
    caps = process.get("capabilities") or {{}}
    for kind in list(caps):
        caps[kind] = [c for c in caps[kind] or [] if c != DROP]


def edit(path, key=None):
    with open(path) as handle:
        data = json.load(handle)
    strip(data.get(key) or {{}} if key else data)
    with open(path, "w") as handle:
        json.dump(data, handle)


args = sys.argv[1:]
command = next((a for a in args if a in ("create", "run", "exec")), None)
if command in ("create", "run"):
    bundle = "."
    for i, arg in enumerate(args):
        if arg in ("--bundle", "-b") and i + 1 < len(args):
            bundle = args[i + 1]
        elif arg.startswith("--bundle="):
            bundle = arg.split("=", 1)[1]
    edit(os.path.join(bundle, "config.json"), "process")
elif command == "exec":
    for i, arg in enumerate(args):
        if arg in ("--process", "-p") and i + 1 < len(args):
            edit(args[i + 1])
        elif arg.startswith("--process="):
            edit(arg.split("=", 1)[1])
os.execv({real!r}, [{real!r}, *args])
"""


def own_namespaces() -> set[str]:
    """The mount namespaces that are never the engine's: this process's and init's (when it
    can be read: a VM's init may refuse)."""
    found = {str(Path("/proc/self/ns/mnt").readlink())}
    with contextlib.suppress(OSError):
        found.add(str(Path("/proc/1/ns/mnt").readlink()))
    return found


def private_namespace(pid: int) -> str:
    """``pid``'s mount namespace, which must not be this machine's own."""
    found = str(Path(f"/proc/{pid}/ns/mnt").readlink())
    if found in own_namespaces():
        raise DexkitError(f"dockerd (pid {pid}) runs in this machine's own mount namespace, "
                          "not a private one", "check that 'unshare --mount' works here")
    return found


def namespace_pids(mount_ns: str) -> list[int]:
    """Every process in the mount namespace ``mnt:[inode]``; refuses the machine's own (whose
    processes are everyone's, never the engine's alone)."""
    if mount_ns in own_namespaces():
        raise DexkitError(f"refusing to look for the engine's processes in {mount_ns}: it is "
                          "this machine's own mount namespace",
                          "engine.json is wrong; stop dockerd by hand (its pid file)")
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str((entry / "ns" / "mnt").readlink()) == mount_ns:
                    found.append(int(entry.name))
    return found


def kill_namespace(mount_ns: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in namespace_pids(mount_ns) if p != os.getpid()]
        if not left:
            return
        if time.monotonic() > deadline:
            raise DexkitError(f"processes {left[:10]} stay in the engine's namespace",
                              "look at them with 'ps -o pid,stat,wchan,args -p <pid>'")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        time.sleep(0.2)


def delete_links() -> None:
    for link in engine_links():
        network.delete_link(link)


def engine_links() -> list[str]:
    """docker0, the kind bridge, other docker bridges and the containers' veths."""
    names = [p.name for p in Path("/sys/class/net").iterdir()]
    return sorted(n for n in names if n in (DOCKER0, KIND_BRIDGE) or n.startswith("br-")
                  or (n.startswith("veth") and _is_engine_veth(n)))


def _is_bridge(name: str) -> bool:
    return name in (DOCKER0, KIND_BRIDGE) or name.startswith("br-")


def bridge_rules(engine_range: str = "10.214.0.0/15") -> list[tuple[str, str, list[str]]]:
    """Rules (binary, table, words) that name one of the engine's bridges (``-i``/``-o``) or
    addresses (``-s``/``-d`` inside ``engine_range``): docker writes some outside its chains
    (FORWARD; a published port's hairpin MASQUERADE in POSTROUTING), and they stay if it dies."""
    wanted = ipaddress.ip_network(engine_range)

    def ours(value: str) -> bool:
        try:
            return ipaddress.ip_network(value.lstrip("!"), strict=False).subnet_of(wanted)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False

    found: list[tuple[str, str, list[str]]] = []
    for binary in network.IPTABLES:
        for table in network.TABLES:
            text = network.run([f"{binary}-save", "-t", table], what="reading iptables",
                               check=False)
            for line in text.splitlines():
                if not line.startswith("-A "):
                    continue
                words = shlex.split(line)
                names = {words[i + 1] for i, w in enumerate(words[:-1])
                         if w in ("-i", "-o", "--in-interface", "--out-interface")}
                addresses = {words[i + 1] for i, w in enumerate(words[:-1])
                             if w in ("-s", "-d", "--source", "--destination")}
                if any(_is_bridge(n) for n in names) or any(ours(a) for a in addresses):
                    found.append((binary, table, words))
    return found


def remove_bridge_rules() -> None:
    for binary, table, words in bridge_rules():
        network.run([binary, "-w", "-t", table, "-D", *words[1:]],
                    what=f"deleting a rule of the engine's bridges in {binary} {table}")


def nft_tables() -> list[str] | None:
    """``["ip filter", "ip nat", ...]`` (nftables' view, where iptables-nft keeps its tables),
    or None without the nft command."""
    if shutil.which(NFT) is None:
        return None
    text = network.run([NFT, "list", "tables"], what="listing nftables tables", check=False)
    return sorted(line.split(None, 1)[1] for line in text.splitlines()
                  if line.startswith("table "))


def remove_new_nft_tables(before: Sequence[str]) -> None:
    """Delete each table that did not exist before and holds no rule any more (iptables-nft
    creates ``ip filter``/``ip nat`` on first use and never removes them)."""
    for table in nft_tables() or []:
        if table in before:
            continue
        listing = network.run([NFT, "list", "table", *table.split()], what=f"reading {table}",
                              check=False)
        rules = [line for line in listing.splitlines() if line.strip() and not
                 line.strip().startswith(("table ", "chain ", "type ", "policy ", "}"))]
        if not rules:
            network.run([NFT, "delete", "table", *table.split()], what=f"deleting {table}")


def _is_engine_veth(name: str) -> bool:
    master = Path("/sys/class/net", name, "master")
    return not master.exists() or master.resolve().name in (DOCKER0, KIND_BRIDGE) or \
        master.resolve().name.startswith("br-")


def new_cgroup_tops(before: Mapping[str, Sequence[str]]) -> list[Path]:
    """Top-level cgroup directories that were not there before the engine started: docker's
    (``/docker/<container>``, where a node's systemd, kubelet and pods live) and any other a
    node made. The engine and a node sandbox never run together, so they are the engine's."""
    found: list[Path] = []
    for hierarchy in cgroups.hierarchies():
        if str(hierarchy) in before:
            old = set(before[str(hierarchy)])
            found += [top for top in hierarchy.iterdir() if top.is_dir() and top.name not in old]
    return found


def remove_new_cgroups(before: Mapping[str, Sequence[str]]) -> None:
    """Remove, deepest first, every cgroup directory below a top-level entry that was not
    there before the engine started (docker/, kubelet/, the nodes' system.slice/...)."""
    problems: list[str] = []
    for top in new_cgroup_tops(before):
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()),
                      key=lambda p: len(p.parts), reverse=True)
        for path in [*dirs, top]:
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror}")
    if problems:
        raise DexkitError("cgroups remain: " + "; ".join(problems[:5]),
                          "a process may still be in them (see cgroup.procs)")


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        if path.is_relative_to(CGROUP_ROOT):
            path.rmdir()  # a mount point on the cgroup tmpfs: empty once unmounted
        else:
            shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
