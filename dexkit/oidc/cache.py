"""The token cache kubectl's credential plugin reads on every command.

One entry per identity (see :func:`dexkit.oidc.options.identity_key`): on disk one file under
``$KUBECACHEDIR/dexkit/`` (default ``~/.kube/cache/dexkit/``, directory 0700, files 0600,
written atomically), or one item in the OS keyring, or nothing at all (``none``). A separate
``.lock`` file per entry, always on disk, makes N kubectl processes started at once do one
refresh or login, not N (kubelogin's issue #389).

On the hot path the module-level imports are os only; pathlib, tempfile, filelock and keyring
load when a token is written, a lock is taken or the keyring is asked. Entries are ``name
value`` lines rather than JSON because importing json (and the re module under it) costs more
than everything else kubectl waits for on a cached token.

What the cache trusts: a file that is not ours (another owner) or that others can read or
write is never served (someone else could have planted the token, or read it); a directory
dexkit did not create is never chmod-ed. Anything unreadable (random bytes, a half-written
line, an absurd expiry) is treated as no entry, never as an error.
"""

import os

from dexkit import readfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from filelock import FileLock

FIELDS = ("id_token", "refresh_token", "expiry")
# RFC 3339 cannot write a year past 9999; an expiry beyond it is damage, not a token.
MAX_EXPIRY = 253402300799
KEYRING_SERVICE = "dexkit"
STORAGES = ("disk", "keyring", "none")
MAX_ENTRY_BYTES = 65536


def cache_path(directory: str | os.PathLike[str], key: str) -> str:
    return os.path.join(directory, f"{key}.token")  # noqa: PTH118


def read_entry(path: str) -> "dict[str, Any] | None":
    """The entry in ``path``, or None when there is none we may use: read as a secret by
    :mod:`dexkit.readfile` (a regular file, no link, not open to others; a FIFO never blocks
    kubectl), and ours even for root (an entry another user planted is not served)."""
    try:
        fd, info = readfile.open_checked(path, secret=True)
    except OSError:
        return None
    try:
        if info.st_uid != os.getuid():
            return None
        raw = readfile.read_fd(fd, info, path, MAX_ENTRY_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    return parse_entry(raw)


def parse_entry(raw: bytes) -> "dict[str, Any] | None":
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    entry: dict[str, Any] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "expiry":
            if not value.isdigit() or len(value) > 12 or int(value) > MAX_EXPIRY:
                return None
            entry[name] = int(value)
        elif name in FIELDS and value and value.isprintable() and " " not in value:
            entry[name] = value
    return entry if entry.get("id_token") and "expiry" in entry else None


def format_entry(entry: "dict[str, Any]") -> str:
    lines = []
    for name in FIELDS:
        value = entry.get(name)
        if value is None:
            continue
        text = str(int(value)) if name == "expiry" else str(value)
        if not text or any(ch.isspace() for ch in text) or not text.isascii():
            raise ValueError(f"cannot cache a {name} containing white space")
        lines.append(f"{name} {text}\n")
    return "".join(lines)


class TokenCache:
    """Entries in one directory (disk) or in the keyring under the same keys; locks on disk."""

    def __init__(self, directory: str | os.PathLike[str], storage: str = "disk") -> None:
        from pathlib import Path

        self.dir = Path(directory)
        self.storage = storage

    def _path(self, key: str) -> "Path":
        return self.dir / f"{key}.token"

    def load(self, key: str) -> "dict[str, Any] | None":
        if self.storage == "none":
            return None
        if self.storage == "keyring":
            from dexkit.oidc import keyring_store

            raw = keyring_store.get(KEYRING_SERVICE, key)
            return parse_entry(raw.encode()) if raw is not None else None
        return read_entry(str(self._path(key)))

    def store(self, key: str, entry: "dict[str, Any]") -> None:
        if self.storage == "none":
            return
        text = format_entry(entry)
        if self.storage == "keyring":
            from dexkit.oidc import keyring_store

            keyring_store.put(KEYRING_SERVICE, key, text)
            return
        import tempfile
        from pathlib import Path

        self._ensure_dir()
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=self.dir)
        except OSError as exc:
            raise _cache_error(exc, self.dir, "write into") from None
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def lock(self, key: str, timeout: float = 600) -> "_Held":
        """The entry's lock, taken by ``with``."""
        from filelock import FileLock

        self._ensure_dir()
        return _Held(FileLock(str(self.dir / f"{key}.lock"), timeout=timeout, mode=0o600),
                     self.dir)

    def login_lock(self, key: str) -> "FileLock":
        """The lock a login holds while it waits for a person (:mod:`dexkit.oidc.attempts`),
        apart from :meth:`lock`, which a refresh or a write holds for a moment."""
        from filelock import FileLock

        self._ensure_dir()
        return FileLock(str(self.dir / f"{key}.login"), mode=0o600)

    def _ensure_dir(self) -> None:
        """Create the directory 0700 if missing (parents too, each 0700: dexkit made them);
        an existing one is used as it is, never chmod-ed, but refused when others may write
        to it (they could swap a token in)."""
        from dexkit.errors import DexkitError

        missing = []
        here = self.dir
        while not here.exists():
            missing.append(here)
            if here.parent == here:
                break
            here = here.parent
        try:
            for path in reversed(missing):
                path.mkdir(mode=0o700, exist_ok=True)
            info = self.dir.stat()
        except OSError as exc:
            # KUBECACHEDIR a file, a HOME nobody may write to, an immutable directory: the
            # user's to fix, so said as such
            raise _cache_error(exc, self.dir, "create") from None
        if not self.dir.is_dir():
            raise DexkitError(f"the token cache {self.dir} is not a directory",
                              "pass --token-cache-dir a directory (or remove the file)")
        if info.st_mode & 0o022 and not info.st_mode & 0o1000:
            raise DexkitError(f"the token cache directory {self.dir} can be written by other "
                              "users", f"chmod 700 {self.dir}, or pass --token-cache-dir a "
                              "private directory")


class _Held:
    """A cache entry's lock for ``with``: what stops it from being taken is said as a user
    error (a directory dexkit may not write to), not as an internal one."""

    def __init__(self, lock: "FileLock", directory: "Path") -> None:
        self.lock = lock
        self.dir = directory

    def __enter__(self) -> "_Held":
        from filelock import Timeout

        try:
            self.lock.acquire()
        except Timeout:
            from dexkit.errors import DexkitError

            raise DexkitError(f"another dexkit token has held the lock {self.lock.lock_file} "
                              f"for {self.lock.timeout:.0f} s", "wait for that login to "
                              "finish (or end it), then run the command again") from None
        except OSError as exc:
            raise _cache_error(exc, self.dir, "lock an entry in") from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


def _cache_error(exc: OSError, directory: "Path", action: str) -> Exception:
    from dexkit.files import os_error

    error = os_error(exc, exc.filename or directory, f"{action} the token cache directory")
    error.message = f"cannot {action} the token cache directory {directory}: " \
        f"{exc.strerror or exc}"
    error.hint += ("; or pass --token-cache-dir (or set KUBECACHEDIR to) a directory of your "
                   "own")
    return error
