"""One file or directory at a time: modes, safe directories, atomic writes, bounded reads, and
the errors that name the file and say what to do.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import stat
from pathlib import Path

from dexkit import readfile
from dexkit.errors import DexkitError

PRIVATE = 0o600
PUBLIC = 0o644
PRIVATE_DIR = 0o700
PUBLIC_DIR = 0o755


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
