"""Forgetting cached logins (``dexkit logout``).

Rules:
- One login: the entry whose key the settings give (the project's login, or ``dexkit token``
  options), on disk and in the keyring, and its lock file. With several clusters, the
  project's login is every cluster's entry and the session they are narrowed from.
- ``--all``: every entry of dexkit's in the cache directory, and the keyring items of those
  keys. The directory stays, since dexkit may not have made it.
- Only what dexkit wrote is removed, recognised by name and content: ``<key>.token`` and
  ``<key>.lock`` where the key is a SHA-256 in hex (:func:`dexkit.oidc.options.identity_key`),
  a regular file of this user that others cannot read, a token file that reads as an entry
  and a lock file that is empty (filelock writes nothing into it). Anything else with such a
  name (a directory, a link, another user's file, someone's notes) is left alone, with a
  warning: ``--token-cache-dir`` may point at a directory others use too.
- Never half-way: a file that cannot be removed is reported at the end, after every other
  one was tried.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dexkit.oidc import keyring_store, options
from dexkit.oidc.attempts import is_record
from dexkit.oidc.cache import KEYRING_SERVICE, TokenCache, read_entry
from dexkit.oidc.logins import settings_for, standalone

if TYPE_CHECKING:
    from dexkit.config import Config


@dataclass(frozen=True)
class LogoutRequest:
    directory: Path
    grant: str = "authcode"
    username: str | None = None
    extra: tuple[str, ...] = ()
    every: bool = False


@dataclass
class LogoutResult:
    cache_dir: Path
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # names like dexkit's, not dexkit's
    failed: list[str] = field(default_factory=list)  # dexkit's, but could not be removed


def run(req: LogoutRequest) -> LogoutResult:
    extra_keys: list[str] = []  # several clusters: every cluster's entry and the session
    if req.every and not standalone(req.extra):
        settings = None
    else:
        logins = settings_for(req.directory, req.extra, grant=req.grant, username=req.username,
                              project=lambda: _load_config(req.directory))
        settings = logins.first
        if logins.per_cluster:
            extra_keys = [k for s in logins.each for k in (s.cache_key, s.session_key) if k]
    if settings is None:
        cache_dir = Path(options.cache_dir_of(options.parse(list(req.extra)), _environ()))
        storage = options.parse(list(req.extra)).get("cache_storage") or "disk"
    else:
        cache_dir, storage = settings.cache_dir, settings.cache_storage.value
    result = LogoutResult(cache_dir)
    cache = TokenCache(cache_dir, "keyring" if storage == "keyring" or req.every else "disk")
    keys = _keys(cache_dir) if req.every or settings is None else \
        list(dict.fromkeys([settings.cache_key, *extra_keys]))
    for key in keys:
        _forget(cache, key, result)
    return result


# The entry, its lock, the interactive login's lock and the record of a failed browser login
# (dexkit.oidc.attempts).
SUFFIXES = (".token", ".lock", ".login", ".failed")
_HEX = frozenset("0123456789abcdef")


def _is_key(name: str) -> bool:
    return len(name) == 64 and set(name) <= _HEX


def _keys(directory: Path) -> list[str]:
    """The keys of every file in ``directory`` named like one of dexkit's entries."""
    try:
        names = [p.name for p in directory.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted({n.rsplit(".", 1)[0] for n in names
                   if n.endswith(SUFFIXES) and not n.startswith(".")})


def _not_ours(path: Path) -> str | None:
    """Why ``path`` is not an entry dexkit wrote, or None when it is one."""
    if not _is_key(path.name.rsplit(".", 1)[0]):
        return "its name is not a dexkit cache key"
    try:
        info = path.lstat()
    except OSError as exc:
        return exc.strerror or "it cannot be read"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid != os.geteuid():
        return f"it belongs to uid {info.st_uid}"
    if info.st_mode & 0o077:
        return f"mode {stat.S_IMODE(info.st_mode):04o}, dexkit writes 0600"
    if path.suffix in (".lock", ".login"):
        return None if info.st_size == 0 else "not empty, as dexkit's lock files are"
    if path.suffix == ".failed":
        return None if is_record(path) else "it does not read as dexkit's login record"
    return None if read_entry(str(path)) is not None else "it does not read as a token entry"


def _forget(cache: TokenCache, key: str, result: LogoutResult) -> None:
    found = False
    if cache.storage == "keyring" and _is_key(key) and keyring_store.available() is None:
        found = keyring_store.delete(KEYRING_SERVICE, key)
    token = cache.dir / f"{key}.token"
    for path in (token, *(cache.dir / f"{key}{suffix}" for suffix in SUFFIXES[1:])):
        if not (path.exists() or path.is_symlink()):
            continue
        why = _not_ours(path)
        if why is not None:
            result.skipped.append(f"{path}: {why}")
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue  # gone meanwhile (another logout): what was asked
        except OSError as exc:
            result.failed.append(f"{path}: {exc.strerror or type(exc).__name__}")
            continue
        found = found or path == token
    if found:
        result.removed.append(str(token))


def _load_config(directory: Path) -> Config:
    # Deferred: the config model would add ~50 modules, ~45 ms to 'dexkit logout --help'.
    from dexkit.config import load_config  # noqa: PLC0415

    return load_config(directory).config


def _environ() -> dict[str, str]:
    return dict(os.environ)
