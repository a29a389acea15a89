"""The static-pod patch: a kubeadm ``kube-apiserver.yaml`` edited as text, line by line, so that
only what dexkit adds, replaces or removes changes.
"""

from __future__ import annotations

import difflib
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from dexkit.config import check_nodes
from dexkit.errors import ConfigError, DexkitError, UsageError
from dexkit.redact import line
from dexkit.render import scalar
from dexkit.render.apiserver.authn import (
    OWNED_PREFIX,
    Flag,
    HostPathMount,
    apiserver_flags,
    host_path_mounts,
)
from dexkit.render.yamltext import last_end, line_after, line_start

if TYPE_CHECKING:
    from collections.abc import Callable

    from dexkit.config import Config


# --- the static-pod patch -------------------------------------------------------------------------


@dataclass(frozen=True)
class PatchResult:
    """The patched manifest, its unified diff, one line per change (none: already configured)."""

    text: str
    diff: str
    changes: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str
    order: int = 0


@dataclass
class _Manifest:
    """The parsed manifest and the YAML nodes the patch edits, with the text they come from."""

    text: str
    source: str
    data: dict[str, Any]
    container_index: int
    command: yaml.SequenceNode
    mounts: yaml.SequenceNode
    volumes: yaml.SequenceNode

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"


def patch_static_pod(text: str, config: Config, *,
                     source: str = "kube-apiserver.yaml") -> PatchResult:
    """Set the API server's flags and mounts for Dex in a static-pod manifest.

    Rules: dexkit's flags (every ``--oidc-*`` and ``--authentication-config``) are made exactly
    the wanted ones (added, replaced or removed, so that the two modes never meet); volumes
    named ``dexkit-*`` likewise. A mount path some other volume already provides is left to it.
    Everything else stays byte for byte. Applied to its own output it changes nothing.
    """
    manifest = _parse_manifest(text, source)
    edits: list[_Edit] = []
    changes: list[str] = []
    flags = apiserver_flags(config)
    _plan_flags(manifest, flags, edits, changes)
    mounts = host_path_mounts(config)
    _plan_mounts(manifest, mounts, edits, changes)
    new_text = _apply(text, edits)
    if new_text != text:
        _verify(manifest, new_text, flags, mounts)
    diff = "".join(difflib.unified_diff(
        text.splitlines(keepends=True), new_text.splitlines(keepends=True),
        fromfile=f"a/{line(source)}", tofile=f"b/{line(source)}"))
    return PatchResult(text=new_text, diff=diff, changes=tuple(changes))


def _not_apiserver(source: str, why: str) -> UsageError:
    return UsageError(f"{source} is not a kube-apiserver Pod manifest: {why}",
                      "pass the API server's static-pod manifest, "
                      "e.g. /etc/kubernetes/manifests/kube-apiserver.yaml")


def _unsupported(source: str, why: str) -> UsageError:
    return UsageError(f"{source}: {why}, which dexkit does not edit automatically",
                      "add the flags and mounts by hand: see 'dexkit apiserver flags' and "
                      "'dexkit apiserver snippet'")


def _parse_manifest(text: str, source: str) -> _Manifest:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise _not_apiserver(source, f"not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise _not_apiserver(source, "it is nested far too deeply") from None
    _check_plain_yaml(text, root, source)
    index = _apiserver_container(data, source)
    assert isinstance(root, yaml.MappingNode)  # _apiserver_container checked the shape
    spec = _child(root, "spec")
    containers = _child(spec, "containers")
    assert isinstance(containers, yaml.SequenceNode)
    container = containers.value[index]
    return _Manifest(
        text=text, source=source, data=data, container_index=index,
        command=_block_sequence(container, "command", source),
        mounts=_block_sequence(container, "volumeMounts", source),
        volumes=_block_sequence(spec, "volumes", source))


def _check_plain_yaml(text: str, root: yaml.Node | None, source: str) -> None:
    """Refuse what a text edit cannot get right: the same key twice (PyYAML keeps the last,
    the kubelet refuses the file) and anchors or aliases (one edit would change two places).
    kubeadm writes neither."""

    try:
        check_nodes(root, source)
    except ConfigError as exc:
        raise _not_apiserver(source, exc.message.removeprefix(f"{source}:")) from None
    if any(isinstance(t, yaml.AnchorToken | yaml.AliasToken)
           for t in yaml.scan(text, Loader=yaml.SafeLoader)):
        raise _unsupported(source, "it uses YAML anchors or aliases")


def _apiserver_container(data: Any, source: str) -> int:
    if not isinstance(data, dict):
        raise _not_apiserver(source, "it is not a YAML mapping")
    if data.get("kind") != "Pod" or data.get("apiVersion") != "v1":
        raise _not_apiserver(source, f"it is a {data.get('kind')!s} ({data.get('apiVersion')!s}),"
                             " not a v1 Pod")
    containers = (data.get("spec") or {}).get("containers") if isinstance(
        data.get("spec"), dict) else None
    if not isinstance(containers, list):
        raise _not_apiserver(source, "it has no spec.containers")
    for index, container in enumerate(containers):
        command = container.get("command") if isinstance(container, dict) else None
        if (isinstance(command, list) and command and isinstance(command[0], str)
                and posixpath.basename(command[0]) == "kube-apiserver"):
            return index
    raise _not_apiserver(source, "no container runs the kube-apiserver command")


def _child(node: yaml.Node, key: str) -> yaml.Node:
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                found: yaml.Node = value
                return found
    raise KeyError(key)


def _block_sequence(parent: yaml.Node, key: str, source: str) -> yaml.SequenceNode:
    try:
        node = _child(parent, key)
    except KeyError:
        raise _unsupported(source, f"the kube-apiserver pod has no {key} list") from None
    if not isinstance(node, yaml.SequenceNode) or node.flow_style or not node.value:
        raise _unsupported(source, f"{key} is not a block-style list (kubeadm writes one)")
    return node


# --- text positions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    """One list item as lines of text: ``[start, end)``, and the ``- `` prefix it starts with."""

    node: yaml.Node
    start: int
    end: int
    prefix: str


def _items(manifest: _Manifest, seq: yaml.SequenceNode) -> list[_Item]:
    text = manifest.text
    items = []
    for node in seq.value:
        begin = int(node.start_mark.index)
        start = line_start(text, begin)
        prefix = text[start:begin]
        if not re.fullmatch(r"[ ]*-[ ]+", prefix):
            raise _unsupported(manifest.source, f"the list item on line {node.start_mark.line + 1}"
                               " does not start its own line with '- '")
        items.append(_Item(node, start, line_after(text, last_end(node) - 1), prefix))
    return items


def _item_text(item_value: Any, prefix: str, newline: str) -> str:
    """A list item in the manifest's own indentation: ``prefix`` first, then aligned lines."""
    if isinstance(item_value, str):
        return prefix + scalar(item_value) + newline
    lines = yaml.safe_dump(item_value, sort_keys=True, default_flow_style=False,
                           width=10**6).splitlines()
    pad = " " * len(prefix)
    return "".join((prefix if i == 0 else pad) + line + newline for i, line in enumerate(lines))


def _insert_sorted(items: list[_Item], key: Callable[[_Item], str], new_key: str,
                   text: str, order: int) -> _Edit:
    """An insertion before the first item that sorts after ``new_key`` (kubeadm sorts its lists)."""
    for item in items:
        if key(item) > new_key:
            return _Edit(item.start, item.start, text, order)
    return _Edit(items[-1].end, items[-1].end, text, order)


def _apply(text: str, edits: list[_Edit]) -> str:
    out, position = [], 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end > e.start, e.order)):
        if edit.start < position:
            raise DexkitError("internal error: overlapping edits to the manifest",
                              "report it as a bug; nothing was written")
        out.append(text[position:edit.start])
        if edit.start == len(text) and text and not text.endswith("\n"):
            out.append("\n")  # appending after a last line without its newline
        out.append(edit.text)
        position = edit.end
    out.append(text[position:])
    return "".join(out)


# --- planning the flags ---------------------------------------------------------------------------


def _owned_flag(name: str) -> bool:
    # The word before any white space: '--authentication-config /x' as one item is dexkit's
    # flag written wrongly (an unknown flag to kube-apiserver), replaced like the others.
    word = name.split(None, 1)[0] if name.strip() else ""
    return word.startswith("oidc-") or word == "authentication-config"


def _flag_name(value: str) -> str:
    """The flag an item names, as kube-apiserver looks it up: Kubernetes components normalise
    '_' to '-' (component-base's WordSepNormalizeFunc), so '--oidc_issuer_url' is dexkit's."""
    return value[2:].split("=", 1)[0].replace("_", "-") if value.startswith("--") else ""


# The names pflag can know: kube-apiserver's flags are lower case words and hyphens.
_FLAG_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class _NoValue(Exception):
    """A dexkit flag spelled as two items whose value item is missing."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def _read_flags(values: list[str]) -> list[tuple[int, int | None]]:
    """The command's items (after the command itself) as kube-apiserver's flag parser (pflag)
    reads them: each flag as the index of its item and of its value item, None when the item
    holds the whole flag.

    pflag splits an item on its first '=' only. ``--name=value`` is one flag. ``--name`` alone
    takes the next item as its value, whatever it is, when the flag takes a value: dexkit's
    flags all do. An item whose name has a space or another character no flag name has
    (``--oidc-issuer-url https://old``) is one unknown flag: it never takes the next item (and
    kube-apiserver refuses to start with it, so dexkit replaces it as one of its own). Another
    flag alone is taken as a boolean: followed by an item starting with '-', a flag that takes
    a value would swallow that item and make kube-apiserver fail on it, so a manifest that
    runs has none. A dexkit flag whose value item is missing or is a flag raises
    :class:`_NoValue`: reading it either way would be a guess.
    """
    out: list[tuple[int, int | None]] = []
    i = 0
    while i < len(values):
        value = values[i]
        name = _flag_name(value)
        if _owned_flag(name) and "=" not in value and _FLAG_NAME.fullmatch(name):
            after = values[i + 1] if i + 1 < len(values) else None
            if after is None or (after.startswith("-") and after != "-"):
                raise _NoValue(i)
            out.append((i, i + 1))
            i += 2
            continue
        out.append((i, None))
        i += 1
    return out


def _flag_items(manifest: _Manifest,
                items: list[_Item]) -> list[tuple[_Item, _Item | None, str]]:
    """:func:`_read_flags` over the manifest's items: first item, value item, the flag as
    ``--name=value`` (or the item's own text when it holds the whole flag)."""
    values = [str(getattr(item.node, "value", "")) for item in items]
    if "--" in values:
        raise _unsupported(manifest.source, "the kube-apiserver command has a bare '--', after "
                           "which it reads no flags")
    try:
        read = _read_flags(values)
    except _NoValue as missing:
        item = items[missing.index]
        line = item.node.start_mark.line + 1
        name = values[missing.index]
        nxt = values[missing.index + 1] if missing.index + 1 < len(values) else None
        what = ("it is the last item: kube-apiserver refuses to start ('flag needs an "
                "argument')") if nxt is None else (f"kube-apiserver would take the next item, "
                                                   f"{nxt!r}, as its value")
        raise UsageError(f"{manifest.source}:{line}: the flag {name!r} has no value; {what}",
                         f"write it as {name}=VALUE on one item (or remove it), then run "
                         "'dexkit apiserver patch' again") from None
    return [(items[i], items[j] if j is not None else None,
             values[i] if j is None else f"{values[i]}={values[j]}") for i, j in read]


def command_flags(command: list[Any]) -> list[str]:
    """The same reading over a parsed command list (for checking the result)."""
    values = [str(v) for v in command]
    return [values[i] if j is None else f"{values[i]}={values[j]}"
            for i, j in _read_flags(values)]


def _plan_flags(manifest: _Manifest, flags: list[Flag], edits: list[_Edit],
                changes: list[str]) -> None:
    items = _items(manifest, manifest.command)[1:]  # the first item is the command itself
    if not items:
        raise _unsupported(manifest.source, "the kube-apiserver command has no flags")
    wanted = {flag.name: str(flag) for flag in flags}
    done: set[str] = set()
    nl, prefix = manifest.newline, items[0].prefix
    for item, value_item, value in _flag_items(manifest, items):
        name = _flag_name(value)
        if not _owned_flag(name):
            continue
        if value_item is not None and value.partition("=")[2].startswith("-"):
            # '- --oidc-issuer-url' whose value was forgotten: kube-apiserver takes the next
            # option for it; which of the two the user meant is not dexkit's to guess
            at = item.node.start_mark.line + 1
            raise _unsupported(manifest.source, f"--{name} on line {at} is followed by another "
                               "option instead of its value (kube-apiserver would take that "
                               "option for the value)")
        end = (value_item or item).end
        shown = value if value_item is None else f"{value.split('=', 1)[0]} " \
            f"{value.split('=', 1)[1]}"
        if name in wanted and name not in done:
            done.add(name)
            # A two-item flag whose value is already right stays (pflag reads it the same).
            if value != wanted[name]:
                edits.append(_Edit(item.start, end, _item_text(wanted[name], item.prefix, nl)))
                changes.append(f"set {wanted[name]} (was {shown})")
        else:
            edits.append(_Edit(item.start, end, ""))
            changes.append(f"removed {shown}")
    # New flags go in kubeadm's alphabetical order, each before the first flag sorting after it.
    for order, flag in enumerate(sorted(flags, key=lambda f: f.name)):
        if flag.name not in done:
            edits.append(_insert_sorted(
                items, lambda i: _flag_name(str(getattr(i.node, "value", ""))), flag.name,
                _item_text(str(flag), prefix, nl), order))
            changes.append(f"added {flag}")


# --- planning the volumes -------------------------------------------------------------------------


def _with_values(manifest: _Manifest, seq: yaml.SequenceNode,
                 values: list[Any]) -> list[tuple[_Item, dict[str, Any]]]:
    """The items of ``seq`` with their parsed values (the same list, read by PyYAML)."""
    return [(item, value if isinstance(value, dict) else {})
            for item, value in zip(_items(manifest, seq), values, strict=True)]


def wanted_mounts(mounts: list[HostPathMount],
                  existing_mounts: list[dict[str, Any]]) -> list[HostPathMount]:
    """The mounts to add: a path another (not dexkit's) volume already mounts is left to it."""
    provided = {str(m.get("mountPath")) for m in existing_mounts
                if isinstance(m, dict) and not str(m.get("name", "")).startswith(OWNED_PREFIX)}
    return [m for m in mounts if m.path not in provided]


def _plan_mounts(manifest: _Manifest, mounts: list[HostPathMount], edits: list[_Edit],
                 changes: list[str]) -> None:
    container = manifest.data["spec"]["containers"][manifest.container_index]
    volumes = _with_values(manifest, manifest.volumes, manifest.data["spec"]["volumes"])
    volume_mounts = _with_values(manifest, manifest.mounts, container["volumeMounts"])
    wanted = wanted_mounts(mounts, container["volumeMounts"])
    _plan_named(manifest, volumes, {m.name: m.volume() for m in wanted}, "volume", edits,
                changes)
    _plan_named(manifest, volume_mounts, {m.name: m.volume_mount() for m in wanted},
                "volumeMount", edits, changes)


def _plan_named(manifest: _Manifest, existing: list[tuple[_Item, dict[str, Any]]],
                wanted: dict[str, dict[str, Any]], what: str, edits: list[_Edit],
                changes: list[str]) -> None:
    nl, prefix = manifest.newline, existing[0][0].prefix
    done: set[str] = set()
    for item, value in existing:
        name = str(value.get("name", ""))
        if not name.startswith(OWNED_PREFIX):
            continue
        if name in wanted and name not in done:
            done.add(name)
            if value != wanted[name]:
                edits.append(_Edit(item.start, item.end, _item_text(wanted[name], item.prefix, nl)))
                changes.append(f"replaced {what} {name}")
        else:
            edits.append(_Edit(item.start, item.end, ""))
            changes.append(f"removed {what} {name}")
    items = [item for item, _ in existing]
    names = {id(item): str(value.get("name", "")) for item, value in existing}
    for order, (name, value) in enumerate(sorted(wanted.items())):
        if name not in done:
            edits.append(_insert_sorted(items, lambda i: names[id(i)], name,
                                        _item_text(value, prefix, nl), order))
            changes.append(f"added {what} {name} ({_describe(value)})")


def _describe(value: dict[str, Any]) -> str:
    if "hostPath" in value:
        return f"hostPath {value['hostPath']['path']}, {value['hostPath']['type']}"
    return f"at {value['mountPath']}, read-only"


# --- checking the result --------------------------------------------------------------------------


def _verify(before: _Manifest, new_text: str, flags: list[Flag],
            mounts: list[HostPathMount]) -> None:
    """Re-read the patched text: exactly the planned changes, or nothing is written."""
    try:
        after = _parse_manifest(new_text, before.source)
    except DexkitError as exc:
        raise _internal(before.source, exc.message) from None
    old, new = before.data, after.data
    i = before.container_index
    old_c, new_c = old["spec"]["containers"][i], new["spec"]["containers"][i]
    try:
        old_args, new_args = command_flags(old_c["command"]), command_flags(new_c["command"])
    except _NoValue:
        raise _internal(before.source, "a flag lost its value") from None
    if _foreign_flags(new_args) != _foreign_flags(old_args):
        raise _internal(before.source, "other flags changed")
    ours = [v for v in new_args if _owned_flag(_flag_name(v))]
    if sorted(ours) != sorted(map(str, flags)):
        raise _internal(before.source, "the flags did not come out as planned")
    wanted = wanted_mounts(mounts, old_c["volumeMounts"])
    checks = (("volumeMounts", old_c["volumeMounts"], new_c["volumeMounts"],
               [m.volume_mount() for m in wanted]),
              ("volumes", old["spec"]["volumes"], new["spec"]["volumes"],
               [m.volume() for m in wanted]))
    for key, old_list, new_list, owned in checks:
        if _foreign(new_list) != _foreign(old_list):
            raise _internal(before.source, f"other {key} changed")
        if sorted(map(repr, _owned(new_list))) != sorted(map(repr, owned)):
            raise _internal(before.source, f"dexkit's {key} did not come out as planned")
    if _strip(old, i) != _strip(new, i):
        raise _internal(before.source, "fields outside the flags and volumes changed")


def _foreign_flags(command: list[Any]) -> list[Any]:
    return [v for v in command if not _owned_flag(_flag_name(str(v)))]


def _is_owned(entry: Any) -> bool:
    return isinstance(entry, dict) and str(entry.get("name", "")).startswith(OWNED_PREFIX)


def _foreign(entries: list[Any]) -> list[Any]:
    return [e for e in entries if not _is_owned(e)]


def _owned(entries: list[Any]) -> list[Any]:
    return [e for e in entries if _is_owned(e)]


def _strip(data: dict[str, Any], index: int) -> dict[str, Any]:
    copy = yaml.safe_load(yaml.safe_dump(data))
    container = copy["spec"]["containers"][index]
    for key in ("command", "volumeMounts"):
        container.pop(key, None)
    copy["spec"].pop("volumes", None)
    return dict(copy)


def _internal(source: str, what: str) -> DexkitError:
    return DexkitError(f"the patch of {source} did not come out as planned ({what}); "
                       "nothing was written",
                       "report it as a bug, and add the flags and mounts by hand: see "
                       "'dexkit apiserver flags' and 'dexkit apiserver snippet'")
