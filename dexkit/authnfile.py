"""``dexkit apiserver config --merge FILE [--write]`` on disk: dexkit's jwt entry merged into an
AuthenticationConfiguration that holds other issuers too.

Rules:

- The merge (:func:`dexkit.render.authnmerge.merge_authentication_config`) is a text edit that
  changes dexkit's entry only; it is computed in full before anything is written.
- Without ``write``, or when the file already has dexkit's entry as rendered, nothing is
  written.
- Otherwise the file is replaced atomically after a backup beside it, in one transaction;
  through a symbolic link the file stays linked, and the backup goes beside the file it
  points to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dexkit import files
from dexkit.errors import UsageError
from dexkit.render.authnmerge import MergeResult, merge_authentication_config

if TYPE_CHECKING:
    from dexkit.config import Config


@dataclass(frozen=True)
class MergeOutcome:
    result: MergeResult
    written: bool
    backup: Path | None = None


def read_authentication_config(path: Path) -> str:
    try:
        return files.read_text(path, what="an AuthenticationConfiguration")
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist",
                         "without --merge, 'dexkit apiserver config' prints a new file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not a UTF-8 text file (byte {exc.start + 1} is "
                         f"0x{exc.object[exc.start]:02x})",
                         "pass the API server's AuthenticationConfiguration (YAML), e.g. "
                         "/etc/kubernetes/dexkit/authentication-config.yaml") from None


def merge_file(path: Path, config: Config, ca_pem: str, *, write: bool) -> MergeOutcome:
    """Merge dexkit's jwt entry into the file at ``path`` (see the module's rules)."""
    result = merge_authentication_config(read_authentication_config(path), config, ca_pem,
                                         source=str(path))
    if not write or result.action == "unchanged":
        return MergeOutcome(result, written=False)
    tx = files.Transaction()
    stem = tx.edit(path, result.text)
    applied = tx.apply()
    return MergeOutcome(result, written=True,
                        backup=applied.backup(stem) if stem is not None else None)
