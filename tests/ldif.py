"""LDIF, as the ldap scenario ships it and as ``ldapsearch -LLL -o ldif-wrap=no`` prints it.

Entries are blank-line separated blocks of ``attr: value`` lines (``attr:: base64`` for values
``ldapsearch`` encodes); ``#`` lines are comments. Line folding is not supported: the scenario
does not use it and ``ldapsearch`` is told not to.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field


@dataclass
class Entry:
    dn: str
    # Attribute names as written; look-ups ignore case, as LDAP does.
    attrs: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> list[str]:
        if name.lower() == "dn":
            return [self.dn]
        return next((v for k, v in self.attrs.items() if k.lower() == name.lower()), [])

    def first(self, name: str) -> str | None:
        values = self.get(name)
        return values[0] if values else None

    def add(self, name: str, value: str) -> None:
        for key, values in self.attrs.items():
            if key.lower() == name.lower():
                values.append(value)
                return
        self.attrs[name] = [value]

    def object_classes(self) -> set[str]:
        return {v.lower() for v in self.get("objectClass")}


def parse_ldif(text: str) -> list[Entry]:
    entries: list[Entry] = []
    current: Entry | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("#"):
            continue
        if not line.strip():
            current = None
            continue
        if line.startswith(" "):
            raise ValueError(f"line {number}: folded lines are not supported")
        name, sep, rest = line.partition(":")
        if not sep:
            raise ValueError(f"line {number}: not 'attribute: value': {line!r}")
        if rest.startswith(":"):
            value = base64.b64decode(rest[1:].strip()).decode()
        else:
            value = rest.strip()
        if current is None:
            if name.lower() != "dn":
                raise ValueError(f"line {number}: an entry must start with dn:")
            current = Entry(value)
            entries.append(current)
        else:
            current.add(name, value)
    return entries


def dump_ldif(entries: list[Entry]) -> str:
    blocks = []
    for entry in entries:
        lines = [f"dn: {entry.dn}"]
        lines += [f"{name}: {value}" for name, values in entry.attrs.items() for value in values]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def normal_dn(dn: str) -> str:
    """Good enough for the scenario's DNs: no escaped commas, case and spaces ignored."""
    return ",".join(part.strip().lower() for part in dn.split(","))


def in_subtree(dn: str, base: str) -> bool:
    entry, root = normal_dn(dn), normal_dn(base)
    return entry == root or entry.endswith("," + root)


def escape_filter_value(value: str) -> str:
    """RFC 4515: the characters a filter assertion value must escape (Dex does the same)."""
    out = []
    for char in value:
        out.append(f"\\{ord(char):02x}" if char in "*()\\\x00" else char)
    return "".join(out)
