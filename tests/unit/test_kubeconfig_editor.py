"""The kubeconfig editor changes no byte of what it does not own (issue 13, item 6).

Fixtures are shaped like the files real tools write (kubectl config, kind, ``aws eks
update-kubeconfig``, ``gcloud container clusters get-credentials``), plus the hostile cases:
comments, flow style, anchors and aliases, YAML-1.1-looking scalars, CRLF. Then a property:
for generated kubeconfigs, the edit leaves a common prefix and suffix covering everything but
dexkit's own stanza, and every other entry reads back identically (as strings, no YAML 1.1
resolution).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dexkit import kubeconfig as kc
from dexkit import kubeconfig_check as kc_check
from dexkit.errors import UsageError

USER = kc.exec_user(["--issuer", "https://dex.example.com:32000", "--client-id", "kubernetes"])
ENTRY = kc.Entry("users", "dexkit", USER)

KUBECTL = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://10.0.0.1:6443
  name: "1.10"
contexts:
- context:
    cluster: "1.10"
    namespace: "0755"
    user: admin
  name: admin@1.10
current-context: admin@1.10
kind: Config
preferences: {}
users:
- name: admin
  user:
    client-certificate-data: LS0tLS1CRUdJTg==
    client-key-data: LS0tLS1CRUdJTg==
"""

KIND = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://127.0.0.1:40173
  name: kind-kind
contexts:
- context:
    cluster: kind-kind
    user: kind-kind
  name: kind-kind
current-context: kind-kind
kind: Config
users:
- name: kind-kind
  user:
    client-certificate-data: LS0tLS1CRUdJTg==
    client-key-data: LS0tLS1CRUdJTg==
"""

EKS = """\
apiVersion: v1
clusters:
-   cluster:
        certificate-authority-data: LS0tLS1CRUdJTg==
        server: https://ABCDEF.gr7.eu-west-1.eks.amazonaws.com
    name: arn:aws:eks:eu-west-1:123456789012:cluster/prod
contexts:
-   context:
        cluster: arn:aws:eks:eu-west-1:123456789012:cluster/prod
        user: arn:aws:eks:eu-west-1:123456789012:cluster/prod
    name: arn:aws:eks:eu-west-1:123456789012:cluster/prod
current-context: arn:aws:eks:eu-west-1:123456789012:cluster/prod
kind: Config
preferences: {}
users:
-   name: arn:aws:eks:eu-west-1:123456789012:cluster/prod
    user:
        exec:
            apiVersion: client.authentication.k8s.io/v1beta1
            args:
            - --region
            - eu-west-1
            - eks
            - get-token
            - --cluster-name
            - prod
            - --output
            - json
            command: aws
"""

GKE = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://34.1.2.3
  name: gke_project_europe-west1_prod
contexts:
- context:
    cluster: gke_project_europe-west1_prod
    user: gke_project_europe-west1_prod
  name: gke_project_europe-west1_prod
current-context: gke_project_europe-west1_prod
kind: Config
preferences: {}
users:
- name: gke_project_europe-west1_prod
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: gke-gcloud-auth-plugin
      installHint: Install gke-gcloud-auth-plugin for use with kubectl by following
        https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin
      provideClusterInfo: true
"""

HAND = """\
# my clusters -- hand-written, keep my comments
apiVersion: v1
kind: Config
clusters:
  - name: 1.10        # a YAML 1.1 float, as text
    cluster: {server: 'https://old.example.com', insecure-skip-tls-verify: yes}
  - &base
    name: base
    cluster:
      server: https://base.example.com
users: [{name: flow-user, user: {token: abc}}]   # flow style
contexts:
  - name: one
    context:
      <<: {cluster: base}
      namespace: 0755
      user: flow-user
  # the next one is the old dexkit entry
current-context: one
"""


def _edit(text: str, *entries: kc.Entry, tmp_path: Path, use: str | None = None) -> str:
    path = tmp_path / "config"
    path.write_bytes(text.encode())
    plan = kc.plan([path], list(entries) or [ENTRY], use_context=use)
    kc.write(plan)
    return path.read_bytes().decode()


def _strings(text: str) -> Any:
    """The document with every scalar as its text (no YAML 1.1 resolution)."""
    return yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds no objects


def _kept(before: str, after: str) -> int:
    """Bytes of ``before`` that survive, in order, in ``after`` (all of them when the edit
    only inserted text)."""
    from difflib import SequenceMatcher

    matcher = SequenceMatcher(None, before, after, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks())


@pytest.mark.parametrize("text", [KUBECTL, KIND, EKS, GKE, HAND],
                         ids=["kubectl", "kind", "eks", "gke", "hand-written"])
def test_adding_dexkit_keeps_every_byte_of_the_file(tmp_path: Path, text: str) -> None:
    after = _edit(text, tmp_path=tmp_path)
    assert _kept(text, after) == len(text), "only an insertion: nothing else changed"
    data = yaml.safe_load(after)
    assert {"name": "dexkit", "user": USER} in data["users"]
    before_s, after_s = _strings(text), _strings(after)
    after_s["users"] = [u for u in after_s["users"] if u.get("name") != "dexkit"]
    assert after_s == before_s


@pytest.mark.parametrize("text", [KUBECTL, KIND, EKS, GKE, HAND],
                         ids=["kubectl", "kind", "eks", "gke", "hand-written"])
def test_updating_dexkit_changes_only_its_own_stanza(tmp_path: Path, text: str) -> None:
    first = _edit(text, tmp_path=tmp_path)
    other = kc.exec_user(["--issuer", "https://dex.example.com:32000", "--client-id", "other"])
    second = _edit(first, kc.Entry("users", "dexkit", other), tmp_path=tmp_path)
    old = yaml.safe_dump(USER)  # the stanza's own text is all that may differ
    assert _kept(first, second) >= len(first) - len(old) - 40
    assert _strings(second)["clusters"] == _strings(text)["clusters"]
    assert yaml.safe_load(second)["users"][-1] == {"name": "dexkit", "user": other}
    # the kubectl-shaped name "1.10" and namespace "0755" survive as text
    if text is KUBECTL:
        assert 'name: "1.10"' in second and 'namespace: "0755"' in second


def test_hand_written_file_keeps_comments_flow_anchors_and_yaml11_scalars(
        tmp_path: Path) -> None:
    after = _edit(HAND, kc.Entry("contexts", "dexkit", {"cluster": "base", "user": "dexkit"}),
                  ENTRY, tmp_path=tmp_path, use="dexkit")
    for kept in ("# my clusters -- hand-written, keep my comments", "name: 1.10        #",
                 "insecure-skip-tls-verify: yes}", "&base", "<<: {cluster: base}",
                 "namespace: 0755", "# flow style", "# the next one is the old dexkit entry"):
        assert kept in after, kept
    assert "users: [{name: flow-user, user: {token: abc}}, {" in after
    data = yaml.safe_load(after)
    assert data["current-context"] == "dexkit"
    assert data["contexts"][-1] == {"name": "dexkit",
                                    "context": {"cluster": "base", "user": "dexkit"}}


def test_crlf_files_stay_crlf(tmp_path: Path) -> None:
    text = KIND.replace("\n", "\r\n")
    after = _edit(text, tmp_path=tmp_path, use="kind-kind")
    assert "\n" not in after.replace("\r\n", "")
    assert _kept(text, after) == len(text)


def test_an_alias_to_the_owned_stanza_is_refused_and_nothing_is_written(
        tmp_path: Path) -> None:
    text = ("apiVersion: v1\nkind: Config\nusers:\n- &me\n  name: dexkit\n  user: {token: a}\n"
            "contexts: []\nextra: *me\n")
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(UsageError, match="anchor &me"):
        kc.plan([path], [ENTRY])
    assert path.read_text() == text


@pytest.mark.parametrize(("text", "message"), [
    ("a: 1\n---\nb: 2\n", "several YAML documents"),
    ("- just\n- a list\n", "top level is not a mapping"),
    ("users: {a: 1}\n", "'users' is not a list"),
    ("users: [\n", "is not valid YAML"),
])
def test_files_dexkit_cannot_edit_are_refused_unchanged(tmp_path: Path, text: str,
                                                        message: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        kc.plan([path], [ENTRY])
    assert path.read_text() == text


def test_binary_kubeconfig_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UsageError, match="not a text file"):
        kc.plan([path], [ENTRY])


@pytest.mark.parametrize("text", ["", "\n", "users:\n", "users: null\n", "users: []\n",
                                  "{}\n", "apiVersion: v1\nusers:\ncontexts: []\n"])
def test_empty_shapes_get_a_valid_entry(tmp_path: Path, text: str) -> None:
    after = _edit(text, tmp_path=tmp_path)
    assert yaml.safe_load(after)["users"] == [{"name": "dexkit", "user": USER}]


# --- property: generated kubeconfigs ------------------------------------------------------------

NAMES = st.sampled_from(["1.10", "0755", "yes", "null", "on", "dev", "prod", "~", "1e3",
                         "kind-kind", "arn:aws:eks:x", "a b", "dexkit-old"])
SCALARS = st.one_of(NAMES, st.text(alphabet="abcdefgh-_.:/ 0123456789", min_size=1,
                                   max_size=12))


@st.composite
def kubeconfigs(draw: st.DrawFn) -> str:
    """Kubeconfig text in a random mix of the styles tools and people write."""
    indent_seq = draw(st.sampled_from(["", "  ", "    "]))
    users = draw(st.lists(NAMES, max_size=4, unique=True))
    flow = draw(st.booleans())
    comment = draw(st.booleans())
    lines = ["# written by hand" if comment else "", "apiVersion: v1", "kind: Config"]
    for section in draw(st.permutations(["clusters", "users", "contexts"])):
        names = users if section == "users" else draw(st.lists(NAMES, max_size=3, unique=True))
        body = "server" if section == "clusters" else "token"
        if flow and section == "users":
            items = ", ".join(f"{{name: '{n}', user: {{token: '{draw(SCALARS)}'}}}}"
                              for n in names)
            lines.append(f"{section}: [{items}]")
            continue
        if not names:
            lines.append(f"{section}:" if draw(st.booleans()) else f"{section}: []")
            continue
        lines.append(f"{section}:")
        key = {"clusters": "cluster", "users": "user", "contexts": "context"}[section]
        for n in names:
            lines.append(f"{indent_seq}- name: '{n}'" + ("   # note" if comment else ""))
            lines.append(f"{indent_seq}  {key}:")
            lines.append(f"{indent_seq}    {body}: '{draw(SCALARS)}'")
    if draw(st.booleans()):
        lines.append(f"current-context: '{draw(NAMES)}'")
    return "\n".join(x for x in lines if x) + "\n"


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=kubeconfigs(), use=st.booleans())
def test_property_only_the_owned_bytes_change(tmp_path: Path, text: str, use: bool) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    before = _strings(text) or {}
    plan = kc.plan([path], [ENTRY], use_context="dexkit" if use else None)
    kc.write(plan)
    after_text = path.read_text()
    after = _strings(after_text)
    assert yaml.safe_load(after_text)["users"][-1] == {"name": "dexkit", "user": USER}
    for section in ("clusters", "contexts"):
        assert (after.get(section) or []) == (before.get(section) or [])
    assert [u for u in after["users"] if u.get("name") != "dexkit"] == (before.get("users")
                                                                        or [])
    if not use:
        assert after.get("current-context") == before.get("current-context")
    # insertions (and, with use, one scalar's replacement): the rest is byte for byte
    slack = len(str(before.get("current-context", ""))) + 2 if use else 0
    assert _kept(text, after_text) >= len(text) - slack


# --- property: the hostile shapes of issue 20 (N-01) --------------------------------------------

_STYLES = ["plain", "single", "double", "|", "|-", "|+", ">", ">-", ">+", "flow"]


@st.composite
def _value(draw: st.DrawFn, indent: str, nl: str) -> str:
    """A token value in one of YAML's styles; block scalars may carry blank lines after them."""
    style = draw(st.sampled_from(_STYLES))
    word = draw(st.sampled_from(["abc", "a.b.c", "1.10", "yes", "~", "x y"]))
    if style == "plain":
        return f"token: {word.replace(' ', '_')}"
    if style == "single":
        return f"token: '{word}'"
    if style == "double":
        return f'token: "{word}"'
    if style == "flow":
        return f"{{token: '{word}'}}"
    lines = draw(st.lists(st.sampled_from(["abc", "def ghi", "#not-a-comment"]),
                          min_size=1, max_size=3))
    lines[1:] = [draw(st.sampled_from(["", "  ", ""])) + line for line in lines[1:]]
    blank = draw(st.sampled_from(["", nl, nl + nl, nl + "   " + nl]))
    body = nl.join(f"{indent}  {line}" for line in lines)
    return f"token: {style}{nl}{body}{nl}{blank}".rstrip(nl) if not blank else \
        f"token: {style}{nl}{body}{nl}{blank}"[:-len(nl)]


@st.composite
def hostile_kubeconfigs(draw: st.DrawFn) -> tuple[str, set[str]]:
    """Kubeconfig text with block scalars, comments, flow lists, anchors and aliases, a
    document header, a top-level merge key, CRLF, no final newline; and the names it holds."""
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    out: list[str] = []
    names: dict[str, list[str]] = {}
    if draw(st.booleans()):
        out.append("# kubeconfig, hand-kept")
    out += draw(st.sampled_from(["", "", "---", "--- !!map", "%YAML 1.1\n---"])).split("\n")
    out += ["apiVersion: v1", "kind: Config"]
    if draw(st.integers(0, 5)) == 0:
        out += ["defaults: &defaults {preferences: {colors: true}}", "<<: *defaults"]
    for section in draw(st.permutations(["clusters", "users", "contexts", "preferences"])):
        if section == "preferences":
            if draw(st.booleans()):
                out.append("preferences: {}")
            continue
        shape = draw(st.sampled_from(["absent", "null", "empty", "flow", "block", "block"]))
        found = draw(st.lists(NAMES, max_size=3, unique=True)) if shape in ("flow", "block") \
            else []
        names[section] = found
        key = {"clusters": "cluster", "users": "user", "contexts": "context"}[section]
        if shape == "absent":
            continue
        if shape in ("null", "empty"):
            out.append(f"{section}:" if shape == "null" else f"{section}: []")
            continue
        if shape == "flow":
            items = ", ".join(f"{{name: '{n}', {key}: {{token: t}}}}" for n in found)
            out.append(f"{section}: [{items}]" + draw(st.sampled_from(["", "  # flow"])))
            continue
        out.append(f"{section}:")
        if not found:
            out[-1] = f"{section}: []"
        seq = draw(st.sampled_from(["", "  ", "    "]))
        anchor = f"{section}-body" if draw(st.booleans()) else None
        for j, n in enumerate(found):
            out.append(f"{seq}- name: '{n}'" + draw(st.sampled_from(["", "   # note"])))
            mark = f" &{anchor}" if anchor and j == 0 else ""
            value = draw(_value(seq + "    ", nl))
            if anchor and j > 0 and draw(st.booleans()):
                out.append(f"{seq}  {key}: *{anchor}")  # an alias, maybe the section's last
            elif value.startswith("{"):
                out.append(f"{seq}  {key}:{mark} {value}")
            else:
                out.append(f"{seq}  {key}:{mark}")
                out.append(f"{seq}    {value}")
            out.append(draw(st.sampled_from(["", "# between", f"{seq}  # indented note"])))
    if draw(st.booleans()):
        out.append(f"current-context: '{draw(NAMES)}'")
    if draw(st.booleans()):
        out.append("# the end")
    text = nl.join(line for line in out if line)
    return text + (nl if draw(st.booleans()) else ""), {n for v in names.values() for n in v}


def _ends_in_a_kept_line_break(text: str) -> bool:
    """The file ends in a block scalar (not strip-chomped) with no line break after it: any
    text after it gives that value a line break, so an edit there must be refused."""
    if text.endswith(("\n", "\r")):
        return False
    tail = text.rsplit("token: ", 1)[-1]
    return tail[:1] in "|>" and tail[1:2] != "-" and "\n" in tail


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=hostile_kubeconfigs(), user=NAMES, use=st.booleans(), with_context=st.booleans())
def test_property_hostile_shapes_are_edited_exactly_or_refused_unchanged(
        tmp_path: Path, case: tuple[str, set[str]], user: str, use: bool,
        with_context: bool) -> None:
    text, _ = case
    path = tmp_path / "config"
    path.write_bytes(text.encode())
    entries = [kc.Entry("users", user, USER)]
    if with_context:
        entries += [kc.Entry("clusters", "dx", {"server": "https://127.0.0.1:6443"}),
                    kc.Entry("contexts", "dx", {"cluster": "dx", "user": user})]
    context = "dx" if use and with_context else None
    try:
        plan = kc.plan([path], entries, use_context=context)
    except (UsageError, kc_check.EditMismatch) as exc:
        assert path.read_bytes() == text.encode()
        # the refusals a valid file of these shapes may get: a value that would gain a line
        # break (see _ends_in_a_kept_line_break), dexkit's entry is the anchor an alias uses,
        # a section that a top-level merge key fills
        assert (isinstance(exc, kc_check.EditMismatch) and _ends_in_a_kept_line_break(text)) \
            or "anchor &" in exc.message or ("<<" in exc.message and "<<:" in text), \
            (exc.message, text)
        return
    kc.write(plan)
    after = path.read_bytes().decode()
    old, new, typed = _strings(text) or {}, _strings(after), yaml.safe_load(after)
    for entry in entries:
        mine = [i for i in typed[entry.section] if i.get("name") == entry.name]
        assert mine == [entry.stanza], after
    for section in ("users", "clusters", "contexts"):
        wanted = {e.name for e in entries if e.section == section}
        if not wanted:
            assert new.get(section) == old.get(section)
            continue
        rest = [i for i in new[section] if i.get("name") not in wanted]
        assert rest == [i for i in (old.get(section) or []) if i.get("name") not in wanted]
    for key in {*old, *new} - {"users", "clusters", "contexts", "current-context"}:
        assert new.get(key) == old.get(key), key
    if context is not None:
        assert typed["current-context"] == context
    else:
        assert new.get("current-context") == old.get("current-context")
    if "\r\n" in text:
        assert "\n" not in after.replace("\r\n", "")  # line ends kept
