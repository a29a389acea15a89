"""Rendered artefacts on disk: the project files rendering reads, and the bundle it writes.

Rules for :func:`write_bundle`:

- Every file is written atomically, and only when its bytes change (``unchanged`` otherwise),
  so a second render of the same config touches nothing.
- A file the previous render wrote and this one does not (a PodDisruptionBudget after scaling
  down to one replica, the AuthenticationConfiguration after switching to flags) is removed, so
  that ``kubectl apply -f out/dex/`` never applies a stale object. Only files listed in the
  previous render's record are ever removed.
- Nothing is written when rendering fails: callers render everything first, then write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from dexkit import files
from dexkit.errors import ConfigError, TLSError
from dexkit.project import tls_paths
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
        return path.read_text()
    except FileNotFoundError:
        if not required:
            return None
        raise TLSError(f"{path} does not exist",
                       f"run 'dexkit init --dir {directory}' to create the CA") from None


def read_render_inputs(directory: Path, config: Config) -> RenderInputs:
    """The CA (required only where it is inlined) and the connector CA files of the project."""
    needs_ca = config.api_server.mode == "authentication-config"
    pems = {}
    for connector_id, relative in project_connector_cas(config).items():
        path = directory / relative
        try:
            pems[connector_id] = path.read_text()
        except FileNotFoundError:
            raise ConfigError(f"the rootCA of connector '{connector_id}' does not exist: {path}",
                              "put the PEM file there, or give rootCA as an absolute path "
                              "inside the Dex pod") from None
    return RenderInputs(read_ca_pem(directory, config, required=needs_ca), pems)


@dataclass(frozen=True)
class Written:
    path: Path
    action: str  # created | updated | unchanged | removed


def write_bundle(bundle: Mapping[str, str], out_dir: Path) -> list[Written]:
    """Write ``bundle`` below ``out_dir`` (see the module's rules); one entry per file."""
    for relative in bundle:
        _check_relative(relative)
    if not out_dir.exists():
        # Created private: the Dex config Secret carries password hashes.
        out_dir.mkdir(parents=True, mode=files.PRIVATE_DIR)
    results = [_write_one(out_dir, relative, text) for relative, text in bundle.items()]
    results += _remove_stale(out_dir, previous=_read_record(out_dir), current=set(bundle))
    files.atomic_write(out_dir / RECORD, "".join(f"{p}\n" for p in bundle))
    return results


def _check_relative(relative: str) -> None:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"artefact path {relative!r} must stay inside the output directory")


def _write_one(out_dir: Path, relative: str, text: str) -> Written:
    path = out_dir / relative
    mode = EXECUTABLE if relative.endswith(".sh") else files.PUBLIC
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = None
    if old == text and files.file_mode(path) == mode:
        return Written(path, "unchanged")
    files.atomic_write(path, text, mode)
    return Written(path, "created" if old is None else "updated")


def _read_record(out_dir: Path) -> set[str]:
    try:
        lines = (out_dir / RECORD).read_text().splitlines()
    except FileNotFoundError:
        return set()
    return {line for line in lines if line.strip()}


def _remove_stale(out_dir: Path, *, previous: set[str], current: set[str]) -> list[Written]:
    removed = []
    for relative in sorted(previous - current):
        try:
            _check_relative(relative)
        except ValueError:
            continue  # a hand-edited record: never delete outside the output directory
        path = out_dir / relative
        if path.is_file():
            path.unlink()
            removed.append(Written(path, "removed"))
    return removed
