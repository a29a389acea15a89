"""``dexkit apiserver config --merge FILE``: dexkit's jwt entry into an existing
AuthenticationConfiguration that has other issuers.

Rules, in the order they act:

- The file must be an AuthenticationConfiguration (``apiserver.config.k8s.io/*``) whose
  ``jwt`` is a block list (or absent); anything else is refused, nothing is guessed.
- dexkit's entry is the one whose ``issuer.url`` is the configured issuer, byte for byte. It is
  replaced by the rendered one; without such an entry, the rendered one is appended after the
  last entry (or under a new ``jwt:`` key at the end of the file).
- Every other byte of the file stays as it was: the other issuers, their comments, the
  ``anonymous`` section, the line endings (CRLF stays CRLF) and the file's own apiVersion.
- The result is parsed again and compared with what was planned: the other entries and keys
  equal to before, dexkit's equal to the rendered one. Otherwise nothing is returned.
- Pure: text in, text out; the command decides where it goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import yaml

from dexkit.errors import DexkitError, UsageError
from dexkit.render.apiserver import (
    AUTHN_KIND,
    authentication_api_version,
    render_dex_jwt_entry,
)
from dexkit.render.yamltext import last_end, line_after, line_start

if TYPE_CHECKING:
    from dexkit.config import Config

MergeAction = Literal["added", "updated", "unchanged"]


@dataclass(frozen=True)
class MergeResult:
    text: str
    action: MergeAction
    other_issuers: tuple[str, ...]
    notes: tuple[str, ...] = ()


def _refuse(source: str, why: str) -> UsageError:
    return UsageError(f"{source}: {why}",
                      "pass an AuthenticationConfiguration file (kind AuthenticationConfiguration, "
                      "a block-style jwt list), or start from 'dexkit apiserver config'")


def _entry_text(config: Config, ca_pem: str, indent: int, newline: str) -> str:
    """The rendered entry without its leading comment, shifted right by ``indent``."""
    lines = render_dex_jwt_entry(config, ca_pem).splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    pad = " " * indent
    return "".join((pad + line if line else line) + newline for line in lines)


def merge_authentication_config(text: str, config: Config, ca_pem: str, *,
                                source: str = "authentication-config.yaml") -> MergeResult:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _refuse(source, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise _refuse(source, "it is not a YAML mapping")
    api_version = str(data.get("apiVersion", ""))
    if data.get("kind") != AUTHN_KIND or not api_version.startswith("apiserver.config.k8s.io/"):
        raise _refuse(source, f"it is a {data.get('kind')!s} ({api_version or 'no apiVersion'}),"
                      f" not an {AUTHN_KIND}")
    newline = "\r\n" if "\r\n" in text else "\n"
    entries = data.get("jwt") or []
    jwt_node = next((v for k, v in root.value if getattr(k, "value", None) == "jwt"), None)
    block_list = isinstance(jwt_node, yaml.SequenceNode) and not jwt_node.flow_style
    empty = isinstance(jwt_node, yaml.ScalarNode) and data.get("jwt") is None
    if jwt_node is not None and not (block_list or empty):
        raise _refuse(source, "jwt is not a block-style list")
    if not isinstance(entries, list):
        raise _refuse(source, "jwt is not a list")
    urls = [_issuer_url(e) for e in entries]
    if "" in urls:
        at = urls.index("")
        line = (f" (line {jwt_node.value[at].start_mark.line + 1})"
                if isinstance(jwt_node, yaml.SequenceNode) else "")
        raise _refuse(source, f"jwt entry {at + 1}{line} has no issuer.url (the API server "
                      "would refuse the file as it is)")
    ours = [i for i, url in enumerate(urls) if url == config.issuer]
    if len(ours) > 1:
        raise _refuse(source, f"it has {len(ours)} jwt entries for {config.issuer}")
    if ours and isinstance(jwt_node, yaml.SequenceNode) and _used_elsewhere(
            root, jwt_node.value[ours[0]]):
        raise _refuse(source, f"dexkit's jwt entry (line "
                      f"{jwt_node.value[ours[0]].start_mark.line + 1}) holds a YAML anchor "
                      "that another part of the file refers to (an alias): replacing the entry "
                      "would break that part")
    notes = []
    wanted = authentication_api_version(config.minor)
    if api_version != wanted:
        notes.append(f"{source} is {api_version}; dexkit would render {wanted} for Kubernetes "
                     f"{config.kubernetes_version}: the file's apiVersion is kept")
    if config.api_server.extra_jwt:
        notes.append("apiServer.extraJWT is not merged: only Dex's entry is dexkit's to edit")
    new_text, action = _edit(text, jwt_node, ours[0] if ours else None, config, ca_pem,
                             newline, source)
    _verify(data, new_text, config, ca_pem, source)
    others = tuple(u for u in urls if u != config.issuer)
    if new_text == text:
        action = "unchanged"
    return MergeResult(new_text, action, others, tuple(notes))


def _issuer_url(entry: Any) -> str:
    """An entry's ``issuer.url``, or "" where the entry is not shaped like one."""
    issuer = entry.get("issuer") if isinstance(entry, dict) else None
    url = issuer.get("url") if isinstance(issuer, dict) else None
    return "" if url is None else str(url)


def _used_elsewhere(root: yaml.Node, entry: yaml.Node) -> bool:
    """Whether a node of ``entry`` (an anchor) also appears outside it (through an alias)."""
    inside: set[int] = set()
    _walk(entry, inside)
    outside: set[int] = set()
    _walk(root, outside, skip=entry)
    return bool(inside & outside)


def _walk(node: yaml.Node, seen: set[int], skip: yaml.Node | None = None) -> None:
    stack = [node]
    while stack:
        here = stack.pop()
        if here is skip or id(here) in seen:
            continue
        seen.add(id(here))
        if isinstance(here, yaml.SequenceNode):
            stack.extend(here.value)
        elif isinstance(here, yaml.MappingNode):
            stack.extend(item for pair in here.value for item in pair)


def _edit(text: str, jwt_node: yaml.Node | None, index: int | None, config: Config, ca_pem: str,
          newline: str, source: str) -> tuple[str, MergeAction]:
    if not isinstance(jwt_node, yaml.SequenceNode) or not jwt_node.value:
        # No jwt key, or "jwt:" with nothing: a jwt block at the end of the file.
        body = text
        if jwt_node is not None:
            body = _drop_empty_jwt(text, jwt_node)
        if body and not body.endswith("\n"):
            body += newline
        return body + "jwt:" + newline + _entry_text(config, ca_pem, 0, newline), "added"
    items = jwt_node.value
    spans = []
    for node in items:
        begin = int(node.start_mark.index)
        start = line_start(text, begin)
        prefix = text[start:begin]
        if not re.fullmatch(r"[ ]*-[ ]+", prefix):
            raise _refuse(source, f"the jwt entry on line {node.start_mark.line + 1} does not "
                          "start its own line with '- '")
        spans.append((start, line_after(text, last_end(node) - 1), prefix.index("-")))
    if index is not None:
        start, end, indent = spans[index]
        return text[:start] + _entry_text(config, ca_pem, indent, newline) + text[end:], \
            "updated"
    start, end, indent = spans[-1]
    at = end
    lead = "" if text[:at].endswith("\n") else newline
    return text[:at] + lead + _entry_text(config, ca_pem, indent, newline) + text[at:], "added"


def _drop_empty_jwt(text: str, node: yaml.Node) -> str:
    """Remove a ``jwt:`` line whose value is empty (null)."""
    begin = line_start(text, int(node.start_mark.index))
    return text[:begin] + text[line_after(text, int(node.start_mark.index)):]


def _verify(before: dict[str, Any], new_text: str, config: Config, ca_pem: str,
            source: str) -> None:
    after = yaml.safe_load(new_text)
    wanted = yaml.safe_load(render_dex_jwt_entry(config, ca_pem))[0]

    def others(data: dict[str, Any]) -> list[Any]:
        return [e for e in data.get("jwt") or [] if _issuer_url(e) != config.issuer]

    ours = [e for e in after.get("jwt") or [] if e not in others(after)]
    rest_before = {k: v for k, v in before.items() if k != "jwt"}
    rest_after = {k: v for k, v in after.items() if k != "jwt"}
    if others(after) != others(before) or ours != [wanted] or rest_after != rest_before:
        raise DexkitError(f"the merge into {source} did not come out as planned; nothing was "
                          "written", "report it as a bug, and add the entry by hand from "
                          "'dexkit apiserver config'")
