"""The token cache kubectl's credential plugin reads on every command.

One JSON file per issuer + client + scopes under ``~/.kube/cache/dexkit/`` (directory 0700,
files 0600, written atomically), and a separate ``.lock`` file per entry so that N kubectl
processes started at once do one refresh or login, not N (kubelogin's issue #389).

Imports only the standard library and filelock: this is on the hot path.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock


def default_dir() -> Path:
    return Path(os.environ.get("DEXKIT_TOKEN_CACHE") or
                Path.home() / ".kube" / "cache" / "dexkit")


def cache_key(issuer: str, client_id: str, scopes: tuple[str, ...]) -> str:
    material = "\0".join([issuer, client_id, " ".join(sorted(scopes))])
    return hashlib.sha256(material.encode()).hexdigest()


class TokenCache:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(key).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def store(self, key: str, entry: dict[str, Any]) -> None:
        self._ensure_dir()
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=self.dir)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(entry, handle)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def lock(self, key: str, timeout: float = 600) -> FileLock:
        self._ensure_dir()
        return FileLock(str(self.dir / f"{key}.lock"), timeout=timeout, mode=0o600)

    def _ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.dir.stat().st_mode & 0o777 != 0o700:
            self.dir.chmod(0o700)
