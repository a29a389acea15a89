"""A sandbox directory's layout and its state file: what ``status``, ``down`` and every project
command that asks whether the sandbox runs (:mod:`dexkit.sandbox.target`) read.

Kept apart from :mod:`dexkit.sandbox.controlplane` (certificates, processes, readiness checks)
so that asking costs a JSON read, not the import of cryptography and urllib.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dexkit import files
from dexkit.errors import DexkitError
from dexkit.layout import sandbox_dir as sandbox_dir
from dexkit.sandbox.process import ProcessRecord

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class SandboxLayout:
    """The paths inside one sandbox directory."""

    dir: Path

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def ca(self) -> Path:
        return self.pki / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.pki / "ca-key.pem"

    @property
    def serving_cert(self) -> Path:
        return self.pki / "apiserver.pem"

    @property
    def serving_key(self) -> Path:
        return self.pki / "apiserver-key.pem"

    @property
    def admin_cert(self) -> Path:
        return self.pki / "admin.pem"

    @property
    def admin_key(self) -> Path:
        return self.pki / "admin-key.pem"

    @property
    def sa_key(self) -> Path:
        return self.pki / "service-account-key.pem"

    @property
    def sa_pub(self) -> Path:
        return self.pki / "service-account.pub"

    @property
    def etcd_data(self) -> Path:
        return self.dir / "etcd-data"

    @property
    def files(self) -> Path:
        return self.dir / "files"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def state(self) -> Path:
        return self.dir / STATE_FILE

    def log(self, peer: str) -> Path:
        return self.logs / f"{peer}.log"


@dataclass
class SandboxState:
    """What ``status`` and ``down`` need, from any process."""

    dir: Path
    kubernetes_version: str = ""
    created_at: str = ""
    processes: list[ProcessRecord] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)
    kubeconfig: str = ""
    dex_storage: str = ""  # "kubernetes" | "memory" when the sandbox runs Dex

    def to_json(self) -> str:
        return json.dumps({
            "version": STATE_VERSION,
            "dir": str(self.dir),
            "kubernetes_version": self.kubernetes_version,
            "created_at": self.created_at,
            "processes": [p.to_json() for p in self.processes],
            "endpoints": self.endpoints,
            "kubeconfig": self.kubeconfig,
            "dex_storage": self.dex_storage,
        }, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, directory: Path) -> SandboxState | None:
        data = load_json(SandboxLayout(directory).state,
                         "stop leftover peers by hand (see logs/), then delete the file")
        if data is None:
            return None
        return cls(dir=directory, kubernetes_version=str(data.get("kubernetes_version", "")),
                   created_at=str(data.get("created_at", "")),
                   processes=[ProcessRecord.from_json(p) for p in data.get("processes", [])],
                   endpoints={str(k): str(v) for k, v in data.get("endpoints", {}).items()},
                   kubeconfig=str(data.get("kubeconfig", "")),
                   dex_storage=str(data.get("dex_storage", "")))

    def save(self) -> None:
        files.atomic_write(SandboxLayout(self.dir).state, self.to_json(), files.PRIVATE)


def load_json(path: Path, hint: str) -> dict[str, Any] | None:
    """A state file's object, None when there is none; a broken one is an error with ``hint``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise DexkitError(f"{path} is not valid JSON: {exc}", hint) from exc
    if not isinstance(data, dict):
        raise DexkitError(f"{path} does not hold a JSON object", hint)
    return data
