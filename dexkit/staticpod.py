"""``dexkit apiserver patch`` on disk: read a static-pod manifest, patch it, back it up, write it.

Rules:

- The patch is computed (and checked) in full before anything is written; any error leaves the
  manifest and everything else untouched.
- Already configured: nothing is written, no backup is made.
- ``dry_run``: nothing is written; the caller shows the diff.
- Otherwise the old manifest is copied to a backup first, then the new one replaces it
  atomically with the same mode (kubeadm writes 0600).
- The backup never goes into the manifest's own directory: the kubelet runs every file there
  that does not start with a dot as a static pod, so a ``kube-apiserver.yaml.bak`` beside the
  manifest would be a second API server. It goes to ``<manifests>/../dexkit-backups/``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dexkit import files
from dexkit.errors import UsageError
from dexkit.render.apiserver import PatchResult, patch_static_pod

if TYPE_CHECKING:
    from dexkit.config import Config

BACKUP_DIR = "dexkit-backups"


@dataclass(frozen=True)
class PatchOutcome:
    result: PatchResult
    written: bool
    backup: Path | None = None


def read_manifest(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist",
                         "pass the API server's static-pod manifest, "
                         "e.g. /etc/kubernetes/manifests/kube-apiserver.yaml") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory",
                         "pass the manifest file itself, e.g. "
                         "/etc/kubernetes/manifests/kube-apiserver.yaml") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text file",
                         "pass the API server's static-pod manifest (YAML)") from None


def backup_dir_for(manifest: Path) -> Path:
    return manifest.resolve().parent.parent / BACKUP_DIR


def patch_manifest(path: Path, config: Config, *, dry_run: bool = False, backup: bool = True,
                   now: dt.datetime | None = None) -> PatchOutcome:
    """Patch the manifest at ``path`` for ``config`` (see the module's rules)."""
    text = read_manifest(path)
    result = patch_static_pod(text, config, source=str(path))
    if not result.changed or dry_run:
        return PatchOutcome(result, written=False)
    saved = _backup(path, now) if backup else None
    files.atomic_write(path, result.text, files.file_mode(path))
    return PatchOutcome(result, written=True, backup=saved)


def _backup(path: Path, now: dt.datetime | None) -> Path:
    directory = files.ensure_dir(backup_dir_for(path))
    base = directory / f"{path.name}.bak-{files.timestamp(now)}"
    target, n = base, 0
    while target.exists():  # two patches within one second
        n += 1
        target = base.with_name(f"{base.name}.{n}")
    shutil.copy2(path, target)
    return target
