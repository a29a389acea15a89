"""A full disk, for real: a small tmpfs filled to leave 0, 4 KiB, 8 KiB... free, and dexkit's
writing commands run on it at every level. Each run either succeeds with a consistent
project, or fails cleanly (one error naming the file and the full disk, a hint about space
rather than permissions) and leaves every file as it was: no temporary, no truncated backup.

Mounting needs root. CI runs as root; elsewhere these tests fail, loudly, rather than skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dexkit import pki
from tests.promise import Result, assert_clean_failure, run, snapshot
from tests.unit.render.helpers import FIXTURES

PAGE = 4096
FILLER = "filler"

pytestmark = pytest.mark.root


CLONE_NEWNS = 0x00020000
_PRIVATE: list[bool] = []


def _mounts_of_our_own() -> None:
    """Move the thread that runs the tests (and the CLI, in process) into a mount namespace
    of its own, once, whose mounts receive the machine's but send nothing back: the tmpfs is
    never the machine's, so the e2e modules that compare the machine's mounts (node, kind) never
    see it and nothing here waits for them. unshare(2) with CLONE_NEWNS moves only the calling
    thread; `mount` and `umount` run as its children and live in the same namespace."""
    if _PRIVATE:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        pytest.fail(f"unshare(CLONE_NEWNS): {os.strerror(ctypes.get_errno())}")
    subprocess.run(["mount", "--make-rslave", "/"], check=True)
    _PRIVATE.append(True)


@pytest.fixture
def tmpfs() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("the disk-full tests mount a tmpfs and need root (CI runs as root)")
    _mounts_of_our_own()
    where = Path(tempfile.mkdtemp(prefix="dexkit-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,nr_inodes=4096,mode=0755",
                    "dexkit-test", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def test_the_tmpfs_is_never_the_machines(tmpfs: Path) -> None:
    machine = Path("/proc/1/mountinfo").read_text()  # init's view: the machine's mounts
    assert str(tmpfs) not in machine
    assert str(tmpfs) in Path("/proc/thread-self/mountinfo").read_text()


def _free(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def _fill(root: Path, leave: int) -> None:
    """Make the filesystem hold exactly ``leave`` free bytes (rounded to pages)."""
    filler = root / FILLER
    filler.unlink(missing_ok=True)
    size = max(_free(root) - leave, 0)
    with filler.open("wb") as handle:
        handle.truncate(0)
        with contextlib.suppress(OSError):  # full already
            handle.write(b"\0" * size)
    assert abs(_free(root) - leave) <= PAGE, (_free(root), leave)


def _without_filler(root: Path) -> dict[str, object]:
    return {k: v for k, v in snapshot(root).items() if k != FILLER}


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.endswith(".tmp") or "dexkit-undo" in
            p.name]


def _sweep(root: Path, prepare: Callable[[Path], None], command: Callable[[Path], Result],
           consistent: Callable[[Path], None], levels: int = 24,
           step: int = 1) -> tuple[int, int]:
    """Run ``command`` at 0, step, 2*step... pages free, each time on a fresh copy of what
    ``prepare`` made; return (failures, successes)."""
    template = root / "template"
    prepare(template)
    failed = succeeded = 0
    for pages in range(0, levels * step, step):
        work = root / f"w{pages}"
        if template.exists():
            shutil.copytree(template, work, symlinks=True)
        _fill(root, pages * PAGE)
        before = _without_filler(work)
        result = command(work)
        if result.code == 0:
            succeeded += 1
            consistent(work)
        else:
            failed += 1
            assert_clean_failure(result, code=1)
            assert "No space left on device" in result.err, result.err
            assert "free some space" in result.err and "permission" not in result.err
            assert _without_filler(work) == before, f"{pages} pages free: files changed"
        assert _leftovers(root) == [], f"{pages} pages free"
        (root / FILLER).unlink()
        shutil.rmtree(work, ignore_errors=True)
    return failed, succeeded


def _tls_consistent(project: Path) -> None:
    assert run("certs", "check", "--dir", project).code == 0
    for backup in (project / "ssl").glob("backup-*"):
        cert, key = pki.load_cert(backup / "cert.pem"), pki.load_key(backup / "key.pem")
        assert pki.key_matches(cert, key)


def _init(project: Path) -> None:
    assert run("init", "--dir", project).code == 0


def test_init_with_a_new_issuer_on_a_full_disk(tmpfs: Path) -> None:
    failed, succeeded = _sweep(
        tmpfs, _init,
        lambda p: run("init", "--dir", p, "--issuer", "https://new.example.com:32000"),
        _tls_consistent)
    assert failed and succeeded  # the sweep crossed the point where it starts to fit


def test_a_fresh_init_on_a_full_disk(tmpfs: Path) -> None:
    failed, succeeded = _sweep(tmpfs, lambda p: None,
                               lambda p: run("init", "--dir", p, "--connector", "static"),
                               _tls_consistent)
    assert failed and succeeded


def test_certs_rotate_ca_on_a_full_disk(tmpfs: Path) -> None:
    failed, succeeded = _sweep(tmpfs, _init,
                               lambda p: run("certs", "rotate", "--dir", p, "--ca"),
                               _tls_consistent)
    assert failed and succeeded


def test_apiserver_patch_on_a_full_disk(tmpfs: Path) -> None:
    def prepare(work: Path) -> None:
        _init(work)
        manifest = work / "etc/kubernetes/manifests/kube-apiserver.yaml"
        manifest.parent.mkdir(parents=True)
        manifest.write_bytes((FIXTURES / "kube-apiserver-1.34.yaml").read_bytes())

    def patched(work: Path) -> None:
        manifest = work / "etc/kubernetes/manifests/kube-apiserver.yaml"
        assert "--oidc-issuer-url=" in manifest.read_text()
        (backup,) = (work / "etc/kubernetes/dexkit-backups").iterdir()
        assert backup.read_bytes() == (FIXTURES / "kube-apiserver-1.34.yaml").read_bytes()

    failed, succeeded = _sweep(
        tmpfs, prepare,
        lambda p: run("apiserver", "patch", p / "etc/kubernetes/manifests/kube-apiserver.yaml",
                      "--dir", p), patched, levels=8)
    assert failed and succeeded


def test_render_on_a_full_disk(tmpfs: Path) -> None:
    def rendered(work: Path) -> None:
        again = run("render", "--dir", work)
        assert again.code == 0 and "created" not in again.err and "updated" not in again.err

    failed, succeeded = _sweep(tmpfs, _init, lambda p: run("render", "--dir", p), rendered,
                               levels=16, step=3)
    assert failed and succeeded


def test_init_on_a_read_only_filesystem_changes_nothing(tmpfs: Path) -> None:
    project = tmpfs / "p"
    _init(project)
    before = snapshot(project)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    try:
        for args in (["init", "--issuer", "https://new.example.com"], ["certs", "rotate"],
                     ["render"]):
            result = run(*args, "--dir", project)
            assert_clean_failure(result, code=1)
            assert "Read-only file system" in result.err and "read-only filesystem" in result.err
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
    assert snapshot(project) == before
    assert run("certs", "check", "--dir", project).code == 0
