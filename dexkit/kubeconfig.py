"""Adding dexkit's exec-credential user (and a context, and a cluster) to kubeconfig files.

kubectl's rules for where a change goes, with several files in KUBECONFIG:
- a stanza (user, cluster, context) that exists is modified in the first file that defines it;
- a new stanza is written to the first file that exists; if none exists, the last one is made;
- ``current-context`` is left alone unless asked.

The edit is made in the text, not by re-serialising the document: the file is parsed only to
find where things are (PyYAML's node marks), and only the bytes of the stanzas dexkit owns
(the entries it writes, ``current-context`` when asked) are replaced, or new ones appended at
the end of their list. Everything else keeps its bytes: other entries, their order, comments,
flow style, anchors, quoting, line endings, and scalars that a YAML 1.1 re-serialisation would
change (a cluster named ``1.10`` stays ``1.10``, not ``1.1``; ``namespace: 0755`` stays). An edit
dexkit cannot make without touching what it does not own (its stanza is the target of an
alias used elsewhere, a section that is an alias, several documents, a top-level key written
twice) is refused, naming why. After every edit the new text is parsed again and compared with
what was asked (:mod:`dexkit.kubeconfig_check`): dexkit's entries exactly as asked, every other
entry and key unchanged, or nothing is written. All the files that change are written in one
transaction (all or none), each atomically, through a symbolic link to the file it points to
(as kubectl does), after a backup beside that file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dexkit import files
from dexkit.errors import UsageError
from dexkit.kubeconfig_check import check_edit, mismatch
from dexkit.oidc import options  # imports nothing itself

DEFAULT = Path.home() / ".kube" / "config"
SECTIONS = {"users": "user", "clusters": "cluster", "contexts": "context"}


@dataclass(frozen=True)
class Entry:
    section: str  # users | clusters | contexts
    name: str
    body: dict[str, Any]

    @property
    def stanza(self) -> dict[str, Any]:
        return {"name": self.name, SECTIONS[self.section]: self.body}


@dataclass
class Plan:
    """What will be written where: path -> new text, plus which entries changed."""

    texts: dict[Path, str] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    current_context: str | None = None


def kubeconfig_paths(explicit: Path | None) -> list[Path]:
    if explicit is not None:
        return [explicit]
    env = os.environ.get("KUBECONFIG")
    if env:
        # kubectl skips empty entries; a KUBECONFIG of nothing but separators names no file
        paths = [Path(p) for p in env.split(os.pathsep) if p]
        if not paths:
            raise UsageError(f"KUBECONFIG ({env!r}) names no file",
                             "set KUBECONFIG to kubeconfig paths separated by "
                             f"'{os.pathsep}', unset it for {DEFAULT}, or pass --kubeconfig")
        return paths
    return [DEFAULT]


def _read_text(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        raw = files.read_limited(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}",
                         "check the kubeconfig's path and permissions") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text file (not UTF-8)",
                         "pass --kubeconfig a kubeconfig file; dexkit never overwrites a file "
                         "it cannot read") from None


def load(path: Path) -> dict[str, Any]:
    """The document in ``path`` as data (for reading; edits go through :func:`plan`)."""
    text = _read_text(path)
    if text is None:
        return {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [],
                "users": [], "contexts": [], "current-context": ""}
    _, data = _parse(path, text)
    return data


def _parse(path: Path, text: str) -> tuple[_Document | None, dict[str, Any]]:
    """The composed root (None for an empty file) and the data, or a usage error."""
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
        # (not constructed from ``root``: merge keys would rewrite its nodes in place)
        data = yaml.safe_load(text) if root is not None else None
    except yaml.composer.ComposerError as exc:
        if "expected a single document" in str(exc):
            raise UsageError(f"{path} holds several YAML documents",
                             "a kubeconfig is one document; split the file") from None
        raise _yaml_error(path, exc) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    except RecursionError:
        raise UsageError(f"{path} is nested too deeply to be a kubeconfig",
                         "pass --kubeconfig a kubeconfig file") from None
    if root is None or data is None:
        return None, {}
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise UsageError(f"{path} is not a kubeconfig (its top level is not a mapping)",
                         "pass --kubeconfig a kubeconfig file")
    return _Document(text, root, loader.anchored, loader.alias_uses), data


def _yaml_error(path: Path, exc: yaml.YAMLError) -> UsageError:
    mark = getattr(exc, "problem_mark", None)
    where = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return UsageError(f"{path}{where} is not valid YAML: {problem}",
                      "fix or move the kubeconfig; dexkit never overwrites a file it cannot "
                      "read")


def plan(paths: Sequence[Path], entries: Sequence[Entry],
         use_context: str | None = None) -> Plan:
    """The new text of every file that changes; each checked against what was asked."""
    if not paths:
        raise UsageError("no kubeconfig file to write to", "pass --kubeconfig FILE")
    originals = {p: _read_text(p) for p in paths}
    texts = dict(originals)
    parsed = {p: _parse(p, t) if t is not None else (None, {}) for p, t in texts.items()}
    datas = {p: data for p, (_, data) in parsed.items()}
    result = Plan()
    asked: dict[Path, dict[str, dict[str, dict[str, Any]]]] = {}
    context_owner: Path | None = None
    for entry in entries:
        owner = _owner(datas, entry) or _first_existing(paths)
        current = _find(datas[owner], entry)
        if current == entry.stanza:
            continue
        verb = "added" if current is None else "updated"
        new_text = set_entry(owner, texts[owner], entry)
        texts[owner], datas[owner] = new_text, _reparse(owner, new_text)
        result.texts[owner] = new_text
        asked.setdefault(owner, {}).setdefault(entry.section, {})[entry.name] = entry.stanza
        where = "to" if verb == "added" else "in"
        result.changes.append(f"{verb} {SECTIONS[entry.section]} '{entry.name}' {where} {owner}")
    if use_context is not None:
        # kubectl writes current-context to the first file that sets one, else the first file.
        owner = next((p for p in paths if datas[p].get("current-context")), paths[0])
        if datas[owner].get("current-context") != use_context:
            new_text = set_current_context(owner, texts[owner], use_context)
            texts[owner], datas[owner] = new_text, _reparse(owner, new_text)
            result.texts[owner] = new_text
            context_owner = owner
            result.changes.append(f"current-context set to '{use_context}' in {owner}")
        result.current_context = use_context
    for path, text in result.texts.items():
        # a file with no document in it becomes a new kubeconfig, whose keys are dexkit's
        before = originals[path] if parsed[path][0] is not None else render([])
        check_edit(path, before, text, asked.get(path, {}),
                   use_context if path == context_owner else None)
    return result


def _reparse(path: Path, text: str) -> dict[str, Any]:
    """The data of dexkit's own edit: text it cannot read again is its failure, not the
    user's file's."""
    try:
        return _parse(path, text)[1]
    except UsageError as exc:
        raise mismatch(path, exc.message.replace(str(path), "the edited text", 1)) from None


def _find(data: dict[str, Any], entry: Entry) -> dict[str, Any] | None:
    items = data.get(entry.section)
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("name") == entry.name:
            return item
    return None


def _owner(datas: dict[Path, dict[str, Any]], entry: Entry) -> Path | None:
    return next((p for p, d in datas.items() if _find(d, entry) is not None), None)


def _first_existing(paths: Sequence[Path]) -> Path:
    return next((p for p in paths if p.exists()), paths[-1])


def write(result: Plan) -> list[Path]:
    """Write every changed file in one transaction (all or none): atomically, through a
    symbolic link to the file it points to, keeping that file's mode (0600 for a new one),
    after a backup beside it. Returns the backups."""
    tx = files.Transaction()
    now = dt.datetime.now(dt.UTC)
    stems = [tx.edit(path, text, new_mode=files.PRIVATE, now=now)
             for path, text in result.texts.items()]
    applied = tx.apply()
    return [applied.backup(stem) for stem in stems if stem is not None]


def render(entries: Sequence[Entry], current_context: str | None = None) -> str:
    """A complete kubeconfig holding just ``entries`` (for ``-o -`` and new files)."""
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    for section in ("clusters", "users", "contexts"):
        doc[section] = [e.stanza for e in entries if e.section == section]
    doc["current-context"] = current_context or ""
    return _dump(doc)


# --- the text edit ------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Composes nodes and remembers which anchors exist and where aliases use them."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.anchored: dict[str, yaml.Node] = {}
        self.alias_uses: list[tuple[str, int]] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            at = event.start_mark.index if event.start_mark is not None else -1
            self.alias_uses.append((str(event.anchor), int(at)))
        elif getattr(event, "anchor", None) and node is not None:
            self.anchored[str(event.anchor)] = node
        return node


@dataclass
class _Document:
    text: str
    root: yaml.MappingNode
    anchored: dict[str, yaml.Node]
    alias_uses: list[tuple[str, int]]

    def value(self, key: str) -> tuple[yaml.Node, yaml.Node] | None:
        for k, v in self.root.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k, v
        return None

    def refuse_duplicate_keys(self, path: Path) -> None:
        """A top-level key written twice: YAML readers (kubectl too) keep the last one, so an
        edit of the first would change nothing that counts, and one of the last would leave
        the first to mislead whoever reads the file."""
        seen: dict[str, int] = {}
        for key, _ in self.root.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            line = key.start_mark.line + 1
            if key.value in seen:
                raise UsageError(
                    f"{path}:{line}: the key '{key.value}' appears twice (first on line "
                    f"{seen[key.value]}); kubectl reads only the last one",
                    f"merge the two '{key.value}' into one and run it again")
            seen[key.value] = line

    def check_untouched(self, path: Path, start: int, end: int, what: str) -> None:
        """Refuse an edit of [start, end) that would change what an alias elsewhere means."""
        for anchor, node in self.anchored.items():
            a, b = node.start_mark.index, node.end_mark.index
            if a <= end and start <= b and any(
                    name == anchor and not start <= at < end for name, at in self.alias_uses):
                raise UsageError(
                    f"{path}: {what} is inside the YAML anchor &{anchor}, which an alias uses "
                    "elsewhere; editing it would change that entry too",
                    "write dexkit's entry to another file (--kubeconfig), or expand the alias")


def _newline(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _dump(data: Any) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=2**30,
                              allow_unicode=True))


def _block(data: Any, indent: int, newline: str) -> str:
    """``data`` as block YAML whose lines after the first are indented by ``indent``."""
    lines = _dump(data).rstrip("\n").split("\n")
    return (newline + " " * indent).join(lines)


def _flow(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)  # JSON is YAML flow style


def _content_end(doc: _Document, node: yaml.Node, shown_at: int = -1) -> int:
    """Where a node's own text ends: a block collection's end mark lies after the comments
    and blank lines that follow it, which belong to whatever comes next; a block scalar's
    (``|``, ``>``) lies after its last line break (and after the blank lines that ``|+``
    keeps), so its text ends before that break. A node written as an alias (``*name``, its
    text after ``shown_at``) is the anchored node, whose marks lie elsewhere: its text is the
    alias."""
    text = doc.text
    if node.start_mark.index < shown_at:
        uses = [at + 1 + len(name) for name, at in doc.alias_uses if at >= shown_at]
        return min(uses) if uses else shown_at
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        key, value = node.value[-1]
        return _content_end(doc, value, int(key.end_mark.index))
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        before = node.value[-2].start_mark.index + 1 if len(node.value) > 1 else \
            node.start_mark.index
        return _content_end(doc, node.value[-1], int(before))
    end = int(node.end_mark.index)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">") and \
            end > 0 and text[end - 1] == "\n":
        end -= 2 if end > 1 and text[end - 2] == "\r" else 1
    return end


def _line_end(text: str, index: int) -> int:
    """The end of the line ``index`` is on (before its line break): what follows a value on
    its line (a comment) stays with it."""
    end = text.find("\n", index)
    if end == -1:
        return len(text)
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _editable(path: Path, text: str) -> _Document | None:
    doc, _ = _parse(path, text)
    if doc is not None:
        doc.refuse_duplicate_keys(path)
    return doc


def _fresh(text: str, document: str) -> str:
    """A new ``document`` for a file without one, after the comments it held."""
    held = [line for line in text.splitlines() if line.strip()]
    if not held or not all(line.lstrip().startswith("#") for line in held):
        return document
    nl = _newline(text)
    return text.rstrip("\r\n") + nl + document.replace("\n", nl)


def set_entry(path: Path, text: str | None, entry: Entry) -> str:
    """``text`` with ``entry`` set (replaced in place, or appended to its section)."""
    if text is None or not text.strip():
        return render([entry])
    doc = _editable(path, text)
    if doc is None:
        return _fresh(text, render([entry]))
    nl = _newline(text)
    found = doc.value(entry.section)
    if found is None:
        return _append_root_key(doc, entry.section, [entry.stanza])
    key, items = found
    if isinstance(items, yaml.ScalarNode) and items.tag == "tag:yaml.org,2002:null":
        start, end = items.start_mark.index, items.end_mark.index
        if start == end:  # "users:" with nothing after it: write right after the colon
            start = end = text.index(":", key.end_mark.index) + 1
        doc.check_untouched(path, start, end, entry.section)
        column = key.start_mark.column
        return _splice(text, start, end,
                       nl + " " * column + "- " + _block(entry.stanza, column + 2, nl))
    if not isinstance(items, yaml.SequenceNode):
        raise UsageError(f"{path}: '{entry.section}' is not a list", "fix the kubeconfig, or "
                         "pass --kubeconfig another file")
    for item in items.value:
        if isinstance(item, yaml.MappingNode) and any(
                isinstance(k, yaml.ScalarNode) and k.value == "name"
                and isinstance(v, yaml.ScalarNode) and v.value == entry.name
                for k, v in item.value):
            start, end = item.start_mark.index, _content_end(doc, item)
            doc.check_untouched(path, start, end, f"{SECTIONS[entry.section]} '{entry.name}'")
            if item.flow_style or items.flow_style:
                return _splice(text, start, end, _flow(entry.stanza))
            return _splice(text, start, end,
                           _block(entry.stanza, item.start_mark.column, nl))
    doc.check_untouched(path, items.end_mark.index, items.end_mark.index, entry.section)
    if items.flow_style:
        close = text.rindex("]", 0, items.end_mark.index)
        lead = ", " if items.value else ""
        return _splice(text, close, close, lead + _flow(entry.stanza))
    last = items.value[-1]
    at = _line_end(text, _content_end(doc, last))
    dash = text.rfind("-", _line_start(text, last.start_mark.index), last.start_mark.index)
    column = dash - _line_start(text, dash)
    return _splice(text, at, at,
                   nl + " " * column + "- " + _block(entry.stanza, column + 2, nl))


def set_current_context(path: Path, text: str | None, name: str) -> str:
    if text is None or not text.strip():
        return render([], current_context=name)
    doc = _editable(path, text)
    if doc is None:
        return _fresh(text, render([], current_context=name))
    found = doc.value("current-context")
    if found is None:
        return _append_root_key(doc, "current-context", name)
    _, value = found
    if not isinstance(value, yaml.ScalarNode):
        raise UsageError(f"{path}: 'current-context' is not a name", "fix the kubeconfig")
    doc.check_untouched(path, value.start_mark.index, value.end_mark.index, "current-context")
    return _splice(text, value.start_mark.index, value.end_mark.index, _flow(name)
                   if doc.root.flow_style else _dump(name).split("\n")[0])


def _append_root_key(doc: _Document, key: str, value: Any) -> str:
    text, nl = doc.text, _newline(doc.text)
    if doc.root.flow_style:
        close = text.rindex("}", 0, doc.root.end_mark.index)
        lead = ", " if doc.root.value else ""
        return _splice(text, close, close, f"{lead}{_flow(key)}: {_flow(value)}")
    at = _line_end(text, _content_end(doc, doc.root))
    # the keys' column ('--- !!map' puts the root's own mark after the tag)
    column = doc.root.value[0][0].start_mark.column if doc.root.value else \
        doc.root.start_mark.column
    body = _block({key: value}, column, nl)
    return _splice(text, at, at, nl + " " * column + body)


def _splice(text: str, start: int, end: int, new: str) -> str:
    result = text[:start] + new + text[end:]
    if not result.endswith(("\n", "\r")):
        result += _newline(text)
    return result


# --- dexkit's exec user -------------------------------------------------------------------------

INSTALL_HINT = ("dexkit is the credential plugin of this user (it logs in to Dex): install it "
                "with 'pipx install dexkit' (or 'pip install dexkit') so that 'dexkit' is on "
                "PATH")


def refuse_secrets(token_args: Sequence[str]) -> None:
    """Refuse ``dexkit token`` options whose value is a secret: a kubeconfig is copied,
    printed (``-o -``), committed and shown by ``kubectl config view --raw``, and its exec
    args are visible to every user of the machine (ps) each time kubectl runs the plugin.

    Every spelling counts: ``--password X``, ``--password=X`` and ``'--password X'`` as one
    item (a common mistake in hand-written ``args:``). The value is never repeated.
    """

    for arg in token_args:
        name = arg.partition("=")[0].split(maxsplit=1)[0] if arg.strip() else ""
        dest = options.FLAGS.get(name, ("", ""))[0]
        if dest == "password":
            raise UsageError(
                f"{name} would put the password into the kubeconfig (in clear text, and on "
                "stdout with -o -)", "leave it out: when kubectl runs 'dexkit token' it finds "
                "the password in DEXKIT_PASSWORD (or the variable --password-env NAME names), "
                "in --password-file FILE, or in the project's .dexkit/passwords/<username>")
        if dest == "client_secret":
            raise UsageError(
                f"{name} would put the client secret into the kubeconfig (in clear text, and "
                "on stdout with -o -)", "pass --client-secret-env NAME instead: 'dexkit token' "
                "reads the secret from that environment variable when kubectl runs it")


def exec_user(token_args: Sequence[str], *, command: str = "dexkit") -> dict[str, Any]:
    """The user stanza that makes kubectl run ``dexkit token ARGS`` (client.authentication/v1).

    ``interactiveMode: IfAvailable``: kubectl hands over the terminal when it has one (the
    keyboard flow, a password prompt); the browser and device flows need none. A secret among
    ``token_args`` is refused (:func:`refuse_secrets`).
    """
    refuse_secrets(token_args)
    return {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": command,
        "args": ["token", *token_args],
        "interactiveMode": "IfAvailable",
        "provideClusterInfo": False,
        "installHint": INSTALL_HINT,
    }}


# --- the entries `dexkit kubeconfig` writes -----------------------------------------------------


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    server: str
    ca_data: str | None = None  # base64 PEM, inline: a kubeconfig that travels


@dataclass(frozen=True)
class UserRequest:
    """A kubeconfig user that runs ``dexkit token ARGS``, and optionally its cluster and
    context."""

    user: str
    token_args: tuple[str, ...]
    command: str = "dexkit"
    cluster: ClusterSpec | None = None
    cluster_name: str | None = None  # an existing cluster entry the context points at
    context: str | None = None


def entries_for(req: UserRequest) -> list[Entry]:
    """The stanzas for ``req``: user, then cluster, then context (kubectl's order)."""
    entries = [Entry("users", req.user, exec_user(req.token_args, command=req.command))]
    cluster = req.cluster.name if req.cluster is not None else req.cluster_name
    if req.cluster is not None:
        body: dict[str, Any] = {"server": req.cluster.server}
        if req.cluster.ca_data:
            body["certificate-authority-data"] = req.cluster.ca_data
        entries.append(Entry("clusters", req.cluster.name, body))
    if req.context is not None:
        if cluster is None:
            raise UsageError("--context needs --cluster", "name the cluster the context uses")
        entries.append(Entry("contexts", req.context, {"cluster": cluster, "user": req.user}))
    return entries


def plugin_command(absolute: bool) -> tuple[str, str | None]:
    """How kubectl starts dexkit: by name from PATH (portable: the kubeconfig works wherever
    dexkit is installed), or this installation's script by absolute path; and a warning
    when the name would not find this installation."""

    here = Path(sys.argv[0])
    mine = here.resolve() if here.name in ("dexkit", "get-token") and here.exists() else None
    if absolute:
        found = mine or (Path(p) if (p := shutil.which("dexkit")) else None)
        if found is None:
            raise UsageError("cannot tell where this dexkit is installed",
                             "run it as 'dexkit' (the installed command), not through python")
        return str(found), None
    on_path = shutil.which("dexkit")
    if on_path is None:
        return "dexkit", ("'dexkit' is not on PATH, so kubectl will not find the plugin; "
                          "install it (pipx install dexkit) or pass --absolute-command")
    if mine is not None and Path(on_path).resolve() != mine:
        return "dexkit", (f"kubectl will run the dexkit on PATH ({on_path}), not this one "
                          f"({mine}); pass --absolute-command to pin this one")
    return "dexkit", None
