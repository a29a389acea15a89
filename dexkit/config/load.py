"""Reading dexkit.yaml, and the error-location engine that makes every mistake one line.

What the user sees for a bad value is ``dexkit.yaml:14: dex.service.nodePort: <sentence>`` and
a hint. Three pieces make that line, in this order:

1. Before any value is built, :func:`check_nodes` walks the YAML nodes and refuses what PyYAML
   would let pass silently: a key that is not a string, the same key twice in one mapping, two
   merged mappings (``<<``) setting the same key, nesting deeper than :data:`MAX_DEPTH`. These
   errors carry their line straight from the node.

2. msgspec converts the plain data into :class:`~dexkit.config.model.Config`. When a field has
   the wrong type, or a section's ``__post_init__`` refuses a value, msgspec raises one
   ``ValidationError`` whose text is the message, then `` - at `` and, in backticks, the path
   of the section it was checking (``$.dex.service``). A section's own check cannot hand
   msgspec a key, a hint or anything but text, so it smuggles them inside the message. That is
   the protocol :func:`~dexkit.config.values.invalid` writes and :func:`describe_error` reads:

   - the message starts with the unit separator ``\\x1f``, and ``\\x1f`` separates three parts:
     the key inside the section that is wrong, the sentence, and the hint
     (``"\\x1fhosts\\x1f'10.0.0.1' is not a valid DNS name\\x1fput IP addresses under 'ips'"``);
   - a key deeper than one level (``dex.extraConfig.web``, checked by ``Config`` itself) has
     its parts separated by the record separator ``\\x1e``; a part made of digits is a list
     index;
   - a ``\\x1f`` inside a value is written out as the four characters ``\\x1f`` first, so a
     value can never split the message (an issuer holding one once did).

   :func:`describe_error` takes msgspec's path, appends the key from the message, and keeps the
   sentence and hint. Text without the leading ``\\x1f`` is msgspec's own: an unknown key gets
   the nearest valid key as its hint, a value outside a ``Literal`` (or an unknown connector or
   storage ``type``) the nearest choice, a ``str`` field given a bool or number a hint to quote
   it. msgspec writes a mapping's key as
   ``[...]``; the key meant is found again as the first whose value does not validate.

3. :func:`parse_config` looks the key path up in the same YAML nodes (:func:`_line_of`: the
   deepest node on the path that exists, the key itself when present) and prefixes its line.

:func:`validate_values` does step 2 alone, for values from the command line: they are usage
errors (exit 2), with the key path but no file or line to show.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import yaml

from dexkit.config.model import (
    Config,
)
from dexkit.config.values import (
    _PART,
    _SEP,
    CONFIG_FILE,
)
from dexkit.errors import ConfigError, UsageError


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path
    warnings: list[str] = field(default_factory=list)

    @property
    def project_dir(self) -> Path:
        return self.path.parent


def config_path(directory: Path) -> Path:
    return directory / CONFIG_FILE


def load_config(directory: Path) -> LoadedConfig:
    """Read and validate ``<directory>/dexkit.yaml``; raise :class:`ConfigError` if it is bad."""
    # Deferred: files (tempfile, random: ~11 modules, ~5 ms) would load with the config model,
    # e.g. in 'dexkit kind --help'.
    from dexkit.files import os_error, read_limited  # noqa: PLC0415

    path = config_path(directory)
    try:
        raw = read_limited(path)
    except FileNotFoundError:
        raise ConfigError(f"no {CONFIG_FILE} in {directory}",
                          f"run 'dexkit init --dir {directory}' first, or pass --dir to the "
                          "project") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory", "move it away and run 'dexkit init'") from None
    except OSError as exc:
        raise os_error(exc, path, "read") from None
    config = parse_config(decode_text(raw, str(path)), str(path))
    return LoadedConfig(config=config, path=path, warnings=config.warnings())


def decode_text(raw: bytes, source: str) -> str:
    """UTF-8 text (a BOM allowed), or a ConfigError that says the file is not text."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not a UTF-8 text file (byte {exc.start + 1} is "
                          f"0x{raw[exc.start]:02x})",
                          "dexkit.yaml is YAML text: restore it from a backup "
                          "(dexkit.yaml.bak-*) or write a new one with 'dexkit init'") from None
    if "\x00" in text:
        raise ConfigError(f"{source}: not a text file (it holds NUL bytes)",
                          "restore it from a backup (dexkit.yaml.bak-*) or write a new one "
                          "with 'dexkit init'")
    return text


# PyYAML composes nested collections recursively; this deep is far beyond any real config
# and far below the interpreter's recursion limit.
MAX_DEPTH = 64


def parse_config(text: str, source: str = CONFIG_FILE) -> Config:
    loader, root = _compose(text, source)
    try:
        check_nodes(root, source)
        # The values come from the nodes just checked: the text is parsed once, not twice
        # (what yaml.safe_load would do again costs as much as the composing).
        data = None if root is None else loader.construct_document(root)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError) as exc:
        # The composer accepted it, so this is a value PyYAML cannot construct (a timestamp
        # such as 2026-13-45, a bad !!binary...).
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: a value YAML cannot read: {_one_line(exc)}",
                          "quote the value if it is meant as text") from None
    finally:
        loader.dispose()
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys",
                          "start from 'dexkit init' and edit the file it writes")
    try:
        config: Config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        problem = describe_error(str(exc), data)
        line = _line_of(root, problem.line_path)
        where = f"{source}:{line}" if line else source
        key = _key_path(problem.path)
        raise ConfigError(f"{where}: {key}: {problem.message}" if key
                          else f"{where}: {problem.message}",
                          problem.hint or "fix the value and run the command again") from None
    return config


def _one_line(exc: BaseException) -> str:
    problem = getattr(exc, "problem", None) or str(exc) or type(exc).__name__
    return " ".join(str(problem).split())


def _compose(text: str, source: str) -> tuple[yaml.SafeLoader, yaml.Node | None]:
    """The loader (to construct the values from) and the document's root node."""
    try:
        loader = yaml.SafeLoader(text)  # the reader already refuses unprintable characters
        return loader, loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: not valid YAML: {_one_line(exc)}",
                          "fix the YAML syntax (indentation, quotes, colons)") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a dexkit.yaml",
                          f"dexkit.yaml nests a few levels; keep it under {MAX_DEPTH}") from None


def check_nodes(root: yaml.Node | None, source: str) -> None:
    """What PyYAML lets pass and dexkit refuses, with the line: keys that are not strings,
    the same key twice in one mapping (YAML keeps the last one silently), and nesting deeper
    than :data:`MAX_DEPTH`. Each node is visited once, so aliases cannot blow this up."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, list[str | int]]] = [(root, [])] if root is not None else []
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(path) > MAX_DEPTH:
            raise ConfigError(f"{source}:{node.start_mark.line + 1}: nested more than "
                              f"{MAX_DEPTH} levels deep", "dexkit.yaml nests a few levels; "
                              "check the indentation")
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, [*path, i]) for i, child in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            first = _check_mapping(node, path, source)
            _check_merges(node, first, path, source)
            # A merge key's mappings are checked too, as parts of this mapping.
            stack += [(value, path if key.tag == _MERGE_TAG else [*path, str(key.value)])
                      for key, value in node.value]


def _check_mapping(node: yaml.MappingNode, path: list[str | int],
                   source: str) -> dict[str, int]:
    """The mapping's own keys (and their lines), refusing one written twice."""
    first: dict[str, int] = {}
    for key, _ in node.value:
        name = _key_name(key, path, source)
        line = key.start_mark.line + 1
        if name in first and name == "<<":
            # Two merge keys are a duplicate key too (ruamel.yaml refuses them); PyYAML
            # merges both and lets the second set any key the first set, silently.
            where = f"{_key_path(path)}: " if path else ""
            raise ConfigError(f"{source}:{line}: {where}a second merge key '<<' in one mapping "
                              f"(first on line {first[name]}); the later one would silently "
                              "override what the first sets", _MERGE_HINT)
        if name in first:
            raise ConfigError(f"{source}:{line}: {_key_path([*path, name])}: duplicate key "
                              f"(first on line {first[name]}); YAML would keep only this one",
                              "remove one of the two, or merge them")
        first[name] = line
    return first


_MERGE_TAG = "tag:yaml.org,2002:merge"
_MERGE_HINT = ("merge several mappings with one key, '<<: [*first, *second]', each setting "
               "keys of its own")


def _check_merges(node: yaml.MappingNode, own: dict[str, int], path: list[str | int],
                  source: str) -> None:
    """Refuse a key that two merged mappings both set: which one wins is where YAML readers
    disagree (PyYAML itself picks the first of '<<: [*a, *b]' but the last of an inline list).
    A key the mapping sets itself overrides every merged one, as YAML's merge intends."""
    sources: list[yaml.Node] = []
    for key, value in node.value:
        if key.tag == _MERGE_TAG:
            sources += value.value if isinstance(value, yaml.SequenceNode) else [value]
    owners: dict[str, int] = {}
    for merged in sources:
        for name, line in _merged_keys(merged, set(), source).items():
            if name in own:
                continue
            if name in owners:
                where = _key_path([*path, name])
                raise ConfigError(f"{source}:{line}: {where}: set by two merged mappings "
                                  f"(also on line {owners[name]}); YAML readers disagree on "
                                  "which one wins", _MERGE_HINT + ", or set it here itself")
            owners[name] = line


def _merged_keys(node: yaml.Node, seen: set[int], source: str) -> dict[str, int]:
    """The keys a merged mapping brings (its own, then those of its own merges), with lines."""
    if not isinstance(node, yaml.MappingNode) or id(node) in seen:
        return {}  # not a mapping: PyYAML refuses it when it constructs the values
    seen.add(id(node))
    if len(seen) > MAX_DEPTH:
        raise ConfigError(f"{source}:{node.start_mark.line + 1}: one merge brings in more "
                          f"than {MAX_DEPTH} mappings", "dexkit.yaml needs a few merges at most")
    found: dict[str, int] = {}
    for key, value in node.value:
        if key.tag == _MERGE_TAG:
            nested = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for inner in nested:
                for name, line in _merged_keys(inner, seen, source).items():
                    found.setdefault(name, line)
        elif isinstance(key, yaml.ScalarNode):
            found[str(key.value)] = key.start_mark.line + 1
    return found


def _key_name(key: yaml.Node, path: list[str | int], source: str) -> str:
    line = key.start_mark.line + 1
    where = _key_path(path) or "the top level"
    if isinstance(key, yaml.ScalarNode) and key.tag == "tag:yaml.org,2002:merge":
        return "<<"
    if isinstance(key, yaml.ScalarNode) and key.tag == "tag:yaml.org,2002:str":
        return str(key.value)
    if not isinstance(key, yaml.ScalarNode):
        kind = "a list" if isinstance(key, yaml.SequenceNode) else "a mapping"
        raise ConfigError(f"{source}:{line}: {where}: a key is {kind}, not a name",
                          "keys are names such as 'issuer' or 'hosts'")
    core = key.tag.removeprefix("tag:yaml.org,2002:")
    kind = f"the tag {key.tag}" if core == key.tag or not core else \
        ("an " if core[0] in "aeiou" else "a ") + core
    raise ConfigError(f"{source}:{line}: {where}: the key {key.value!r} is not a string (YAML "
                      f"reads it as {kind})",
                      f"keys are names; quote it (\"{key.value}\": ...) if it is meant as one")


def validate_values(data: dict[str, Any]) -> Config:
    """Validate a config built from command-line values; errors are usage errors (exit 2)."""
    try:
        config: Config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        problem = describe_error(str(exc), data)
        key = _key_path(problem.path)
        raise UsageError(f"{key}: {problem.message}" if key else problem.message,
                         problem.hint or "see 'dexkit init --help'") from None
    return config


@dataclass(frozen=True)
class Problem:
    path: list[str | int]
    message: str
    hint: str = ""
    # An unknown key: not part of the path shown, but where the line number points.
    unknown_key: str | None = None

    @property
    def line_path(self) -> list[str | int]:
        return self.path + ([self.unknown_key] if self.unknown_key else [])


_LOCATION = re.compile(r"^(?P<msg>.*?)(?: - at (?:`key` in )?`\$(?P<path>[^`]*)`)?$",
                       re.DOTALL)


def describe_error(text: str, data: Any) -> Problem:
    """Turn msgspec's error text into a key path, a sentence and a hint for the user."""
    match = _LOCATION.match(text)
    assert match is not None  # the pattern matches any text
    message, path = match.group("msg"), _parse_path(match.group("path") or "", data)
    if message.startswith(_SEP):
        key, message, hint = message[1:].split(_SEP, 2)
        parts = [int(p) if p.isdigit() else p for p in key.split(_PART)]
        return Problem([*path, *parts], message, hint)
    unknown = re.fullmatch(r"Object contains unknown field `(.*)`", message)
    if unknown:
        return _unknown_key(path, unknown.group(1), data)
    enum = re.fullmatch(r"Invalid (?:enum )?value '?(.*?)'?", message)
    if enum:
        return _bad_choice(path, enum.group(1), data)
    if re.fullmatch(r"Expected `str`, got `(bool|int|float|null)`", message):
        return Problem(path, _plain(message), "quote the value if it is meant as text (YAML "
                       "reads no, yes, on and off as booleans, 1.10 as a number, ~ as null)")
    return Problem(path, _plain(message))


def _unknown_key(path: list[str | int], key: str, data: Any) -> Problem:
    kind = _type_at(path, data)
    names = sorted(f.encode_name for f in msgspec.structs.fields(kind)) if kind else []
    match = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"did you mean '{match[0]}'?" if match else (
        f"valid keys here: {', '.join(names)}" if names else "")
    return Problem(path, f"unknown key '{key}'", hint, unknown_key=key)


def _bad_choice(path: list[str | int], value: str, data: Any) -> Problem:
    parent = _type_at(path[:-1], data)
    choices: list[str] = []
    if path and path[-1] == "type" and parent is None:
        choices = _tags_at(path[:-1], data)
        message = f"unknown type '{value}'; dexkit knows {', '.join(choices)}"
    else:
        hint_type = _field_type(parent, path[-1]) if parent and path else None
        choices = _literal_values(hint_type) if hint_type else []
        message = f"'{value}' is not allowed; expected one of {', '.join(choices)}"
    match = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    return Problem(path, message, f"did you mean '{match[0]}'?" if match else "")


def _literal_values(hint: Any) -> list[str]:
    """The values a Literal allows, also inside ``Literal[...] | None`` (an optional field's
    choices, which typing.get_args gives as the Literal and NoneType)."""
    if typing.get_origin(hint) is typing.Literal:
        return [str(a) for a in typing.get_args(hint)]
    return [v for arg in typing.get_args(hint) for v in _literal_values(arg)]


def _plain(message: str) -> str:
    """msgspec's wording, minus the backticks."""
    return message.replace("`", "")


def _parse_path(text: str, data: Any) -> list[str | int]:
    """msgspec's ``$.dex.podLabels[...]`` as a key path. msgspec writes a mapping's key as
    ``[...]``: the key meant is the first whose value does not validate."""
    parts: list[str | int] = []
    for name, index, key in re.findall(r"\.([^.\[]+)|\[(\d+)\]|(\[\.\.\.\])", text):
        if key:
            found = _failing_key(parts, data)
            if found is None:
                break  # the mapping itself, then
            parts.append(found)
        else:
            parts.append(int(index) if index else name)
    return parts


def _failing_key(path: list[str | int], data: Any) -> str | None:
    """The first key of the ``dict[str, X]`` at ``path`` whose value is not an X."""
    holder = _type_at(path[:-1], data) if path and isinstance(path[-1], str) else None
    annotation = _field_type(holder, path[-1]) if holder else None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next((a for a in typing.get_args(annotation)
                           if typing.get_origin(a) is dict), None)
    mapping = _value_at(path, data)
    if typing.get_origin(annotation) is not dict or not isinstance(mapping, dict):
        return None
    value_type = typing.get_args(annotation)[1]
    for key, value in mapping.items():
        try:
            msgspec.convert(value, value_type)
        except msgspec.ValidationError:
            return str(key)
    return None


def _value_at(path: list[str | int], data: Any) -> Any:
    for part in path:
        if isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def _hints_of(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind, include_extras=False)


def _field_type(kind: type, encoded: str | int) -> Any:
    for info in msgspec.structs.fields(kind):
        if info.encode_name == encoded:
            return _hints_of(kind)[info.name]
    return None


def _resolve(annotation: Any, value: Any) -> Any:
    """Unwrap Optional/list/union to the Struct class the ``value`` is validated as."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        structs = [a for a in typing.get_args(annotation)
                   if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        tag = value.get("type") if isinstance(value, dict) else None
        for candidate in structs:
            if candidate.__struct_config__.tag == tag or len(structs) == 1:
                return candidate
        return None
    return annotation


def _type_at(path: list[str | int], data: Any) -> type | None:
    """The Struct class that validates the object at ``path`` in ``data``, if any."""
    kind: Any = Config
    value = data
    for part in path:
        if isinstance(part, int):
            if typing.get_origin(kind) is not list:
                return None
            kind = typing.get_args(kind)[0]
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
                return None
            kind = _field_type(kind, part)
            value = value.get(part) if isinstance(value, dict) else None
        kind = _resolve(kind, value)
        if kind is None:
            return None
    return kind if isinstance(kind, type) and issubclass(kind, msgspec.Struct) else None


def _tags_at(path: list[str | int], data: Any) -> list[str]:
    """The tags a tagged union accepts at ``path`` (connector or storage types)."""
    if not path:
        return []
    parent = _type_at(path[:-1], data) if not isinstance(path[-1], int) else None
    annotation = _field_type(parent, path[-1]) if parent else None
    if annotation is None and isinstance(path[-1], int):
        holder = _type_at(path[:-2], data)
        annotation = _field_type(holder, path[-2]) if holder else None
        annotation = typing.get_args(annotation)[0] if annotation else None
    return [str(a.__struct_config__.tag) for a in typing.get_args(annotation)
            if isinstance(a, type) and issubclass(a, msgspec.Struct)]


def _key_path(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _line_of(root: yaml.Node | None, path: list[str | int]) -> int | None:
    """The 1-based line of the deepest YAML node on ``path`` (the key itself when present)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in path:
        if isinstance(node, yaml.MappingNode):
            child = next(((k, v) for k, v in node.value if k.value == part), None)
            if child is None:
                break
            line, node = child[0].start_mark.line + 1, child[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and \
                part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
