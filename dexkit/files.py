"""Writing files safely: atomic replace, explicit modes, timestamped backups.

Every key, certificate, kubeconfig and manifest dexkit writes goes through here, so that a crash
or a full disk never leaves a half-written file and a private key is never world-readable, not
even for the instant between ``open`` and ``chmod``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

PRIVATE = 0o600
PUBLIC = 0o644
PRIVATE_DIR = 0o700


def ensure_dir(path: Path, mode: int = PRIVATE_DIR) -> Path:
    """Create ``path`` (and parents) if missing; tighten its mode if it is ours to tighten."""
    path.mkdir(parents=True, exist_ok=True)
    if (path.stat().st_mode & 0o777) != mode:
        path.chmod(mode)
    return path


def atomic_write(path: Path, data: bytes | str, mode: int = PUBLIC) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file is created in the target directory (same filesystem, so ``rename`` is
    atomic) with ``mode`` from the start, flushed and fsynced before the rename, and the
    directory is fsynced after it so that the rename itself survives a crash.
    """
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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


def backup_copy(path: Path, now: dt.datetime | None = None) -> Path:
    """Copy ``path`` beside itself as ``<name>.bak-<timestamp>``, keeping its mode."""
    target = _free_name(path.with_name(f"{path.name}.bak-{timestamp(now)}"))
    shutil.copy2(path, target)
    return target


def move_to_backup(paths: list[Path], backup_dir: Path) -> Path:
    """Move ``paths`` into ``backup_dir`` (created 0700); return the directory."""
    ensure_dir(backup_dir)
    for path in paths:
        if path.exists():
            path.replace(backup_dir / path.name)
    _fsync_dir(backup_dir)
    return backup_dir


def _free_name(path: Path) -> Path:
    """``path`` itself, or ``path.1``, ``path.2``… if it is taken (two backups in a second)."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
