"""Where a dexkit project keeps its files: every path rule, written once.

A project directory holds:

- ``dexkit.yaml`` (:data:`CONFIG_FILE`), the source of truth;
- ``<tls.dir>/`` (``ssl/`` by default) with the guide's four TLS files (:class:`TLSPaths`);
- ``.dexkit/`` (:data:`STATE_DIR`), git-ignored: generated passwords in
  ``.dexkit/passwords/<email>`` (:func:`password_file`) and the sandbox in ``.dexkit/sandbox``
  (:func:`sandbox_dir`);
- ``out/`` (:data:`OUT_DIR`), where ``dexkit render`` and ``dexkit kind`` write by default.

Imports nothing of dexkit's, nor anything the token path has not loaded already: the token
path (:mod:`dexkit.oidc.settings`), the pure core and the sandbox all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CONFIG_FILE = "dexkit.yaml"
STATE_DIR = ".dexkit"
OUT_DIR = "out"
# The guide's TLS file names, under the config's tls.dir.
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


@dataclass(frozen=True)
class TLSPaths:
    """Where the four files live: the guide's names under one directory."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / CA_FILE

    @property
    def ca_key(self) -> Path:
        return self.dir / CA_KEY_FILE

    @property
    def cert(self) -> Path:
        return self.dir / CERT_FILE

    @property
    def key(self) -> Path:
        return self.dir / KEY_FILE

    def all(self) -> list[Path]:
        return [self.ca, self.ca_key, self.cert, self.key]


class _TLS(Protocol):
    @property
    def dir(self) -> str: ...


class _Project(Protocol):
    """What the path rules read of a :class:`dexkit.config.Config` (named by shape, so that
    this module imports no config)."""

    @property
    def tls(self) -> _TLS: ...


def tls_paths(directory: Path, config: _Project) -> TLSPaths:
    """The project's TLS files (``tls.dir`` may be absolute)."""
    return TLSPaths(directory / config.tls.dir)


def password_file(directory: Path, email: str) -> Path:
    """A static user's generated password (``dexkit init --connector static``)."""
    return directory / STATE_DIR / "passwords" / email


def sandbox_dir(project_dir: Path) -> Path:
    """Where ``dexkit sandbox`` keeps one project's sandbox: ``<project>/.dexkit/sandbox``."""
    return project_dir / STATE_DIR / "sandbox"


def out_dir(directory: Path) -> Path:
    """Where ``render`` and ``kind`` write when ``--out`` is not given."""
    return directory / OUT_DIR
