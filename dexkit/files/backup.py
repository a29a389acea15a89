"""Backups whose names never collide: created exclusively (a hard link, else a complete copy),
the next free ``.1``, ``.2``... when a name is taken.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dexkit.files.core import PRIVATE_DIR, FileError, is_private, os_error, timestamp


def backup_copy(path: Path, now: dt.datetime | None = None) -> Path:
    """Copy ``path`` beside itself as ``<name>.bak-<timestamp>`` (``.1``… when taken)."""
    return backup_to(path, path.with_name(f"{path.name}.bak-{timestamp(now)}"))


def backup_to(path: Path, stem: Path) -> Path:
    """Copy ``path`` to ``stem`` or the first free ``stem.N``; return where it went.

    Always a copy (written like any file: temporary, fsync, exclusive link), never a hard
    link: outside a transaction nothing guarantees the file is replaced next, and an edit in
    place would change a linked backup with it.
    """
    try:
        return _publish_backup(path, stem, [], private=is_private(path), link=False)
    except OSError as exc:  # named by the user's file, not by a temporary beside the backup
        raise os_error(exc, path, "back up") from None


def _candidates(stem: Path) -> Iterator[Path]:
    yield stem
    for n in range(1, 10_000):
        yield stem.with_name(f"{stem.name}.{n}")


def _publish_backup(source: Path, stem: Path, made: list[Path], *, private: bool,
                    link: bool = True) -> Path:
    """Link ``source`` to a free name from ``stem`` (the transaction replaces ``source`` right
    after, so the link is the old file alone); copy it where a link cannot be made, or where
    the backup of a private file would otherwise share a mode others can read.

    A symbolic link is backed up as the file it points to (a copy, with that file's mode: a
    link's own mode is 0777, and a link moved into a backup directory would point elsewhere);
    only a dangling one is kept as the link it is. The backup's mode is never wider than the
    file's."""
    try:
        mode = stat.S_IMODE(source.stat().st_mode) & 0o777
    except FileNotFoundError:
        if not source.is_symlink():
            raise
        mode = None  # a dangling link: nothing to copy
    if mode is None or (link and not source.is_symlink() and not (private and mode & 0o077)):
        for target in _candidates(stem):
            try:
                os.link(source, target, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                break  # no hard links here: copy
            made.append(target)
            return target
        if mode is None:
            raise FileError(f"{source} is a dangling symbolic link on a filesystem without hard "
                            "links", "remove the link and run it again")
    tmp = _temporary(stem.parent, stem.name, source.read_bytes(),
                     mode & ~0o077 if private else mode)
    try:
        target = _link_exclusive(tmp, stem)
    finally:
        tmp.unlink(missing_ok=True)
    made.append(target)
    return target


def _link_exclusive(tmp: Path, stem: Path) -> Path:
    """Give the finished file ``tmp`` the first free name from ``stem``, without overwriting."""
    for target in _candidates(stem):
        try:
            os.link(tmp, target)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # No hard links at all on this filesystem: rename to a name free a moment ago.
            if target.exists():
                continue
            tmp.rename(target)
        return target
    raise FileError(f"no free backup name for {stem}", f"clean up old backups in {stem.parent}")


def _temporary(directory: Path, name: str, data: bytes, mode: int) -> Path:
    """A complete, fsynced file with ``data`` and ``mode`` under a hidden name in ``directory``."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def unique_dir(stem: Path, mode: int = PRIVATE_DIR) -> Path:
    """Create and return ``stem`` or the first free ``stem.N`` (``mkdir`` is exclusive)."""
    return _unique_dir(stem, mode, [])


def _unique_dir(stem: Path, mode: int, made: list[Path]) -> Path:
    for target in _candidates(stem):
        try:
            target.mkdir(mode=mode)
        except FileExistsError:
            continue
        target.chmod(mode)
        made.append(target)
        return target
    raise FileError(f"no free backup directory name for {stem}",
                    f"clean up old backups in {stem.parent}")
