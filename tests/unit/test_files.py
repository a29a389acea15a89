"""dexkit.files: the transaction, backups that never collide, directories never re-moded."""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from pathlib import Path

import pytest

from dexkit import files
from dexkit.errors import DexkitError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- item 5: directories dexkit did not create keep their mode ---------------------------------


def test_an_existing_directory_is_never_chmodded(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    files.ensure_dir(shared)
    assert _mode(shared) == 0o1777
    files.atomic_write(shared / "key.pem", "k", files.PRIVATE)
    assert _mode(shared) == 0o1777
    assert _mode(shared / "key.pem") == 0o600


def test_missing_directories_are_made_with_the_mode_asked_for(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        files.ensure_dir(tmp_path / "a/b/c")
    finally:
        os.umask(old)
    assert [_mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3


def test_a_world_writable_directory_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(files.UnsafeDirectory, match="writable by every user"):
        files.atomic_write(open_dir / "key.pem", "k", files.PRIVATE)
    assert list(open_dir.iterdir()) == []
    assert _mode(open_dir) == 0o777


def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test changes a directory's owner: run it as root (CI does)")
    import shutil
    import tempfile

    # Under /tmp itself: pytest's own temporary directories are closed to other users.
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    base.chmod(0o755)
    theirs = base / "theirs"
    theirs.mkdir()
    os.chown(theirs, 4242, 4242)
    pid = os.fork()
    if pid == 0:  # a non-root user tries to keep its files there
        try:
            os.setgid(4343)
            os.setuid(4343)
            files.ensure_dir(theirs)
        except files.UnsafeDirectory:
            os._exit(0)
        except BaseException:
            os._exit(2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(base)
    assert os.waitstatus_to_exitcode(status) == 0


def test_private_files_in_an_open_directory_are_a_warning(tmp_path: Path) -> None:
    tx = files.Transaction()
    tmp_path.chmod(0o755)
    tx.write(tmp_path / "key.pem", "k", files.PRIVATE)
    applied = tx.apply()
    assert len(applied.warnings) == 1 and "mode 0755" in applied.warnings[0]


# --- item 1: backup names never collide --------------------------------------------------------


def test_backup_copy_takes_the_next_free_name(tmp_path: Path) -> None:
    path = tmp_path / "dexkit.yaml"
    taken = tmp_path / "dexkit.yaml.bak-20261201T000000Z"
    taken.write_text("an older backup\n")
    path.write_text("v1\n")
    import datetime as dt

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    first = files.backup_copy(path, now)
    path.write_text("v2\n")
    second = files.backup_copy(path, now)
    assert taken.read_text() == "an older backup\n"
    assert (first.name, first.read_text()) == ("dexkit.yaml.bak-20261201T000000Z.1", "v1\n")
    assert (second.name, second.read_text()) == ("dexkit.yaml.bak-20261201T000000Z.2", "v2\n")


def test_a_taken_backup_directory_is_never_reused(tmp_path: Path) -> None:
    stem = tmp_path / "backup-x"
    stem.mkdir()
    (stem / "key.pem").write_text("the first backup's key\n")
    (tmp_path / "key.pem").write_text("current\n")
    tx = files.Transaction()
    tx.backup_group(stem, [tmp_path / "key.pem"])
    tx.write(tmp_path / "key.pem", "new\n", files.PRIVATE)
    applied = tx.apply()
    assert applied.backup(stem) == tmp_path / "backup-x.1"
    assert (stem / "key.pem").read_text() == "the first backup's key\n"
    assert (tmp_path / "backup-x.1/key.pem").read_text() == "current\n"


def test_a_backup_of_a_private_file_is_private_even_when_the_file_was_not(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("secret\n")
    key.chmod(0o644)
    tx = files.Transaction()
    tx.write(key, "new\n", files.PRIVATE, backup=tmp_path / "key.pem.bak")
    tx.apply()
    assert _mode(tmp_path / "key.pem.bak") == 0o600
    assert (tmp_path / "key.pem.bak").read_text() == "secret\n"


# --- items 2 and 3: all or nothing ---------------------------------------------------------------


def _failing_replace(monkeypatch: pytest.MonkeyPatch, victim: str, code: int) -> None:
    real = Path.replace

    def replace(self: Path, target: str | os.PathLike[str]) -> Path:
        if Path(target).name == victim and ".tmp" in self.name:
            raise OSError(code, os.strerror(code))
        return real(self, target)

    monkeypatch.setattr(Path, "replace", replace)


def test_a_failure_in_the_middle_puts_everything_back(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a").write_text("old a\n")
    (tmp_path / "c").write_text("old c\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    tx = files.Transaction()
    tx.write(tmp_path / "a", "new a\n", backup=tmp_path / "a.bak")
    tx.write(tmp_path / "b", "new b\n")
    tx.write(tmp_path / "sub/d", "new d\n")
    tx.write(tmp_path / "c", "new c\n")
    _failing_replace(monkeypatch, "c", errno.ENOSPC)
    with pytest.raises(files.FileError) as caught:
        tx.apply()
    assert (tmp_path / "a").read_text() == "old a\n"
    assert (tmp_path / "c").read_text() == "old c\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no b, no sub/, no backup
    assert caught.value.message.startswith(f"cannot replace {tmp_path / 'c'}: No space left")
    assert "nothing was changed" in caught.value.message
    assert "free some space" in caught.value.hint and "permission" not in caught.value.hint


def test_symlinks_are_followed_when_asked(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles/dexkit.yaml"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "dexkit.yaml"
    link.symlink_to(real)
    written = files.atomic_write(link, "new\n", follow_symlinks=True)
    assert written == real
    assert link.is_symlink() and real.read_text() == "new\n"


# --- item 4: the project lock ----------------------------------------------------------------


def test_the_project_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    with files.project_lock(tmp_path):
        pid = os.fork()
        if pid == 0:
            try:
                with files.project_lock(tmp_path, timeout=0.2):
                    os._exit(1)
            except DexkitError:
                os._exit(0)
            os._exit(2)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with files.project_lock(tmp_path, timeout=0.2):
        pass  # released


def test_a_failed_body_removes_the_directory_the_lock_made(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), files.project_lock(tmp_path / "new/project"):
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


# --- issue 20 (N-08, N-13): the one reader ---------------------------------------------------


def test_read_limited_refuses_special_files_by_name(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, what in ((fifo, "a named pipe (FIFO)"), (Path("/dev/zero"), "a character device")):
        with pytest.raises(files.FileError, match=r"is " + re.escape(what)):
            files.read_limited(path)
    with pytest.raises(IsADirectoryError):
        files.read_limited(tmp_path)
    with pytest.raises(FileNotFoundError):
        files.read_limited(tmp_path / "missing")


def test_read_limited_stops_at_its_limit(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2049)
    assert files.read_limited(big, max_bytes=4096) == b"x" * 2049
    with pytest.raises(files.FileError, match="larger than 2 KiB"):
        files.read_limited(big, max_bytes=2048)


def test_a_secret_is_read_only_from_a_private_regular_file_of_ones_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    assert files.read_text(secret, secret=True) == "pw\n"
    link = tmp_path / "link"
    link.symlink_to(secret)
    assert files.read_text(link) == "pw\n"  # not a secret: links are followed
    with pytest.raises(files.FileError, match="is a symbolic link"):
        files.read_limited(link, secret=True)
    secret.chmod(0o640)
    with pytest.raises(files.FileError, match=r"readable by other users \(mode 0640\)"):
        files.read_limited(secret, secret=True)
    secret.chmod(0o602)
    with pytest.raises(files.FileError, match="writable by other users"):
        files.read_limited(secret, secret=True)
    secret.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(secret, 4321, -1)  # another user's file
    owner = secret.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: 1234)  # neither its owner nor root
    with pytest.raises(files.FileError, match=f"belongs to uid {owner}, not to you"):
        files.read_limited(secret, secret=True)


def test_a_trusted_ca_may_be_a_link_but_not_world_writable(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem\n")
    ca.chmod(0o664)  # a umask of 002 (user private groups) is fine
    link = tmp_path / "bundle.pem"
    link.symlink_to(ca)  # system bundles are links
    assert files.read_limited(link, trust=True) == b"pem\n"
    ca.chmod(0o666)
    with pytest.raises(files.FileError, match="can be written by every user"):
        files.read_limited(link, trust=True)


def test_a_pipe_is_read_where_allowed_and_never_waited_on_for_ever(tmp_path: Path) -> None:
    import threading

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with fifo.open("w") as handle:
            handle.write("from a pipe\n")

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.1)  # the writer has the pipe open
    assert files.read_text(fifo, pipe=True) == "from a pipe\n"
    writer.join()
    assert files.read_limited(fifo, pipe=True) == b""  # no writer: end of file at once
    from dexkit import readfile

    silent = os.open(fifo, os.O_RDWR)  # a writer that never writes
    try:
        fd, info = readfile.open_checked(fifo, pipe=True)
        try:
            with pytest.raises(readfile.Refused, match="nothing came through the pipe"):
                readfile.read_fd(fd, info, str(fifo), timeout=0.2)
        finally:
            os.close(fd)
    finally:
        os.close(silent)


def test_not_utf8_is_a_file_error_naming_the_file(tmp_path: Path) -> None:
    binary = tmp_path / "b"
    binary.write_bytes(b"ok\xff")
    with pytest.raises(files.FileError, match=r"b is not UTF-8 text \(byte 3 is 0xff\), not a "
                                              r"kubeconfig"):
        files.read_text(binary, what="a kubeconfig")


# --- issue 20, N-09: a backup of a symbolic link is the file it points to, with its mode --------


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o640, 0o400])
def test_a_backup_of_a_link_is_a_copy_with_the_files_mode(tmp_path: Path, mode: int) -> None:
    real = tmp_path / "dot/kc"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(mode)
    link = tmp_path / "config"
    link.symlink_to("dot/kc")  # relative: it would point elsewhere from another directory
    backup = files.backup_copy(link)
    assert not backup.is_symlink() and backup.read_text() == "old\n"
    assert _mode(backup) == mode  # the file's mode, never the link's 0777


@pytest.mark.parametrize("private", [True, False])
def test_a_backup_group_copies_a_linked_key_with_its_mode(tmp_path: Path, private: bool) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "ca-key.pem").write_text("old key\n")
    (keys / "ca-key.pem").chmod(0o600 if private else 0o644)
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    (ssl / "ca-key.pem").symlink_to("../keys/ca-key.pem")
    tx = files.Transaction()
    tx.write(ssl / "ca-key.pem", "new key\n", files.PRIVATE)
    stem = tx.backup_group(ssl / "backup-x", [ssl / "ca-key.pem"])
    applied = tx.apply()
    kept = applied.backup(stem) / "ca-key.pem"
    assert not kept.is_symlink() and kept.read_text() == "old key\n"
    assert _mode(kept) == 0o600  # a key's backup is private whatever the link's mode
    assert (keys / "ca-key.pem").read_text() == "old key\n"


def test_a_dangling_link_in_a_backup_group_is_kept_as_a_link(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").symlink_to("gone.pem")
    tx = files.Transaction()
    tx.write(tmp_path / "cert.pem", "new\n")
    stem = tx.backup_group(tmp_path / "backup-x", [tmp_path / "cert.pem"])
    kept = tx.apply().backup(stem) / "cert.pem"
    assert kept.is_symlink() and str(kept.readlink()) == "gone.pem"


def test_edit_writes_through_a_link_and_backs_up_beside_the_file(tmp_path: Path) -> None:
    real = tmp_path / "dot/authn.yaml"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o640)
    link = tmp_path / "authn.yaml"
    link.symlink_to(real)
    tx = files.Transaction()
    stem = tx.edit(link, "new\n")
    applied = tx.apply()
    assert stem is not None and applied.backup(stem).parent == real.parent
    assert link.is_symlink() and real.read_text() == "new\n" and _mode(real) == 0o640
    assert applied.backup(stem).read_text() == "old\n" and _mode(applied.backup(stem)) == 0o640
    new = files.Transaction()
    assert new.edit(tmp_path / "fresh.yaml", "x\n", new_mode=files.PRIVATE) is None
    new.apply()
    assert _mode(tmp_path / "fresh.yaml") == 0o600


# --- issue 20, N-02 / N-19: errors name the user's file, never a temporary ----------------------


def test_a_backup_that_cannot_be_written_names_the_file(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    path = tmp_path / "a.yaml"
    path.write_text("old\n")

    def no_room(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / ".a.yaml.bak-x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", no_room)
    with pytest.raises(files.FileError) as info:
        files.backup_copy(path)
    assert str(path) in info.value.message and ".tmp" not in info.value.message
    assert "free some space" in info.value.hint


def test_a_path_through_another_process_root_stays_in_that_root(tmp_path: Path) -> None:
    """Found on a kind node (issue 19): /proc/<pid>/root reads as a link to "/", so a manifest
    given through it was resolved to this machine's own file of that name."""
    import os as _os

    from dexkit.files import real_path

    pid = _os.getpid()
    inside = tmp_path / "node-etc"
    inside.mkdir()
    (inside / "real.yaml").write_text("x\n")
    (inside / "link.yaml").symlink_to("real.yaml")
    door = Path(f"/proc/{pid}/root") / str(inside).lstrip("/")
    assert real_path(door / "link.yaml") == door / "real.yaml"
    assert real_path(door / "link.yaml").parts[:4] == ("/", "proc", str(pid), "root")
    # An absolute link target starts again at that root.
    (inside / "abs.yaml").symlink_to(inside / "real.yaml")
    assert real_path(door / "abs.yaml") == Path(f"/proc/{pid}/root{inside}/real.yaml")
    assert real_path(tmp_path / "x") == Path(_os.path.realpath(tmp_path / "x"))
