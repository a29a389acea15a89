"""Adding dexkit's exec-credential user (and a context, and a cluster) to kubeconfig files.

kubectl's rules for where a change goes, with several files in KUBECONFIG:
- a stanza (user, cluster, context) that exists is modified in the first file that defines it;
- a new stanza is written to the first file that exists; if none exists, the last one is made;
- ``current-context`` is left alone unless asked.
Nothing else in any file is dropped, reordered or rewritten; files with no change keep their
bytes. Every write is atomic and keeps a backup of the file it replaces.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dexkit import files
from dexkit.errors import UsageError

DEFAULT = Path.home() / ".kube" / "config"
SECTIONS = {"users": "user", "clusters": "cluster", "contexts": "context"}


@dataclass(frozen=True)
class Entry:
    section: str  # users | clusters | contexts
    name: str
    body: dict[str, Any]


@dataclass
class Plan:
    """What will be written where: path -> new document, plus which entries changed."""

    documents: dict[Path, dict[str, Any]] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    current_context: str | None = None


def kubeconfig_paths(explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p) for p in env.split(os.pathsep) if p]
    return [DEFAULT]


def load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [],
                "users": [], "contexts": [], "current-context": ""}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}",
                         "fix or move the kubeconfig; dexkit never overwrites a file it cannot "
                         "read") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a kubeconfig (top level is not a mapping)",
                         "pass --kubeconfig a kubeconfig file")
    return data


def plan(paths: Sequence[Path], entries: Sequence[Entry],
         use_context: str | None = None) -> Plan:
    docs = {p: load(p) for p in paths}
    result = Plan()
    for entry in entries:
        owner = _owner(docs, entry) or _first_existing(paths)
        items = docs[owner].setdefault(entry.section, []) or []
        docs[owner][entry.section] = items
        stanza = {"name": entry.name, SECTIONS[entry.section]: entry.body}
        index = next((i for i, item in enumerate(items)
                      if isinstance(item, dict) and item.get("name") == entry.name), None)
        if index is None:
            items.append(stanza)
            result.changes.append(f"added {SECTIONS[entry.section]} '{entry.name}' to {owner}")
        elif items[index] != stanza:
            items[index] = stanza
            result.changes.append(f"updated {SECTIONS[entry.section]} '{entry.name}' in {owner}")
        else:
            continue
        result.documents[owner] = docs[owner]
    if use_context is not None:
        # kubectl writes current-context to the first file that sets one, else the first file.
        owner = next((p for p in paths if docs[p].get("current-context")), paths[0])
        if docs[owner].get("current-context") != use_context:
            docs[owner]["current-context"] = use_context
            result.documents[owner] = docs[owner]
            result.changes.append(f"current-context set to '{use_context}' in {owner}")
        result.current_context = use_context
    return result


def _owner(docs: dict[Path, dict[str, Any]], entry: Entry) -> Path | None:
    for path, doc in docs.items():
        for item in doc.get(entry.section) or []:
            if isinstance(item, dict) and item.get("name") == entry.name:
                return path
    return None


def _first_existing(paths: Sequence[Path]) -> Path:
    return next((p for p in paths if p.exists()), paths[-1])


def write(result: Plan) -> list[Path]:
    """Write each changed document atomically (0600), after a backup of the old file."""
    backups = []
    for path, doc in result.documents.items():
        if path.exists():
            backups.append(files.backup_copy(path))
        files.ensure_dir(path.parent)
        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        files.atomic_write(path, text, files.PRIVATE)
    return backups


INSTALL_HINT = ("dexkit is the credential plugin of this user (it logs in to Dex): install it "
                "with 'pipx install dexkit' (or 'pip install dexkit') so that 'dexkit' is on "
                "PATH")


def exec_user(token_args: Sequence[str], *, command: str = "dexkit") -> dict[str, Any]:
    """The user stanza that makes kubectl run ``dexkit token ARGS`` (client.authentication/v1).

    ``interactiveMode: IfAvailable``: kubectl hands over the terminal when it has one (the
    keyboard flow, a password prompt); the browser and device flows need none.
    """
    return {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": command,
        "args": ["token", *token_args],
        "interactiveMode": "IfAvailable",
        "provideClusterInfo": False,
        "installHint": INSTALL_HINT,
    }}
