"""Forgetting cached logins (``dexkit logout``).

Rules:
- One login: the entry whose key the settings give (the project's login, or ``dexkit token``
  options), on disk and in the keyring, and its lock file. With several clusters, the
  project's login is every cluster's entry and the session they are narrowed from.
- ``--all``: every entry in the cache directory (``*.token`` and ``*.lock`` files), and the
  keyring items of those keys. Only dexkit's own files are removed; the directory stays, since
  dexkit may not have made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dexkit.oidc.cache import TokenCache


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


def run(req: LogoutRequest) -> LogoutResult:
    from dexkit.oidc.settings import build_settings, project_settings

    extra_keys: list[str] = []  # several clusters: every cluster's entry and the session
    if any(a.partition("=")[0] in ("--issuer", "--oidc-issuer-url") for a in req.extra):
        # --grant and --username are the command's own options: they belong to the key too
        settings = build_settings([*req.extra,
                                   *(["--grant", req.grant] if req.grant != "authcode" else []),
                                   *(["--username", req.username] if req.username else [])])
    elif req.every:
        settings = None
    else:
        from dexkit.config import load_config

        config = load_config(req.directory).config
        each = [project_settings(req.directory, config, grant=req.grant, username=req.username,
                                 extra=list(req.extra), cluster=c.name)
                for c in config.clusters]
        settings = each[0] if each else project_settings(
            req.directory, config, grant=req.grant, username=req.username,
            extra=list(req.extra))
        extra_keys = [k for s in each for k in (s.cache_key, s.session_key) if k]
    if settings is None:
        from dexkit.oidc import options

        cache_dir = Path(options.cache_dir_of(options.parse(list(req.extra)), _environ()))
        storage = options.parse(list(req.extra)).get("cache_storage") or "disk"
    else:
        cache_dir, storage = settings.cache_dir, settings.cache_storage.value
    result = LogoutResult(cache_dir)
    cache = TokenCache(cache_dir, "keyring" if storage == "keyring" or req.every else "disk")
    keys = cache.keys() if req.every or settings is None else \
        list(dict.fromkeys([settings.cache_key, *extra_keys]))
    for key in keys:
        if _forget(cache, key):
            result.removed.append(f"{cache_dir / key}.token")
    return result


def _forget(cache: TokenCache, key: str) -> bool:
    if cache.storage == "keyring":
        from dexkit.oidc import keyring_store

        if keyring_store.available() is not None:
            cache = TokenCache(cache.dir, "disk")
    return cache.delete(key)


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
