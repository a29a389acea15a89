"""Several file changes applied together or not at all (:class:`Transaction`, and
:func:`atomic_write`, a transaction of one file), and the project lock around a read-plan-apply
cycle.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dexkit.errors import DexkitError
from dexkit.files.backup import _publish_backup, _temporary, _unique_dir
from dexkit.files.core import (
    PRIVATE_DIR,
    PUBLIC,
    PUBLIC_DIR,
    FileError,
    _fsync_dir,
    _make_dirs,
    dir_warning,
    file_mode,
    is_private,
    os_error,
    real_path,
    timestamp,
)

# How long a command waits for another dexkit working on the same project.
LOCK_TIMEOUT = 120.0


# --- single files -----------------------------------------------------------------------------


def atomic_write(path: Path, data: bytes | str, mode: int = PUBLIC, *,
                 follow_symlinks: bool = False) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    With ``follow_symlinks``, a symbolic link at ``path`` stays a link and the file it points
    to is replaced (as editors and kubectl do); otherwise the link itself is replaced.
    Returns the path written.
    """
    tx = Transaction()
    tx.write(path, data, mode, follow_symlinks=follow_symlinks)
    return tx.apply().written[0]


# --- the transaction --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Write:
    path: Path  # where the bytes land (symbolic links already resolved when followed)
    data: bytes
    mode: int
    dir_mode: int
    backup: Path | None  # stem of a backup file of the old content, if any


@dataclass(frozen=True)
class _Group:
    stem: Path
    paths: tuple[Path, ...]


@dataclass
class Applied:
    """What a transaction did: the files written and where each backup went."""

    written: list[Path] = field(default_factory=list)
    backups: dict[Path, Path] = field(default_factory=dict)  # stem -> the name it got
    warnings: list[str] = field(default_factory=list)

    def backup(self, stem: Path) -> Path:
        return self.backups.get(stem, stem)


@dataclass
class _Undo:
    target: Path
    saved: Path | None = None  # a hidden hard link to the old file
    data: bytes | None = None  # or its bytes, where no link could be made
    mode: int = PUBLIC
    existed: bool = False


class Transaction:
    """File changes planned first and applied together (see the module's rules)."""

    def __init__(self) -> None:
        self._writes: list[_Write] = []
        self._groups: list[_Group] = []
        self._removes: list[Path] = []

    def write(self, path: Path, data: bytes | str, mode: int = PUBLIC, *,
              backup: Path | None = None, follow_symlinks: bool = False,
              dir_mode: int | None = None) -> Path:
        """Plan ``path`` to get ``data``; with ``backup``, its old content is kept at that
        name (or the first free ``.N`` after it). Returns the path that will be written."""
        target = real_path(path) if follow_symlinks else path
        raw = data.encode() if isinstance(data, str) else data
        default_dir = PRIVATE_DIR if mode & 0o077 == 0 else PUBLIC_DIR
        self._writes = [w for w in self._writes if w.path != target]
        self._writes.append(_Write(target, raw, mode, dir_mode or default_dir, backup))
        return target

    def edit(self, path: Path, data: bytes | str, *, new_mode: int = PUBLIC,
             now: dt.datetime | None = None) -> Path | None:
        """Plan the user's file ``path`` to get ``data`` the way editors and kubectl write
        it: through a symbolic link to the file it points to, keeping that file's mode
        (``new_mode`` for a new file), after a backup beside it (``<name>.bak-<timestamp>``).
        Returns the backup's planned name (see :meth:`Applied.backup`), None for a new file.
        """
        target = real_path(path) if path.is_symlink() else path
        if not target.exists():
            self.write(path, data, new_mode, follow_symlinks=True)
            return None
        stem = target.with_name(f"{target.name}.bak-{timestamp(now)}")
        self.write(path, data, file_mode(target), follow_symlinks=True, backup=stem)
        return stem

    def backup_group(self, stem: Path, paths: list[Path]) -> Path:
        """Plan a backup directory ``stem`` (or ``stem.N``) holding the existing ``paths``;
        those not written in this transaction are moved there rather than linked."""
        self._groups.append(_Group(stem, tuple(paths)))
        return stem

    def remove(self, path: Path) -> None:
        """Plan ``path`` to be removed (put back if the transaction fails)."""
        if path not in self._removes:
            self._removes.append(path)

    def apply(self) -> Applied:
        """Do it all, or raise :class:`FileError` with nothing changed."""
        applied = Applied()
        made_dirs: list[Path] = []
        made_files: list[Path] = []
        temps: dict[Path, Path] = {}
        undo: list[_Undo] = []
        committed: list[_Undo] = []
        current: tuple[Path, str] = (Path(), "")
        removes = list(self._removes)
        try:
            for w in self._writes:
                current = (w.path.parent, "create the directory")
                _make_dirs(w.path.parent, w.dir_mode, made_dirs)
                if w.backup is not None:
                    current = (w.backup.parent, "create the directory")
                    _make_dirs(w.backup.parent, PRIVATE_DIR, made_dirs)
                if w.mode & 0o077 == 0:
                    note = dir_warning(w.path.parent)
                    if note and note not in applied.warnings:
                        applied.warnings.append(note)
            for w in self._writes:
                current = (w.path, "write")
                temps[w.path] = _temporary(w.path.parent, w.path.name, w.data, w.mode)
            written = {w.path for w in self._writes}
            modes = {w.path: w.mode for w in self._writes}
            for group in self._groups:
                current = (group.stem, "back up into")
                existing = [p for p in group.paths if p.exists() or p.is_symlink()]
                if not existing:
                    continue
                directory = _unique_dir(group.stem, PRIVATE_DIR, made_dirs)
                applied.backups[group.stem] = directory
                for path in existing:
                    current = (path, "back up")
                    # (a dangling link has no mode to judge by: it is kept as the link it is)
                    private = modes[path] & 0o077 == 0 if path in modes else \
                        not path.exists() or is_private(path)
                    _publish_backup(path, directory / path.name, made_files, private=private)
                    if path not in written and path not in removes:
                        removes.append(path)
                _fsync_dir(directory)
            for w in self._writes:
                if w.backup is not None and w.path.exists():
                    current = (w.path, "back up")
                    applied.backups[w.backup] = _publish_backup(
                        w.path, w.backup, made_files, private=w.mode & 0o077 == 0)
                    _fsync_dir(applied.backups[w.backup].parent)
            for path in [w.path for w in self._writes] + removes:
                current = (path, "prepare to replace")
                undo.append(_save(path))
            for entry in undo:
                current = (entry.target, "replace")
                tmp = temps.get(entry.target)
                if tmp is not None:
                    tmp.replace(entry.target)
                    del temps[entry.target]
                else:
                    entry.target.unlink()
                committed.append(entry)
                applied.written += [entry.target] if tmp is not None else []
            for directory in dict.fromkeys(e.target.parent for e in undo):
                _fsync_dir(directory)
        except BaseException as exc:
            problem = _rollback(committed, undo, temps, made_files, made_dirs)
            if isinstance(exc, FileError):
                raise
            if isinstance(exc, OSError):
                error = os_error(exc, current[0], current[1], unchanged=problem is None)
                if problem:
                    error.hint = f"{error.hint}; {problem}"
                raise error from None
            raise
        for entry in undo:
            if entry.saved is not None:
                entry.saved.unlink(missing_ok=True)
        return applied


def _save(path: Path) -> _Undo:
    """What it takes to put ``path`` back: a hidden hard link to it, or its bytes."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return _Undo(path)
    if stat.S_ISDIR(info.st_mode):
        raise FileError(f"{path} is a directory, not a file", "move it away and run it again")
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
        raise FileError(f"{path} is not a regular file", "move it away and run it again")
    for _ in range(100):
        saved = path.with_name(f".{path.name}.dexkit-undo-{os.urandom(4).hex()}")
        try:
            os.link(path, saved, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError:
            break
        return _Undo(path, saved=saved, existed=True)
    if stat.S_ISLNK(info.st_mode):
        raise FileError(f"{path} is a symbolic link on a filesystem without hard links",
                        "replace the link with the file it points to and run it again")
    return _Undo(path, data=path.read_bytes(), mode=stat.S_IMODE(info.st_mode), existed=True)


def _rollback(committed: list[_Undo], undo: list[_Undo], temps: dict[Path, Path],
              made_files: list[Path], made_dirs: list[Path]) -> str | None:
    """Put back what was replaced and remove what was made; a sentence if that failed."""
    failed: list[str] = []
    for entry in reversed(committed):
        try:
            if entry.saved is not None:
                entry.saved.replace(entry.target)
            elif entry.existed and entry.data is not None:
                tmp = _temporary(entry.target.parent, entry.target.name, entry.data, entry.mode)
                tmp.replace(entry.target)
            else:
                entry.target.unlink(missing_ok=True)
        except OSError:
            failed.append(str(entry.target))
    for entry in undo:
        if entry not in committed and entry.saved is not None:
            entry.saved.unlink(missing_ok=True)
    for tmp in temps.values():
        tmp.unlink(missing_ok=True)
    for made in reversed(made_files):
        made.unlink(missing_ok=True)
    for directory in reversed(made_dirs):
        with contextlib.suppress(OSError):
            directory.rmdir()
    if failed:
        return f"could not restore {', '.join(failed)}: look for .<name>.dexkit-undo-* beside it"
    return None


# --- the project lock -------------------------------------------------------------------------


@contextlib.contextmanager
def project_lock(directory: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold an exclusive lock on the project directory while the body reads, plans and
    writes, so that two dexkit commands never interleave their changes to one project.

    The lock is ``flock`` on the directory itself: no lock file to leave behind or go stale,
    and the kernel drops it when the process dies. The directory is created if missing (as a
    public directory: it holds dexkit.yaml) and removed again if the body fails and left it
    empty.
    """

    created: list[Path] = []
    _make_dirs(directory, PUBLIC_DIR, created)
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise os_error(exc, directory, "open the directory") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DexkitError(f"another dexkit command has been changing {directory} "
                                      f"for {timeout:.0f} s", "wait for it to finish and run "
                                      "this again") from None
                time.sleep(0.02)
        ok = False
        try:
            yield
            ok = True
        finally:
            if not ok:
                for made in reversed(created):
                    with contextlib.suppress(OSError):
                        made.rmdir()
    finally:
        os.close(fd)  # releases the lock
