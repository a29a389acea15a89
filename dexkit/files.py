"""Writing files safely: atomic replace, explicit modes, backups that never collide, and a
transaction that applies several file changes together or not at all.

Every key, certificate, kubeconfig and manifest dexkit writes goes through here. Rules:

- A file is replaced atomically: a temporary beside it, created with its final mode (a private
  key is never world-readable, not even between ``open`` and ``chmod``), fsynced, renamed over
  the target, and the directory fsynced so that the rename survives a crash.
- Directories: dexkit creates the ones that are missing, with the mode it asks for, and never
  changes the mode or owner of one that exists (that would drop ``/tmp``'s sticky bit, or open
  a directory the user closed). An existing directory that other users could write into (no
  sticky bit) or that belongs to another user is refused (:class:`UnsafeDirectory`): they
  could swap dexkit's files. One that others can merely read is a warning for private files.
- Backup names cannot collide: a backup file or directory is created exclusively (``link``,
  ``mkdir``), and when the name is taken the next free ``.1``, ``.2``... is used, so two runs in
  one second never overwrite each other's backups. A backup is complete or absent: it is a hard
  link to the old file (no data is copied, so a full disk cannot truncate it), or where links
  are not possible a copy written like any other file (temporary, fsync, exclusive link).
- :class:`Transaction` is the one "apply these file changes" step of ``init`` and ``certs
  rotate``: it writes every new file to a temporary and makes every backup first, then renames
  the temporaries into place; any error up to the last rename puts every file back as it was,
  removes the backups and directories it made, and raises one :class:`FileError` that names the
  file and says what to do. (A power loss in the middle of the renames can still leave some
  files new and some old; each file is whole either way.)
- :func:`project_lock` is the lock around a read-plan-apply cycle on a project, so that parallel
  ``init`` or ``certs rotate`` runs do not interleave their key and certificate writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dexkit import readfile
from dexkit.errors import DexkitError

PRIVATE = 0o600
PUBLIC = 0o644
PRIVATE_DIR = 0o700
PUBLIC_DIR = 0o755
# How long a command waits for another dexkit working on the same project.
LOCK_TIMEOUT = 120.0


class FileError(DexkitError):
    """A file or directory could not be read or written; says which, and what to do."""


class UnsafeDirectory(FileError):
    """An existing directory other users control: dexkit will not put its files there."""


# --- errors -----------------------------------------------------------------------------------


def os_error(exc: OSError, path: Path | str, action: str, *, unchanged: bool = False) -> FileError:
    """``exc`` as one sentence naming ``path``, and a hint that fits its cause (not always
    "permissions": a full disk or a read-only filesystem want other fixes)."""
    where = Path(path)
    code = exc.errno
    what = exc.strerror or type(exc).__name__
    tail = "; nothing was changed" if unchanged else ""
    if code in (errno.ENOSPC, errno.EDQUOT):
        hint = f"free some space on the filesystem holding {where.parent} and run it again"
    elif code == errno.EROFS:
        hint = f"{where.parent} is on a read-only filesystem: use a writable directory"
    elif code in (errno.EACCES, errno.EPERM):
        hint = (f"check the owner and permissions of {where} and {where.parent} "
                f"(dexkit runs as uid {os.geteuid()})")
    elif code in (errno.ENOENT, errno.ENOTDIR):
        hint = f"check that {where.parent} exists and is a directory"
    elif code == errno.EISDIR:
        hint = f"{where} is a directory: move it away or pass another path"
    elif code == errno.ELOOP:
        hint = f"{where} is a symbolic link loop: fix or remove the link"
    else:
        hint = f"check {where} and run it again"
    return FileError(f"cannot {action} {where}: {what}{tail}", hint)


# --- directories ------------------------------------------------------------------------------


def ensure_dir(path: Path, mode: int = PRIVATE_DIR) -> Path:
    """``path`` as a directory: created with ``mode`` if missing (and its missing parents with
    the same mode, since dexkit makes them too), never changed if it exists.

    An existing directory other users could write to (without the sticky bit) or that belongs
    to another user raises :class:`UnsafeDirectory`; see :func:`dir_warning` for the softer
    "others can read it" case.
    """
    _make_dirs(path, mode, [])
    return path


def _make_dirs(path: Path, mode: int, created: list[Path]) -> None:
    """Like ``mkdir -p`` with ``mode``, appending every directory it made to ``created``."""
    missing: list[Path] = []
    probe = path
    while True:
        try:
            info = probe.stat()
        except FileNotFoundError:
            if probe.is_symlink():
                # A dangling link: never created through (dexkit does not make what a link
                # of someone else's points to), and mkdir would fail on it with ENOENT.
                target = probe.readlink()
                raise FileError(f"{probe} is a symbolic link to {target}, which does not exist",
                                f"create {probe.parent / target} (the directory it points to), "
                                f"or remove the link {probe}") from None
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
            continue
        except OSError as exc:
            raise os_error(exc, probe, "use the directory") from None
        if not stat.S_ISDIR(info.st_mode):
            raise FileError(f"{probe} is not a directory",
                            f"move it away, or choose another place than {path}")
        if probe == path:
            check_dir(path)
        break
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            check_dir(directory)  # made by someone else in the meantime: judge it as theirs
            continue
        except OSError as exc:
            raise os_error(exc, directory, "create the directory") from None
        created.append(directory)
        # mkdir applied the umask; this directory is ours, so it gets exactly ``mode``.
        directory.chmod(mode)


def check_dir(path: Path) -> None:
    """Raise :class:`UnsafeDirectory` if other users control the directory ``path``: it belongs
    to another user (unless dexkit runs as root), or anyone may write to it without the sticky
    bit. (A group-writable directory is only a warning, see :func:`dir_warning`: with a umask of
    002 every directory of a user's own private group is one.)"""
    info = path.stat()
    me = os.geteuid()
    if info.st_uid not in (me, 0) and me != 0:
        raise UnsafeDirectory(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {me}); dexkit will not "
            "keep its files in a directory another user controls",
            f"use a directory of your own, or have its owner give it to you (chown {me})")
    if info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX:
        raise UnsafeDirectory(
            f"{path} is writable by every user (mode {stat.S_IMODE(info.st_mode):04o}, no "
            "sticky bit): anyone could replace dexkit's files",
            f"use another directory, or 'chmod o-w {path}' if that is what you want")


def dir_warning(path: Path) -> str | None:
    """A warning when private files go into ``path`` and other users can list, enter or write
    into it (the files themselves stay 0600)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & 0o077:
        return (f"{path} is open to other users (mode {mode:04o}): the private files in it are "
                "0600, but others can see their names (and, if it is writable to them, "
                f"replace them); 'chmod 700 {path}' if it holds nothing else")
    return None


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


def real_path(path: Path) -> Path:
    """Where a write to ``path`` lands when symbolic links are followed (dangling ones too).

    ``/proc/<pid>/root`` and ``/proc/<pid>/cwd`` are the kernel's doors into another process's
    file system (a container's, a kind node's): read as text they are links to "/" or its
    directory, which would send the write to this machine's own file of that name. They stay as
    they are, and the links below them are followed inside that file system (an absolute
    target starts again at that root, never above it)."""
    text = os.path.normpath(Path(path).absolute())
    parts = text.split("/")
    if len(parts) < 4 or parts[1] != "proc" or parts[3] not in ("root", "cwd"):
        return Path(os.path.realpath(path))
    root = "/".join(parts[:4])
    resolved, todo, hops = root, [p for p in parts[4:] if p], 0
    while todo:
        part = todo.pop(0)
        if part == ".":
            continue
        if part == "..":
            resolved = resolved if resolved == root else str(Path(resolved).parent)
            continue
        candidate = f"{resolved}/{part}"
        if not Path(candidate).is_symlink():
            resolved = candidate
            continue
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
        target = str(Path(candidate).readlink())
        if target.startswith("/"):
            resolved = root
        todo = [p for p in target.split("/") if p] + todo
    return Path(resolved)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timestamp(now: dt.datetime | None = None) -> str:
    """A sortable UTC timestamp for backup names: ``20261129T123456Z``."""
    moment = now or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def is_private(path: Path) -> bool:
    """True when only the owner may read or write ``path`` (group and others get nothing)."""
    return not path.stat().st_mode & 0o077


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
    import fcntl
    import time

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


# --- reading ----------------------------------------------------------------------------------


def read_limited(path: Path | str, *, secret: bool = False, trust: bool = False,
                 pipe: bool = False, max_bytes: int | None = None) -> bytes:
    """The bytes of ``path`` by :mod:`dexkit.readfile`'s rules: special files refused by name,
    never read; ``secret`` files (passwords, keys) only from a regular file of one's own that
    others cannot open, never through a link; ``trust`` files (a CA given by path) only when
    nobody else can replace them; never more than ``max_bytes``.

    FileNotFoundError and IsADirectoryError pass through (the caller knows what was missing);
    every other problem is one :class:`FileError` that names the file and says what to do.
    """
    try:
        return readfile.read(path, secret=secret, trust=trust, pipe=pipe, max_bytes=max_bytes)
    except readfile.Refused as exc:
        raise FileError(exc.reason, exc.hint) from None
    except (FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:
        raise os_error(exc, path, "read") from None


def read_text(path: Path | str, *, secret: bool = False, trust: bool = False,
              pipe: bool = False, max_bytes: int | None = None, encoding: str = "utf-8",
              what: str = "a text file") -> str:
    """:func:`read_limited`, decoded; a file that is not UTF-8 is a :class:`FileError` saying
    so (``what`` names what was expected there), not an internal error."""
    raw = read_limited(path, secret=secret, trust=trust, pipe=pipe, max_bytes=max_bytes)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise FileError(f"{path} is not UTF-8 text (byte {exc.start + 1} is "
                        f"0x{raw[exc.start]:02x}), not {what}",
                        f"check that {path} is the file you meant") from None
