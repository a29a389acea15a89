"""The second adversarial pass (issue 20), kubeconfig and file-safety defects, kept through the
real CLI: N-01 (the editor's result is compared with the request), N-02 (several kubeconfig
files in one transaction; errors name the user's file), N-07 (no secret in a kubeconfig),
N-09 (symbolic links are written through; backups take the file's mode), N-15 (no file dexkit
did not write is replaced without a backup), N-16 (``logout --all`` removes only dexkit's
entries, never stops half-way) and N-14's ``KUBECONFIG=':::'``."""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from dexkit.oidc.cache import TokenCache
from tests.promise import Result, assert_clean_failure, run, snapshot

SECRET = "Sup3rS3cretPW-never-print"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _strings(text: str) -> Any:
    return yaml.load(text, Loader=yaml.BaseLoader)  # noqa: S506 - builds no objects


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "p"
    result = run("init", "--dir", path, "--issuer", "https://127.0.0.1:32000", "--connector",
                 "static")
    assert result.code == 0, result.err
    return path


def _kubeconfig(project: Path, kubeconfig: Path, *args: str) -> Result:
    return run("kubeconfig", "--dir", project, "--kubeconfig", kubeconfig, *args)


def _assert_only_dexkit_added(before: str, after: str, *, user: str = "dexkit") -> None:
    """``after`` is ``before`` plus the user ``user`` (a dexkit exec user) and nothing else."""
    old, new = _strings(before), _strings(after)
    typed = yaml.safe_load(after)
    mine = [u for u in typed["users"] if u["name"] == user]
    assert len(mine) == 1 and mine[0]["user"]["exec"]["command"] == "dexkit", after
    assert [u for u in new["users"] if u["name"] != user] == old.get("users") or [], after
    for key in {*old, *new} - {"users"}:
        assert new.get(key) == old.get(key), (key, after)


# --- N-01: the edit lands where it was asked, or nothing is written ---------------------------

LEGACY = ("apiVersion: v1\nkind: Config\nusers:\n- name: legacy\n  user:\n    token: {style}\n"
          "      abc.def.ghi\n      second line\n{tail}contexts:\n- name: c1\n"
          "  context: {{cluster: x, user: legacy}}\ncurrent-context: c1\n")


@pytest.mark.parametrize("style", ["|", "|-", "|+", ">", ">-", ">+", "|2", "|+2", ">-2"])
@pytest.mark.parametrize("tail", ["", "\n", "\n\n", "\n# a comment\n", "  # indented note\n",
                                  "\n   \n"])
def test_n01_a_block_scalar_ending_the_last_user_keeps_the_user_in_users(
        project: Path, tmp_path: Path, style: str, tail: str) -> None:
    text = LEGACY.format(style=style, tail=tail)
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(text)
    result = _kubeconfig(project, kubeconfig)
    assert result.code == 0, result.err
    _assert_only_dexkit_added(text, kubeconfig.read_text())
    again = _kubeconfig(project, kubeconfig)
    assert again.code == 0 and "already up to date" in again.err


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("end", ["", "\n", "\n\n"])
@pytest.mark.parametrize("style", ["|+", "|", "|-", ">"])
def test_n01_a_block_scalar_at_the_end_of_the_file(project: Path, tmp_path: Path, newline: str,
                                                   end: str, style: str) -> None:
    text = ("apiVersion: v1\nkind: Config\ncontexts: []\nusers:\n- name: legacy\n  user:\n"
            f"    token: {style}\n      abc" + end).replace("\n", newline)
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_bytes(text.encode())
    before = snapshot(tmp_path)
    result = _kubeconfig(project, kubeconfig, "--context", "dx", "--cluster", "x",
                         "--use-context")
    if not end and style != "|-":
        # "abc" with no line break after it: any entry after it gives the value a line break
        # ("abc\n"), which '|', '|+' and '>' keep; refused rather than changed
        assert_clean_failure(result, code=1)
        assert "the entry 'legacy' in 'users' would change" in result.err
        assert snapshot(tmp_path) == before
        return
    assert result.code == 0, result.err
    after = kubeconfig.read_bytes().decode()
    if newline == "\r\n":
        assert "\n" not in after.replace("\r\n", "")
    typed = yaml.safe_load(after)
    assert typed["users"][0] == yaml.safe_load(text)["users"][0]  # its token kept, byte for byte
    assert [u["name"] for u in typed["users"]] == ["legacy", "dexkit"]
    assert typed["contexts"] == [{"name": "dx", "context": {"cluster": "x", "user": "dexkit"}}]
    assert typed["current-context"] == "dx"


def test_n01_an_existing_dexkit_user_with_a_block_scalar_is_replaced_whole(
        project: Path, tmp_path: Path) -> None:
    text = ("apiVersion: v1\nkind: Config\nusers:\n- name: dexkit\n  user:\n    token: |\n"
            "      old\n- name: other\n  user:\n    token: >-\n      x\n      y\n"
            "contexts: []\n")
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(text)
    result = _kubeconfig(project, kubeconfig)
    assert result.code == 0, result.err
    after = yaml.safe_load(kubeconfig.read_text())
    assert [u["name"] for u in after["users"]] == ["dexkit", "other"]
    assert "token" not in after["users"][0]["user"]
    assert after["users"][1] == {"name": "other", "user": {"token": "x y"}}
    assert after["contexts"] == []


@pytest.mark.parametrize("key", ["users", "contexts", "clusters", "current-context"])
def test_n01_a_top_level_key_written_twice_is_refused_by_name(project: Path, tmp_path: Path,
                                                              key: str) -> None:
    value = {"users": "\n- name: a\n  user: {token: x}", "contexts": " []", "clusters": " []",
             "current-context": " c"}[key]
    text = f"apiVersion: v1\nkind: Config\n{key}:{value}\nusers: []\n{key}:{value}\n"
    if key == "users":
        text = f"apiVersion: v1\nkind: Config\nusers:{value}\ncontexts: []\nusers: []\n"
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(text)
    before = snapshot(tmp_path)
    result = _kubeconfig(project, kubeconfig, "--context", "d", "--cluster", "x",
                         "--use-context")
    assert_clean_failure(result, code=2)
    assert f"the key '{key}' appears twice" in result.err
    assert snapshot(tmp_path) == before


def test_n01_two_users_keys_are_never_reported_as_updated(project: Path, tmp_path: Path) -> None:
    # the reproducer of K08: the first list held dexkit, kubectl reads the second
    text = ("apiVersion: v1\nkind: Config\nusers:\n- name: dexkit\n  user: {token: old}\n"
            "contexts: []\nusers:\n- name: other\n  user: {token: y}\n")
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(text)
    result = _kubeconfig(project, kubeconfig)
    assert_clean_failure(result, code=2)
    assert "updated" not in result.err and kubeconfig.read_text() == text


@pytest.mark.parametrize("text", [
    # the last user's last value is an alias: its marks are the anchored node's, elsewhere
    "apiVersion: v1\nusers:\n- name: a\n  user: &t {token: x}\n- name: b\n  user: *t\n",
    "apiVersion: v1\nusers:\n- name: a\n  user: &t {token: x}\n- name: dexkit\n  user: *t\n",
    # a tag on the document: the root's mark is after it, not at its keys' column
    "--- !!map\napiVersion: v1\nusers: []\n",
    "%YAML 1.1\n---\napiVersion: v1\nusers: []\n...\n",
    # a top-level merge key that fills no section
    "d: &d {preferences: {}}\n<<: *d\napiVersion: v1\nusers: []\n",
])
def test_n01_aliases_tags_and_merges_are_edited_exactly(project: Path, tmp_path: Path,
                                                        text: str) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(text)
    result = _kubeconfig(project, kubeconfig, "--context", "dx", "--cluster", "x",
                         "--use-context")
    assert result.code == 0, result.err
    after = kubeconfig.read_text()
    old, new, typed = _strings(text), _strings(after), yaml.safe_load(after)
    assert [u["name"] for u in typed["users"]].count("dexkit") == 1
    assert [u for u in new["users"] if u.get("name") != "dexkit"] == \
        [u for u in old["users"] if u.get("name") != "dexkit"]
    assert typed["contexts"][-1] == {"name": "dx", "context": {"cluster": "x", "user": "dexkit"}}
    assert typed["current-context"] == "dx"
    for key in {*old, *new} - {"users", "contexts", "current-context"}:
        assert new.get(key) == old.get(key), key


def test_n01_a_section_filled_by_a_merge_key_is_refused_unchanged(project: Path,
                                                                 tmp_path: Path) -> None:
    text = ("base: &b\n  users:\n  - name: a\n    user: {token: x}\n<<: *b\n"
            "apiVersion: v1\n")
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(text)
    before = snapshot(tmp_path)
    result = _kubeconfig(project, kubeconfig)
    assert_clean_failure(result, code=1)
    assert "merge key" in result.err
    assert snapshot(tmp_path) == before


def test_n01_a_wrong_edit_is_caught_by_the_comparison_and_nothing_is_written(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net under every position rule: an editor bug (here: the user spliced into
    the wrong list, as K06 did) is refused by comparing the result with the request."""
    from dexkit import kubeconfig as kc

    real = kc.set_entry

    def misplaced(path: Path, text: str | None, entry: kc.Entry) -> str:
        wrong = kc.Entry("contexts", entry.name, entry.body) if entry.section == "users" \
            else entry
        return real(path, text, wrong)

    monkeypatch.setattr(kc, "set_entry", misplaced)
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nusers: []\ncontexts: []\n")
    before = snapshot(tmp_path)
    result = _kubeconfig(project, kubeconfig)
    assert_clean_failure(result, code=1)
    assert "came out wrong" in result.err and "nothing was written" in result.err
    assert snapshot(tmp_path) == before


def test_n01_an_edit_that_does_not_parse_is_dexkits_failure_not_the_users(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dexkit import kubeconfig as kc

    monkeypatch.setattr(kc, "set_entry", lambda path, text, entry: (text or "") + "x: [\n")
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nusers: []\n")
    before = snapshot(tmp_path)
    result = _kubeconfig(project, kubeconfig)
    assert_clean_failure(result, code=1)
    assert "came out wrong (the edited text:" in result.err and "not valid YAML" in result.err
    assert not re.search(re.escape(str(kubeconfig)) + r":\d", result.err)  # not the user's
    assert snapshot(tmp_path) == before


# --- N-02: several files, one transaction; errors name the user's file ------------------------


def _two_files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "k/a", tmp_path / "k/ro/b"
    b.parent.mkdir(parents=True)
    a.write_text("apiVersion: v1\nkind: Config\nusers:\n- name: dexkit\n  user: {token: stale}\n")
    b.write_text("apiVersion: v1\nkind: Config\ncontexts:\n- name: c\n"
                 "  context: {cluster: old, user: old}\n")
    return a, b


def _assert_names_the_file(result: Result, path: Path) -> None:
    assert str(path) in result.err, result.err
    assert ".tmp" not in result.err and ".bak-" not in result.err, result.err


def test_n02_a_file_that_cannot_be_written_leaves_the_other_unchanged(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_files(tmp_path)
    real = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if Path(kwargs.get("dir") or "").resolve() == b.parent.resolve():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setenv("KUBECONFIG", f"{a}{os.pathsep}{b}")
    before = snapshot(tmp_path / "k")
    result = run("kubeconfig", "--dir", project, "--context", "c", "--cluster", "x")
    assert_clean_failure(result, code=1)
    _assert_names_the_file(result, b.resolve())
    assert snapshot(tmp_path / "k") == before


def test_n02_a_failed_rename_of_the_second_file_puts_the_first_back(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_files(tmp_path)
    real = Path.replace

    def replace(self: Path, target: str | os.PathLike[str]) -> Path:
        if Path(target).resolve() == b.resolve():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    monkeypatch.setenv("KUBECONFIG", f"{a}{os.pathsep}{b}")
    before = snapshot(tmp_path / "k")
    result = run("kubeconfig", "--dir", project, "--context", "c", "--cluster", "x")
    assert_clean_failure(result, code=1)
    _assert_names_the_file(result, b.resolve())
    assert "nothing was changed" in result.err
    assert snapshot(tmp_path / "k") == before


def test_n02_both_files_change_together_when_all_is_well(project: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _two_files(tmp_path)
    monkeypatch.setenv("KUBECONFIG", f"{a}{os.pathsep}{b}")
    result = run("kubeconfig", "--dir", project, "--context", "c", "--cluster", "x")
    assert result.code == 0, result.err
    assert yaml.safe_load(a.read_text())["users"][0]["user"]["exec"]["command"] == "dexkit"
    assert yaml.safe_load(b.read_text())["contexts"] == [
        {"name": "c", "context": {"cluster": "x", "user": "dexkit"}}]
    assert len(list(a.parent.glob("a.bak-*"))) == 1 and len(list(b.parent.glob("b.bak-*"))) == 1


def test_n02_apiserver_config_write_names_the_file_not_a_temporary(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """N-19's temp-file names: a backup that cannot be made names the user's file."""
    authn = tmp_path / "authn/config.yaml"
    authn.parent.mkdir()
    authn.write_text(AUTHN)
    real = tempfile.mkstemp

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if ".bak-" in str(kwargs.get("prefix", "")):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(*args, **kwargs)

    # no hard links either: the backup must be a copy, which is what fails
    monkeypatch.setattr(os, "link", _no_links)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    before = snapshot(authn.parent)
    result = run("apiserver", "config", "--dir", project, "--merge", authn, "--write")
    assert_clean_failure(result, code=1)
    _assert_names_the_file(result, authn)
    assert snapshot(authn.parent) == before


def _no_links(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.EPERM, os.strerror(errno.EPERM))


# --- N-07: secrets never land in a kubeconfig --------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--password", SECRET], [f"--password={SECRET}"], [f"--password {SECRET}"],
    ["--oidc-client-secret", SECRET], [f"--oidc-client-secret={SECRET}"],
    [f"--oidc-client-secret {SECRET}"],
])
@pytest.mark.parametrize("where", ["merge", "stdout", "file"])
def test_n07_a_secret_is_refused_and_never_printed_or_written(
        project: Path, tmp_path: Path, args: list[str], where: str) -> None:
    target = tmp_path / "out" / "kc"
    target.parent.mkdir()
    common = ["--grant", "password", "--username", "admin@example.com", *args]
    if where == "merge":
        result = _kubeconfig(project, target, *common)
    else:
        result = run("kubeconfig", "--dir", project, "-o", "-" if where == "stdout" else target,
                     "--server", "https://127.0.0.1:6443", "--cluster", "c", *common)
    assert_clean_failure(result, code=2, secrets=(SECRET,))
    flag = args[0].partition("=")[0].split()[0]
    assert f"error: {flag} would put the" in result.err
    hint = "--client-secret-env" if "secret" in flag else "DEXKIT_PASSWORD"
    assert hint in result.err
    assert list(target.parent.iterdir()) == []


def test_n07_the_ways_the_hint_names_still_work(project: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SECRET", SECRET)
    target = tmp_path / "kc"
    result = _kubeconfig(project, target, "--grant", "password", "--password-env", "MY_PW",
                         "--client-secret-env", "MY_SECRET")
    assert result.code == 0, result.err
    args = yaml.safe_load(target.read_text())["users"][0]["user"]["exec"]["args"]
    assert "--password-env" in args and "--client-secret-env" in args
    assert SECRET not in target.read_text()


# --- N-09: symbolic links are written through; backups get the file's mode ---------------------


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_n09_a_symlinked_kubeconfig_stays_a_link(project: Path, tmp_path: Path,
                                                 mode: int) -> None:
    dotfiles = tmp_path / "dot"
    dotfiles.mkdir()
    real = dotfiles / "kc"
    real.write_text("apiVersion: v1\nkind: Config\nusers: []\n")
    real.chmod(mode)
    link = tmp_path / "kube/config"
    link.parent.mkdir()
    link.symlink_to("../dot/kc")
    result = _kubeconfig(project, link)
    assert result.code == 0, result.err
    assert link.is_symlink() and str(link.readlink()) == "../dot/kc"
    assert yaml.safe_load(real.read_text())["users"][0]["name"] == "dexkit"
    assert _mode(real) == mode
    (backup,) = dotfiles.glob("kc.bak-*")
    assert backup.read_text() == "apiVersion: v1\nkind: Config\nusers: []\n"
    assert _mode(backup) == mode
    assert sorted(p.name for p in link.parent.iterdir()) == ["config"]


AUTHN = """\
apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: https://token.actions.githubusercontent.com
    audiences: [sts.example.com]
  claimMappings:
    username: {claim: sub, prefix: "gh:"}
"""


def test_n09_a_symlinked_authentication_configuration_stays_a_link(project: Path,
                                                                   tmp_path: Path) -> None:
    real = tmp_path / "etc/authn.yaml"
    real.parent.mkdir()
    text = AUTHN
    real.write_text(text)
    real.chmod(0o640)
    link = tmp_path / "authn.yaml"
    link.symlink_to(real)
    result = run("apiserver", "config", "--dir", project, "--merge", link, "--write")
    assert result.code == 0, result.err
    assert link.is_symlink()
    assert "https://127.0.0.1:32000" in real.read_text() and _mode(real) == 0o640
    (backup,) = real.parent.glob("authn.yaml.bak-*")
    assert backup.read_text() == text and _mode(backup) == 0o640
    assert not list(tmp_path.glob("authn.yaml.bak-*"))


def test_n09_rotating_a_symlinked_ca_key_backs_it_up_0600(project: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    ca_key = project / "ssl/ca-key.pem"
    old = ca_key.read_bytes()
    (keys / "ca-key.pem").write_bytes(old)
    (keys / "ca-key.pem").chmod(0o600)
    ca_key.unlink()
    ca_key.symlink_to(keys / "ca-key.pem")
    result = run("certs", "rotate", "--dir", project, "--ca")
    assert result.code == 0, result.err
    (backup,) = (project / "ssl").glob("backup-*")
    kept = backup / "ca-key.pem"
    assert not kept.is_symlink() and kept.read_bytes() == old and _mode(kept) == 0o600
    assert (keys / "ca-key.pem").read_bytes() == old  # the linked file itself is untouched


# --- N-15: no file dexkit did not write is replaced without a backup ---------------------------


def test_n15_render_into_a_directory_keeps_the_files_it_did_not_write(project: Path,
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "o"
    (out / "apiserver").mkdir(parents=True)
    (out / "dex.yaml").write_text("# my own dex manifest\n")
    (out / "apiserver/flags.txt").write_text("--my-flag\n")
    result = run("render", "--dir", project, "--out", out)
    assert result.code == 0, result.err
    (dex,) = out.glob("dex.yaml.bak-*")
    (flags,) = (out / "apiserver").glob("flags.txt.bak-*")
    assert dex.read_text() == "# my own dex manifest\n" and flags.read_text() == "--my-flag\n"
    assert f"backed up  {dex}" in result.err
    # dexkit's own files from now on: a second render with a changed config backs up nothing
    assert run("init", "--dir", project, "--issuer", "https://127.0.0.1:32001").code == 0
    again = run("render", "--dir", project, "--out", out)
    assert again.code == 0 and "updated" in again.err and "backed up" not in again.err
    assert len(list(out.rglob("*.bak-*"))) == 2


@pytest.mark.parametrize("format_", ["helm-values", "eks", "eksctl"])
def test_n15_render_format_out_file_keeps_an_existing_file(project: Path, tmp_path: Path,
                                                           format_: str) -> None:
    config = project / "dexkit.yaml"
    config.write_text(config.read_text().replace("  # clusterName: prod\n  # region: eu-west-1",
                                                 "  clusterName: prod\n  region: eu-west-1"))
    target = tmp_path / "values.yaml"
    target.write_text("replicaCount: 3  # mine\n")
    result = run("render", "--dir", project, "--format", format_, "--out", target)
    assert result.code == 0, result.err
    (backup,) = tmp_path.glob("values.yaml.bak-*")
    assert backup.read_text() == "replicaCount: 3  # mine\n"
    assert target.read_text() != "replicaCount: 3  # mine\n"
    again = run("render", "--dir", project, "--format", format_, "--out", target)
    assert again.code == 0 and "unchanged" in again.err
    assert len(list(tmp_path.glob("values.yaml.bak-*"))) == 1


def test_n15_init_keeps_a_certificate_it_reissues(project: Path) -> None:
    cert = project / "ssl/cert.pem"
    old = cert.read_bytes()
    result = run("init", "--dir", project, "--host", "other.example.com")
    assert result.code == 0, result.err
    assert "reissued" in result.err
    (backup,) = (project / "ssl").glob("cert.pem.bak-*")
    assert backup.read_bytes() == old and cert.read_bytes() != old
    assert f"backed up  {backup}" in result.err


# --- N-16: logout --all removes dexkit's entries only, and never stops half-way ----------------


def _entry(cache_dir: Path, key: str) -> None:
    cache = TokenCache(cache_dir)
    cache.store(key, {"id_token": "a.b.c", "expiry": 4102444800})
    with cache.lock(key):
        pass


def test_n16_logout_all_removes_only_what_dexkit_wrote(project: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    mine = ["a" * 64, "b" * 64]
    for key in mine:
        _entry(cache_dir, key)
    strangers = {"notes.token": "mine\n", "keep.lock": "x\n",
                 "c" * 64 + ".token": "id_token a.b.c\nexpiry 4102444800\n",  # 0644
                 "d" * 64 + ".lock": "not empty\n"}
    for name, text in strangers.items():
        (cache_dir / name).write_text(text)
        (cache_dir / name).chmod(0o644 if name.startswith("c") else 0o600)
    (cache_dir / "sub.token").mkdir()
    (cache_dir / ("e" * 64 + ".token")).symlink_to(cache_dir / ("a" * 64 + ".token"))
    result = run("logout", "--dir", project, "--all", "--token-cache-dir", cache_dir)
    assert result.code == 0, result.err
    left = sorted(p.name for p in cache_dir.iterdir())
    assert left == sorted([*strangers, "sub.token", "e" * 64 + ".token"])
    assert result.err.count("warning: left alone") == 6
    assert "logged out: 2 cached login(s) removed" in result.err


def test_n16_logout_removes_the_login_lock_and_failure_record_too(project: Path,
                                                                   tmp_path: Path) -> None:
    """The storm guard's files (dexkit.oidc.attempts) are dexkit's as well; a planted file under
    such a name that is not one of them is left alone."""
    from dexkit.oidc import attempts

    cache_dir = tmp_path / "cache"
    key, other = "a" * 64, "b" * 64
    _entry(cache_dir, key)
    cache = TokenCache(cache_dir)
    with cache.login_lock(key):
        pass
    attempts.record_failure(cache_dir, key, "authcode", 1_700_000_000, 60)
    (cache_dir / f"{other}.failed").write_text("not a record\n")
    (cache_dir / f"{other}.failed").chmod(0o600)
    result = run("logout", "--dir", project, "--all", "--token-cache-dir", cache_dir)
    assert result.code == 0, result.err
    assert sorted(p.name for p in cache_dir.iterdir()) == [f"{other}.failed"]
    assert "does not read as dexkit's login record" in result.err


def test_n16_an_entry_that_cannot_be_removed_is_reported_after_the_rest(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_dir = tmp_path / "cache"
    keys = ["1" * 64, "2" * 64, "3" * 64]
    for key in keys:
        _entry(cache_dir, key)
    stuck = cache_dir / f"{keys[0]}.token"
    real = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self == stuck:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
        real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    result = run("logout", "--dir", project, "--all", "--token-cache-dir", cache_dir)
    assert_clean_failure(result, code=1)
    assert str(stuck) in result.err and "2 removed" in result.err
    assert sorted(p.name for p in cache_dir.iterdir()) == [stuck.name]


def test_n16_one_logout_leaves_a_directory_at_its_entry_alone(project: Path,
                                                              tmp_path: Path) -> None:
    from dexkit.config import load_config
    from dexkit.oidc.settings import project_settings

    cache_dir = tmp_path / "cache"
    settings = project_settings(project, load_config(project).config,
                                extra=["--token-cache-dir", str(cache_dir)])
    (cache_dir / f"{settings.cache_key}.token").mkdir(parents=True)
    result = run("logout", "--dir", project, "--token-cache-dir", cache_dir)
    assert result.code == 0, result.err
    assert "left alone" in result.err and "not a regular file" in result.err
    assert (cache_dir / f"{settings.cache_key}.token").is_dir()


# --- N-14: a KUBECONFIG of separators only ------------------------------------------------------


@pytest.mark.parametrize("value", [":::", ":", "::"])
def test_n14_a_kubeconfig_variable_naming_no_file_is_a_usage_error(
        project: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("KUBECONFIG", value.replace(":", os.pathsep))
    home = Path.home()
    before = snapshot(home / ".kube")
    result = run("kubeconfig", "--dir", project)
    assert_clean_failure(result, code=2)
    assert "KUBECONFIG" in result.err and "names no file" in result.err
    assert snapshot(home / ".kube") == before
