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
        old_s, new_s, new_t = _strings(before), _strings(after), _typed(after)
        old_t = _typed(before) if before is not None else {}
    except (yaml.YAMLError, RecursionError) as exc:
        return f"the result is not valid YAML: {str(exc).splitlines()[0]}"
    if not isinstance(new_t, dict) or not isinstance(old_t, dict):
        return "the result is not a mapping"
    for section in SECTIONS:
        problem = _section_problem(section, wanted.get(section, {}),
                                   (old_s.get(section), old_t.get(section)),
                                   (new_s.get(section), new_t.get(section)))
        if problem is not None:
            return problem
    if current_context is not None and new_t.get(CURRENT) != current_context:
        return f"{CURRENT} would not be '{current_context}'"
    for old, new in ((old_s, new_s), (old_t, new_t)):
        if current_context is None and old.get(CURRENT) != new.get(CURRENT):
            return f"{CURRENT} would change"
        rest = set(SECTIONS) | {CURRENT}
        changed = sorted(str(k) for k in {*old, *new} - rest if old.get(k) != new.get(k))
        if changed:
            return f"the top-level key '{changed[0]}' would change"
    return None


def _section_problem(section: str, wanted: Mapping[str, dict[str, Any]],
                     old: tuple[Any, Any], new: tuple[Any, Any]) -> str | None:
    """``old`` and ``new`` are the section as strings and as typed data."""
    if not wanted:
        return None if old == new else f"'{section}' would change"
    new_s, new_t = new
    if not isinstance(new_s, list) or not isinstance(new_t, list) or len(new_s) != len(new_t):
        return f"'{section}' would not be a list"
    mine = _indices(new_s, wanted)
    for name, stanza in wanted.items():
        # found by the name as written (as the editor and kubectl's string field read it)
        at = [i for i in mine if new_s[i]["name"] == name]
        if len(at) != 1:
            return f"{len(at)} entries named '{name}' in '{section}', not one"
        if new_t[at[0]] != stanza:
            return f"the entry '{name}' in '{section}' would not be the one asked for"
    old_s, old_t = (v if isinstance(v, list) else [] for v in old)
    if len(old_s) != len(old_t):
        return f"'{section}' comes from a YAML merge key ('<<'), not from a list of its own"
    was = _indices(old_s, wanted)
    for before, after in ((old_s, new_s), (old_t, new_t)):
        kept = [item for i, item in enumerate(before) if i not in was]
        now = [item for i, item in enumerate(after) if i not in mine]
        if kept != now:
            changed = next((i for i, (b, a) in enumerate(zip(kept, now, strict=False))
                            if a != b), None)
            names = [item for i, item in enumerate(old_s) if i not in was]
            named = names[changed].get("name") if changed is not None and \
                isinstance(names[changed], dict) else None
            what = f"the entry '{named}'" if isinstance(named, str) else "another entry"
            return f"{what} in '{section}' would change"
    return None


def _indices(items: list[Any], wanted: Mapping[str, Any]) -> set[int]:
    """Where ``items`` (as strings) holds an entry named in ``wanted``."""
    return {i for i, item in enumerate(items)
            if isinstance(item, dict) and item.get("name") in wanted}


def _strings(text: str | None) -> dict[str, Any]:
    """The document with every scalar as the string it is written as ({} for none)."""
    if text is None:
        return {}
    data = _load(text, "BaseLoader")
    return data if isinstance(data, dict) else {}


def _typed(text: str) -> Any:
    return _load(text, "SafeLoader")


def _load(text: str, loader: str) -> Any:
    """``text`` read by PyYAML's ``loader``, through libyaml where PyYAML has it (the check
    reads each file four times: a 20 MB kubeconfig takes minutes in pure Python). Where
    libyaml refuses a text PyYAML reads (they differ on a few corner cases), PyYAML decides."""
    fast = getattr(yaml, f"C{loader}", None)
    if fast is not None:
        try:
            return yaml.load(text, Loader=fast)  # noqa: S506 - BaseLoader or SafeLoader only
        except yaml.YAMLError:
            pass
    return yaml.load(text, Loader=getattr(yaml, loader))  # noqa: S506 - as above
