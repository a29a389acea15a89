"""Kubeconfig edits keep everything else: other entries, their order, untouched files' bytes."""

from __future__ import annotations

from pathlib import Path

import yaml

from dexkit import kubeconfig as kc

RICH = """\
apiVersion: v1
kind: Config
preferences:
  colors: true
clusters:
- name: prod
  cluster:
    server: https://prod.example.com:6443
    certificate-authority-data: QUJD
    extensions:
    - name: client.authentication.k8s.io/exec
      extension:
        audience: prod
- name: staging
  cluster:
    server: https://staging.example.com:6443
users:
- name: alice
  user:
    token: not-a-real-token
- name: dexkit
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: old-dexkit
      interactiveMode: Never
contexts:
- name: prod
  context:
    cluster: prod
    user: alice
    namespace: web
current-context: prod
extensions:
- name: some-tool
  extension:
    keep: me
"""

USER = kc.exec_user(["--issuer", "https://127.0.0.1:32000", "--client-id", "kubernetes",
                     "--ca-file", "/p/ssl/ca.pem", "--scope", "openid", "--scope", "groups"])


def test_exec_user_shape() -> None:
    exec_ = USER["exec"]
    assert exec_["apiVersion"] == "client.authentication.k8s.io/v1"
    assert exec_["interactiveMode"] == "IfAvailable"
    assert exec_["args"][:5] == ["token", "--issuer", "https://127.0.0.1:32000", "--client-id",
                                 "kubernetes"]
    assert "--password" not in exec_["args"]


def test_update_keeps_everything_else(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(RICH)
    before = yaml.safe_load(RICH)
    plan = kc.plan([path], [kc.Entry("users", "dexkit", USER),
                            kc.Entry("contexts", "sandbox", {"cluster": "staging",
                                                             "user": "dexkit"})])
    backups = kc.write(plan)
    after = yaml.safe_load(path.read_text())
    assert after["users"][1] == {"name": "dexkit", "user": USER}
    assert after["users"][0] == before["users"][0]
    assert after["clusters"] == before["clusters"]
    assert after["contexts"][0] == before["contexts"][0]
    assert after["contexts"][1] == {"name": "sandbox",
                                    "context": {"cluster": "staging", "user": "dexkit"}}
    for key in ("preferences", "extensions", "current-context", "apiVersion", "kind"):
        assert after[key] == before[key]
    assert list(after) == list(before)
    assert [b.read_text() for b in backups] == [RICH]
    # an existing file keeps its mode, as kubectl keeps it; a new one is made 0600
    assert path.stat().st_mode & 0o777 == 0o644


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(RICH)
    kc.write(kc.plan([path], [kc.Entry("users", "dexkit", USER)]))
    written = path.read_bytes()
    plan = kc.plan([path], [kc.Entry("users", "dexkit", USER)])
    assert plan.changes == [] and plan.texts == {}
    assert kc.write(plan) == []
    assert path.read_bytes() == written


def test_several_files_follow_kubectl_rules(tmp_path: Path) -> None:
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    first.write_text("apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n")
    second.write_text(RICH)
    untouched = first.read_bytes()
    plan = kc.plan([first, second, third], [
        kc.Entry("users", "dexkit", USER),                 # exists in b: modified there
        kc.Entry("users", "new-user", USER),               # new: first existing file (a)
    ])
    kc.write(plan)
    assert yaml.safe_load(second.read_text())["users"][1]["user"] == USER
    assert [u["name"] for u in yaml.safe_load(first.read_text())["users"]] == ["new-user"]
    assert not third.exists()
    # only the user went into a; b's other content is intact
    assert yaml.safe_load(second.read_text())["clusters"] == yaml.safe_load(RICH)["clusters"]
    assert first.read_bytes() != untouched


def test_files_without_change_keep_their_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_text(RICH)
    second.write_text("# hand-written, with a comment\napiVersion: v1\nkind: Config\n")
    before = second.read_bytes()
    kc.write(kc.plan([first, second], [kc.Entry("users", "dexkit", USER)]))
    assert second.read_bytes() == before


def test_no_file_creates_the_last(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "sub" / "b"
    kc.write(kc.plan([a, b], [kc.Entry("users", "dexkit", USER)]))
    assert not a.exists() and b.exists()
    assert yaml.safe_load(b.read_text())["users"] == [{"name": "dexkit", "user": USER}]


def test_use_context(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(RICH)
    plan = kc.plan([path], [kc.Entry("contexts", "sandbox", {"cluster": "staging",
                                                             "user": "dexkit"})],
                   use_context="sandbox")
    kc.write(plan)
    assert yaml.safe_load(path.read_text())["current-context"] == "sandbox"


def test_unreadable_kubeconfig_is_never_overwritten(tmp_path: Path) -> None:
    import pytest

    from dexkit.errors import UsageError

    path = tmp_path / "config"
    path.write_text("clusters: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        kc.plan([path], [kc.Entry("users", "dexkit", USER)])
    assert path.read_text() == "clusters: [unclosed\n"
