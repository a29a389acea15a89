"""The token cache kubectl's credential plugin reads on every command.

One JSON file per issuer + client + scopes under ``~/.kube/cache/dexkit/`` (directory 0700,
files 0600, written atomically), and a separate ``.lock`` file per entry so that N kubectl
processes started at once do one refresh or login, not N (kubelogin's issue #389).

On the hot path: the module-level imports are os and hashlib only; pathlib, tempfile and
filelock load when a token is written or a lock is taken. Entries are ``name value`` lines
rather than JSON because importing json (and the re module under it) costs more than
everything else kubectl waits for on a cached token.
"""

from __future__ import annotations

import hashlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from filelock import FileLock

FIELDS = ("id_token", "refresh_token", "expiry")


def default_dir() -> str:
    home = os.path.expanduser("~")  # noqa: PTH111 - pathlib is not on the hot path
    return os.environ.get("DEXKIT_TOKEN_CACHE") or os.path.join(  # noqa: PTH118
        home, ".kube", "cache", "dexkit")


def cache_key(issuer: str, client_id: str, scopes: tuple[str, ...]) -> str:
    material = "\0".join([issuer, client_id, " ".join(sorted(scopes))])
    return hashlib.sha256(material.encode()).hexdigest()


def cache_path(directory: str | os.PathLike[str], key: str) -> str:
    return os.path.join(directory, f"{key}.token")  # noqa: PTH118


def read_entry(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as handle:  # noqa: PTH123 - pathlib is not on the hot path
            text = handle.read()
    except OSError:
        return None
    entry: dict[str, Any] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "expiry":
            try:
                entry[name] = int(value)
            except ValueError:
                return None
        elif name in FIELDS and value:
            entry[name] = value
    return entry or None


def format_entry(entry: dict[str, Any]) -> str:
    lines = []
    for name in FIELDS:
        value = entry.get(name)
        if value is None:
            continue
        text = str(int(value)) if name == "expiry" else str(value)
        if not text or any(ch.isspace() for ch in text):
            raise ValueError(f"cannot cache a {name} containing white space")
        lines.append(f"{name} {text}\n")
    return "".join(lines)


class TokenCache:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        from pathlib import Path

        self.dir = Path(directory)

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.token"

    def load(self, key: str) -> dict[str, Any] | None:
        return read_entry(str(self._path(key)))

    def store(self, key: str, entry: dict[str, Any]) -> None:
        import tempfile
        from pathlib import Path

        self._ensure_dir()
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=self.dir)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(format_entry(entry))
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def lock(self, key: str, timeout: float = 600) -> FileLock:
        from filelock import FileLock

        self._ensure_dir()
        return FileLock(str(self.dir / f"{key}.lock"), timeout=timeout, mode=0o600)

    def _ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.dir.stat().st_mode & 0o777 != 0o700:
            self.dir.chmod(0o700)
