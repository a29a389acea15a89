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

from dexkit.files.backup import (
    backup_copy,
    backup_to,
    unique_dir,
)
from dexkit.files.core import (
    PRIVATE,
    PRIVATE_DIR,
    PUBLIC,
    PUBLIC_DIR,
    FileError,
    UnsafeDirectory,
    check_dir,
    dir_warning,
    ensure_dir,
    file_mode,
    is_private,
    os_error,
    read_limited,
    read_text,
    real_path,
    timestamp,
)
from dexkit.files.transaction import (
    LOCK_TIMEOUT,
    Applied,
    Transaction,
    atomic_write,
    project_lock,
)

__all__ = [
    "LOCK_TIMEOUT",
    "PRIVATE",
    "PRIVATE_DIR",
    "PUBLIC",
    "PUBLIC_DIR",
    "Applied",
    "FileError",
    "Transaction",
    "UnsafeDirectory",
    "atomic_write",
    "backup_copy",
    "backup_to",
    "check_dir",
    "dir_warning",
    "ensure_dir",
    "file_mode",
    "is_private",
    "os_error",
    "project_lock",
    "read_limited",
    "read_text",
    "real_path",
    "timestamp",
    "unique_dir",
]
