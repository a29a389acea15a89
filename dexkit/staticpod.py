"""``dexkit apiserver patch`` on disk: read a static-pod manifest, patch it, back it up, write it.

Rules:

- The patch is computed (and checked) in full before anything is written; any error leaves the
  manifest and everything else untouched.
- Already configured: nothing is written, no backup is made.
- ``dry_run``: nothing is written; the caller shows the diff.
- Otherwise the old manifest is kept as a backup, then the new one replaces it atomically with
  the same mode (kubeadm writes 0600), in one transaction: both happen, or neither.
- The file is read and written as bytes, so CRLF line ends stay CRLF on every line.
- A symbolic link at the manifest's path stays a link: the file it points to is patched (the
  kubelet reads that file through the link), and the backup rule below applies to that file.
- The backup never goes into the manifest's own directory: the kubelet runs every file there
  that does not start with a dot as a static pod, so a ``kube-apiserver.yaml.bak`` beside the
  manifest would be a second API server. It goes to ``<manifests>/../dexkit-backups/``.
"""

from __future__ import annotations

import datetime as dt
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
    """The manifest's text exactly as on disk (no newline translation)."""
    try:
        raw = files.read_limited(path)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist",
                         "pass the API server's static-pod manifest, "
                         "e.g. /etc/kubernetes/manifests/kube-apiserver.yaml") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory",
                         "pass the manifest file itself, e.g. "
                         "/etc/kubernetes/manifests/kube-apiserver.yaml") from None
    except OSError as exc:
        raise files.os_error(exc, path, "read") from None
    try:
        return raw.decode()  # a BOM stays in the text, and so in the patched file
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text file",
                         "pass the API server's static-pod manifest (YAML)") from None


def backup_dir_for(manifest: Path) -> Path:
    return files.real_path(manifest).parent.parent / BACKUP_DIR


def patch_manifest(path: Path, config: Config, *, dry_run: bool = False, backup: bool = True,
                   now: dt.datetime | None = None) -> PatchOutcome:
    """Patch the manifest at ``path`` for ``config`` (see the module's rules)."""
    text = read_manifest(path)
    result = patch_static_pod(text, config, source=str(path))
    if not result.changed or dry_run:
        return PatchOutcome(result, written=False)
    real = files.real_path(path)
    stem = backup_dir_for(path) / f"{real.name}.bak-{files.timestamp(now)}" if backup else None
    tx = files.Transaction()
    tx.write(path, result.text, files.file_mode(real), follow_symlinks=True, backup=stem)
    applied = tx.apply()
    return PatchOutcome(result, written=True,
                        backup=applied.backups.get(stem) if stem is not None else None)
