"""Rendered artefacts on disk: the project files rendering reads, and the bundle it writes.

Rules for :func:`write_bundle`:

- Every file is written atomically, and only when its bytes change (``unchanged`` otherwise),
  so a second render of the same config touches nothing.
- A file the previous render wrote and this one does not (a PodDisruptionBudget after scaling
  down to one replica, the AuthenticationConfiguration after switching to flags) is removed, so
  that ``kubectl apply -f out/dex/`` never applies a stale object. Only files listed in the
  previous render's record are ever removed.
- A file at one of the output names that the previous render did not write (not in its
  record: a hand-made ``dex.yaml``, the first render into an existing directory) is kept as
  ``<name>.bak-<timestamp>`` beside it before it is replaced; ``kubectl apply -f DIR`` reads
  only ``.yaml``, ``.yml`` and ``.json`` files, so the backup is never applied. (Refusing
  instead would make the first render into a directory a chore; a backup loses nothing.)
- Nothing is written when rendering fails: callers render everything first, then write; and
  the writing is one transaction (:class:`dexkit.files.Transaction`): all files or none.
- Files that hold a Kubernetes Secret (the Dex config, with bcrypt hashes, and the all-in-one
  ``dex.yaml``) are 0600 whatever the output directory's mode; a new output directory is 0700.
- Below the output directory, dexkit writes and removes only through real directories: a
  sub-directory that is a symbolic link is refused for writing and never followed to remove.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from dexkit import files
from dexkit.errors import ConfigError, TLSError, UsageError
from dexkit.layout import tls_paths
from dexkit.render.dex import project_connector_cas

if TYPE_CHECKING:
    from collections.abc import Mapping

    from dexkit.config import Config

# The list of files the last render wrote, relative to the output directory.
RECORD = ".dexkit-rendered"
EXECUTABLE = 0o755


@dataclass(frozen=True)
class RenderInputs:
    """What rendering needs from the project besides dexkit.yaml."""

    ca_pem: str | None
    connector_ca_pems: dict[str, str] = field(default_factory=dict)


def read_ca_pem(directory: Path, config: Config, *, required: bool) -> str | None:
    path = tls_paths(directory, config).ca
    try:
        return files.read_text(path, what="a PEM certificate")
    except FileNotFoundError:
        if not required:
            return None
        raise TLSError(f"{path} does not exist",
                       f"run 'dexkit init --dir {directory}' to create the CA") from None


def read_render_inputs(directory: Path, config: Config) -> RenderInputs:
    """The CA (required only where it is inlined) and the connector CA files of the project."""
    needs_ca = any(seen.api_server.mode == "authentication-config"
                   for _, seen in config.cluster_configs())
    pems = {}
    for connector_id, relative in project_connector_cas(config).items():
        path = directory / relative
        try:
            pems[connector_id] = files.read_text(path, what="a PEM certificate")
        except FileNotFoundError:
            raise ConfigError(f"the rootCA of connector '{connector_id}' does not exist: {path}",
                              "put the PEM file there, or give rootCA as an absolute path "
                              "inside the Dex pod") from None
    return RenderInputs(read_ca_pem(directory, config, required=needs_ca), pems)


@dataclass(frozen=True)
class Written:
    path: Path
    action: str  # created | updated | unchanged | removed
    backup: Path | None = None  # where a file dexkit had not written went first


def write_bundle(bundle: Mapping[str, str], out_dir: Path) -> list[Written]:
    """Write ``bundle`` below ``out_dir`` (see the module's rules); one entry per file."""
    for relative in bundle:
        _check_relative(relative)
        _check_no_links(out_dir, relative)
    tx = files.Transaction()
    previous = _read_record(out_dir)
    stamp = files.timestamp()
    results = [_plan_one(tx, out_dir, relative, text, ours=relative in previous, stamp=stamp)
               for relative, text in bundle.items()]
    results += _remove_stale(tx, out_dir, previous=previous, current=set(bundle))
    record = "".join(f"{p}\n" for p in bundle)
    if _read(out_dir / RECORD) != record:
        tx.write(out_dir / RECORD, record)
    applied = tx.apply()
    return [replace(w, backup=applied.backup(w.backup)) if w.backup else w for w in results]


def _check_relative(relative: str) -> None:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"artefact path {relative!r} must stay inside the output directory")


def _linked_dir(out_dir: Path, relative: str) -> Path | None:
    """The first directory between ``out_dir`` and ``relative``'s file that is a symbolic
    link (or not a directory), if any."""
    here = out_dir
    for part in PurePosixPath(relative).parts[:-1]:
        here = here / part
        try:
            info = here.lstat()
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(info.st_mode):
            return here
    return None


def _check_no_links(out_dir: Path, relative: str) -> None:
    bad = _linked_dir(out_dir, relative)
    if bad is not None:
        what = "a symbolic link" if bad.is_symlink() else "not a directory"
        raise UsageError(f"{bad} is {what}; dexkit writes only into real directories below "
                         f"{out_dir}", f"remove {bad} (dexkit re-creates it), or render into "
                         "another --out")


def is_secret(text: str) -> bool:
    """Whether a rendered file holds a Kubernetes Secret (so it is written 0600)."""
    return _SECRET.search(text) is not None


_SECRET = re.compile(r"^kind:[ \t]*[\"']?Secret[\"']?[ \t]*\r?$", re.MULTILINE)


def _read(path: Path) -> str | None:
    try:
        return files.read_text(path, what="a file dexkit renders")
    except FileNotFoundError:
        return None


def _plan_one(tx: files.Transaction, out_dir: Path, relative: str, text: str, *, ours: bool,
              stamp: str) -> Written:
    path = out_dir / relative
    mode = EXECUTABLE if relative.endswith(".sh") else \
        files.PRIVATE if is_secret(text) else files.PUBLIC
    old = _read(path)
    if old == text and files.file_mode(path) == mode and not path.is_symlink():
        return Written(path, "unchanged")
    # A file the last render did not write is someone's: kept before it is replaced.
    stem = path.with_name(f"{path.name}.bak-{stamp}") if old is not None and not ours \
        and old != text else None
    # Directories it makes are private: the Dex config Secret carries password hashes.
    tx.write(path, text, mode, dir_mode=files.PRIVATE_DIR, backup=stem)
    return Written(path, "created" if old is None else "updated", stem)


def _read_record(out_dir: Path) -> set[str]:
    text = _read(out_dir / RECORD)
    return {line for line in (text or "").splitlines() if line.strip()}


def _remove_stale(tx: files.Transaction, out_dir: Path, *, previous: set[str],
                  current: set[str]) -> list[Written]:
    removed = []
    for relative in sorted(previous - current):
        try:
            _check_relative(relative)
        except ValueError:
            continue  # a hand-edited record: never delete outside the output directory
        if _linked_dir(out_dir, relative) is not None:
            continue  # never follow a link out of the output directory
        path = out_dir / relative
        try:
            regular = stat.S_ISREG(path.lstat().st_mode)
        except FileNotFoundError:
            continue
        if regular:
            tx.remove(path)
            removed.append(Written(path, "removed"))
    return removed
