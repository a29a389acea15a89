"""The kubeconfig editor's last step: the edited text, parsed again, must say exactly what was
asked, or nothing is written.

A text edit is only as good as the positions it was computed from, and YAML has shapes where a
node's end mark is not where its text ends (a block scalar's end lies on the next line, after
the blank lines a ``|+`` keeps). Rather than trust every such rule, the result is compared with
the request, as data:

- every entry dexkit asked for is in its list exactly once (kubectl refuses a file with two
  entries of one name) and equal to the stanza asked for;
- every other entry of ``users``, ``clusters`` and ``contexts`` is unchanged, in its order;
- every other top-level key is unchanged, and ``current-context`` is the name asked for, or
  unchanged when none was.

Other entries are compared as the strings they are written with (PyYAML's ``BaseLoader``: no
YAML 1.1 resolution, so a ``1.10`` that became ``1.1`` counts as changed); dexkit's own stanzas
are compared as typed data (``provideClusterInfo: false`` is a boolean to kubectl).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dexkit.errors import DexkitError

SECTIONS = ("users", "clusters", "contexts")
CURRENT = "current-context"


class EditMismatch(DexkitError):
    """dexkit's edit of a kubeconfig did not come out as asked; nothing was written."""


def check_edit(path: Path, before: str | None, after: str,
               wanted: Mapping[str, Mapping[str, dict[str, Any]]],
               current_context: str | None) -> None:
    """Raise :class:`EditMismatch` unless ``after`` is ``before`` with exactly ``wanted``
    (section -> entry name -> stanza) set and, if given, ``current_context`` set."""
    problem = _problem(before, after, wanted, current_context)
    if problem is not None:
        raise mismatch(path, problem)


def mismatch(path: Path, problem: str) -> EditMismatch:
    return EditMismatch(
        f"{path}: dexkit's edit of this kubeconfig came out wrong ({problem}); nothing was "
        "written", "write dexkit's entries to a file of their own (--kubeconfig FILE) and add "
        "it to KUBECONFIG: kubectl merges the files")


def _problem(before: str | None, after: str,
             wanted: Mapping[str, Mapping[str, dict[str, Any]]],
             current_context: str | None) -> str | None:
    try:
        old, new, typed = _strings(before), _strings(after), _typed(after)
    except (yaml.YAMLError, RecursionError) as exc:
        return f"the result is not valid YAML: {str(exc).splitlines()[0]}"
    if not isinstance(new, dict) or not isinstance(typed, dict):
        return "the result is not a mapping"
    for section in SECTIONS:
        problem = _section_problem(section, old.get(section), new.get(section),
                                   typed.get(section), wanted.get(section, {}))
        if problem is not None:
            return problem
    if current_context is not None:
        if typed.get(CURRENT) != current_context:
            return f"{CURRENT} would not be '{current_context}'"
    elif old.get(CURRENT) != new.get(CURRENT):
        return f"{CURRENT} would change"
    rest = set(SECTIONS) | {CURRENT}
    changed = sorted(str(k) for k in {*old, *new} - rest if old.get(k) != new.get(k))
    if changed:
        return f"the top-level key '{changed[0]}' would change"
    return None


def _section_problem(section: str, old: Any, new: Any, typed: Any,
                     wanted: Mapping[str, dict[str, Any]]) -> str | None:
    if not wanted:
        return None if old == new else f"'{section}' would change"
    if not isinstance(new, list) or not isinstance(typed, list):
        return f"'{section}' would not be a list"
    for name, stanza in wanted.items():
        # found by the name as written (as the editor and kubectl's string field read it)
        at = [i for i, item in enumerate(new)
              if isinstance(item, dict) and item.get("name") == name]
        if len(at) != 1:
            return f"{len(at)} entries named '{name}' in '{section}', not one"
        if len(typed) != len(new) or typed[at[0]] != stanza:
            return f"the entry '{name}' in '{section}' would not be the one asked for"
    before, after = _others(old if isinstance(old, list) else [], wanted), _others(new, wanted)
    if before != after:
        changed = next((b for b, a in zip(before, after, strict=False) if a != b), None)
        named = changed.get("name") if isinstance(changed, dict) else None
        what = f"the entry '{named}'" if isinstance(named, str) else "another entry"
        return f"{what} in '{section}' would change"
    return None


def _others(items: list[Any], wanted: Mapping[str, Any]) -> list[Any]:
    return [i for i in items if not (isinstance(i, dict) and i.get("name") in wanted)]


def _strings(text: str | None) -> dict[str, Any]:
    """The document with every scalar as the string it is written as ({} for none)."""
    if text is None:
        return {}
    data = yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds no objects
    return data if isinstance(data, dict) else {}


def _typed(text: str) -> Any:
    return yaml.safe_load(text)
