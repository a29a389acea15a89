"""Issue 13's adversarial pass, kept: one test (or a few) per defect it found, through the real
CLI. Items 6-8 (kubeconfig editor, ``dexkit token`` inputs, token cache identity) live with
their own modules' tests."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dexkit import pki
from dexkit.config import load_config
from tests.promise import assert_clean_failure, run, snapshot
from tests.unit.render.helpers import FIXTURES

SECRET = "S3cretPW-do-not-print"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    assert run("init", "--dir", path).code == 0
    return path


def _pair_ok(ssl: Path) -> bool:
    ca, cert = pki.load_cert(ssl / "ca.pem"), pki.load_cert(ssl / "cert.pem")
    ca_key, key = pki.load_key(ssl / "ca-key.pem"), pki.load_key(ssl / "key.pem")
    cert.verify_directly_issued_by(ca)
    return pki.key_matches(ca, ca_key) and pki.key_matches(cert, key)


# --- 1. backups never overwrite backups -------------------------------------------------------


def test_1_a_taken_backup_directory_is_left_alone(project: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    planted = {}
    for second in range(4):  # the run below starts within these seconds
        stamp = files_stamp(now + dt.timedelta(seconds=second))
        backup = project / "ssl" / f"backup-{stamp}"
        backup.mkdir()
        (backup / "key.pem").write_text(f"an older backup's key {second}\n")
        planted[backup] = (backup / "key.pem").read_text()
    old_key = (project / "ssl/key.pem").read_bytes()
    result = run("certs", "rotate", "--dir", project)
    assert result.code == 0, result.err
    for backup, text in planted.items():
        assert sorted(p.name for p in backup.iterdir()) == ["key.pem"]
        assert (backup / "key.pem").read_text() == text
    made = [p for p in (project / "ssl").glob("backup-*") if p not in planted]
    assert len(made) == 1 and made[0].name.endswith(".1")
    assert (made[0] / "key.pem").read_bytes() == old_key
    assert f"backed up  {made[0]}" in result.err


def files_stamp(moment: dt.datetime) -> str:
    from dexkit.files import timestamp

    return timestamp(moment)


def test_1_two_forced_inits_in_one_second_keep_both_ca_keys(project: Path) -> None:
    keys = [(project / "ssl/ca-key.pem").read_bytes()]
    for _ in range(2):
        assert run("init", "--dir", project, "--force").code == 0
        keys.append((project / "ssl/ca-key.pem").read_bytes())
    backups = sorted((project / "ssl").glob("backup-*"))
    assert len(backups) == 2
    assert sorted((b / "ca-key.pem").read_bytes() for b in backups) == sorted(keys[:2])
    assert all(_mode(b / "ca-key.pem") == 0o600 for b in backups)


# --- 2. init is all or nothing ----------------------------------------------------------------


def test_2_a_failed_config_write_leaves_the_old_certificate(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(project)
    real = Path.replace

    def replace(self: Path, target: str | os.PathLike[str]) -> Path:
        if Path(target).name == "dexkit.yaml":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    result = run("init", "--dir", project, "--issuer", "https://new.example.com:32000")
    monkeypatch.undo()
    assert_clean_failure(result, code=1)
    assert "dexkit.yaml" in result.err and "read-only" in result.err
    assert snapshot(project) == before
    assert run("certs", "check", "--dir", project).code == 0


# --- 4. a lock around init and rotate ---------------------------------------------------------


def _dexkit_processes(args: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "NO_COLOR": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "dexkit", *a], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for a in args]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_4_twenty_parallel_inits_make_one_consistent_set(tmp_path: Path) -> None:
    project = tmp_path / "p"
    runs = _dexkit_processes([["init", "--dir", str(project), "--key-type", "rsa-2048"]] * 20)
    assert [r.returncode for r in runs] == [0] * 20, [r.stderr for r in runs if r.returncode]
    assert sum("created    " + str(project / "ssl/ca-key.pem") in r.stderr for r in runs) == 1
    assert _pair_ok(project / "ssl")
    check = subprocess.run(["openssl", "verify", "-CAfile", project / "ssl/ca.pem",
                            project / "ssl/cert.pem"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_4_parallel_rotations_each_keep_a_whole_backup(project: Path) -> None:
    runs = _dexkit_processes([["certs", "rotate", "--dir", str(project)]] * 6)
    assert [r.returncode for r in runs] == [0] * 6, [r.stderr for r in runs]
    backups = sorted((project / "ssl").glob("backup-*"))
    assert len(backups) == 6
    certs = set()
    for backup in backups:
        cert, key = pki.load_cert(backup / "cert.pem"), pki.load_key(backup / "key.pem")
        assert pki.key_matches(cert, key), backup
        certs.add(pki.fingerprint(cert))
    assert len(certs) == 6  # six rotations, six different pairs kept
    assert _pair_ok(project / "ssl")


# --- 5. directories dexkit did not create keep their mode -------------------------------------


def test_5_a_symlinked_ssl_dir_and_an_absolute_tls_dir_keep_their_mode(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    project = tmp_path / "p"
    project.mkdir()
    (project / "ssl").symlink_to(sticky)
    result = run("init", "--dir", project)
    assert result.code == 0, result.err
    assert _mode(sticky) == 0o1777 and (sticky / "key.pem").is_file()
    assert "open to other users (mode 1777)" in result.err  # said, not changed
    shared = tmp_path / "shared-tls"
    shared.mkdir()
    shared.chmod(0o755)
    other = tmp_path / "q"
    other.mkdir()
    (other / "dexkit.yaml").write_text(f"tls:\n  dir: {shared}\n")
    assert run("init", "--dir", other).code == 0
    assert _mode(shared) == 0o755 and _mode(shared / "ca-key.pem") == 0o600


def test_5_a_world_writable_tls_dir_is_refused_and_nothing_written(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    project = tmp_path / "p"
    project.mkdir()
    (project / "dexkit.yaml").write_text(f"tls:\n  dir: {open_dir}\n")
    before = snapshot(tmp_path)
    result = run("init", "--dir", project)
    assert_clean_failure(result, code=1)
    assert "writable by every user" in result.err
    assert snapshot(tmp_path) == before


def test_5_kubeconfig_in_the_current_directory_does_not_chmod_it(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    here.chmod(0o1777)
    monkeypatch.chdir(here)
    result = run("kubeconfig", "--dir", project, "--kubeconfig", "kc")
    assert result.code == 0, result.err
    assert (here / "kc").is_file() and _mode(here) == 0o1777


# --- 9. a flag spelled as two list items ------------------------------------------------------


def _manifest(tmp_path: Path, text: str | None = None, newline: str = "\n") -> Path:
    path = tmp_path / "etc/kubernetes/manifests/kube-apiserver.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    body = text if text is not None else (FIXTURES / "kube-apiserver-1.34.yaml").read_text()
    path.write_bytes(body.replace("\n", newline).encode())
    path.chmod(0o600)
    return path


def _command(path: Path) -> list[str]:
    pod = yaml.safe_load(path.read_text())
    return [str(a) for a in pod["spec"]["containers"][0]["command"]]


def test_9_a_two_item_flag_is_replaced_with_its_value(project: Path, tmp_path: Path) -> None:
    text = (FIXTURES / "kube-apiserver-1.34.yaml").read_text().replace(
        "    - --allow-privileged=true\n",
        "    - --allow-privileged=true\n    - --oidc-issuer-url\n    - https://old.example.com\n"
        "    - --oidc-username-claim\n    - sub\n")
    manifest = _manifest(tmp_path, text)
    result = run("apiserver", "patch", manifest, "--dir", project)
    assert result.code == 0, result.err
    command = _command(manifest)
    assert "https://old.example.com" not in command and "sub" not in command
    assert "--oidc-issuer-url=https://dex.example.com:32000" in command
    assert [a for a in command if a.startswith("--oidc-issuer-url")] == [
        "--oidc-issuer-url=https://dex.example.com:32000"]
    assert "was --oidc-issuer-url https://old.example.com" in result.err
    again = run("apiserver", "patch", manifest, "--dir", project)
    assert again.code == 0 and "already configured" in again.err


# --- 10. private keys others can read ---------------------------------------------------------


@pytest.mark.parametrize("name", ["key.pem", "ca-key.pem"])
def test_10_a_world_readable_key_fails_init_and_check(project: Path, name: str) -> None:
    key = project / "ssl" / name
    key.chmod(0o644)
    before = snapshot(project)
    for args in (["init"], ["certs", "check"]):
        result = run(*args, "--dir", project)
        assert_clean_failure(result, code=1)
        assert f"{key} is readable by other users (mode 0644)" in result.err
        assert "chmod 600" in result.err and "leaked" in result.err
    assert snapshot(project) == before  # refused, not silently re-moded
    key.chmod(0o600)
    assert run("init", "--dir", project).code == 0


# --- 11. symbolic links are followed, not replaced --------------------------------------------


def test_11_a_symlinked_manifest_stays_a_link_and_its_target_is_patched(
        project: Path, tmp_path: Path) -> None:
    real = _manifest(tmp_path / "real")
    link = tmp_path / "node/etc/kubernetes/manifests/kube-apiserver.yaml"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    result = run("apiserver", "patch", link, "--dir", project)
    assert result.code == 0, result.err
    assert link.is_symlink() and link.readlink() == real
    assert "--oidc-issuer-url=https://dex.example.com:32000" in _command(real)
    (backup,) = (real.parent.parent / "dexkit-backups").iterdir()
    assert backup.read_bytes() == (FIXTURES / "kube-apiserver-1.34.yaml").read_bytes()
    assert sorted(p.name for p in link.parent.iterdir()) == ["kube-apiserver.yaml"]


def test_11_a_symlinked_dexkit_yaml_stays_a_link(project: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "dexkit.yaml"
    shutil.move(project / "dexkit.yaml", real)
    (project / "dexkit.yaml").symlink_to(real)
    old = real.read_text()
    result = run("init", "--dir", project, "--issuer", "https://new.example.com:32000")
    assert result.code == 0, result.err
    assert (project / "dexkit.yaml").is_symlink()
    assert load_config(project).config.issuer == "https://new.example.com:32000"
    (backup,) = dotfiles.glob("dexkit.yaml.bak-*")
    assert backup.read_text() == old
    assert not list(project.glob("dexkit.yaml.bak-*"))


# --- 12. a password in an issuer is never echoed ----------------------------------------------


@pytest.mark.parametrize("issuer", [
    f"http://user:{SECRET}@dex.example.com:32000",
    f"https://user:{SECRET}@dex.example.com:32000/",
    f"https://user:{SECRET}@dex.example.com:32000?x=1",
    f"https://user:{SECRET}@dex.example.com:0",
    f"https://user:{SECRET}@[::1",
    f"https://user:{SECRET}@999.1.1.1",
    f"https://{SECRET}@dex.example.com",
])
def test_12_credentials_in_an_issuer_never_print(tmp_path: Path, issuer: str) -> None:
    result = run("init", "--dir", tmp_path / "p", "--issuer", issuer)
    assert_clean_failure(result, code=2, secrets=(SECRET,))
    assert not (tmp_path / "p").exists()
    (tmp_path / "q").mkdir()
    (tmp_path / "q/dexkit.yaml").write_text(f"issuer: {json.dumps(issuer)}\n")
    assert_clean_failure(run("certs", "check", "--dir", tmp_path / "q"), code=1,
                         secrets=(SECRET,))


# --- 13. duplicate keys -----------------------------------------------------------------------


def test_13_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    (tmp_path / "dexkit.yaml").write_text(
        "issuer: https://a.example.com\ntls:\n  keyType: rsa-2048\n  keyType: ecdsa-p256\n")
    result = run("apiserver", "flags", "--dir", tmp_path)
    assert_clean_failure(result, code=1)
    assert f"error: {tmp_path / 'dexkit.yaml'}:4: tls.keyType: duplicate key (first on line 3)" \
        in result.err


# --- 14. user mistakes are not internal bugs --------------------------------------------------


@pytest.mark.parametrize("content", [
    bytes(range(256)),
    b"\xff\xfe" + "issuer: x\n".encode("utf-16-le"),
    b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    b"a: " + b"{b: " * 200 + b"1" + b"}" * 200 + b"\n",
])
def test_14_binary_or_deeply_nested_config_is_a_user_error(tmp_path: Path,
                                                            content: bytes) -> None:
    (tmp_path / "dexkit.yaml").write_bytes(content)
    before = snapshot(tmp_path)
    for args in (["init"], ["certs", "show"], ["render"]):
        assert_clean_failure(run(*args, "--dir", tmp_path), code=1)
    assert snapshot(tmp_path) == before


def test_14_an_absurd_within_is_a_usage_error(project: Path) -> None:
    result = run("certs", "check", "--dir", project, "--within", "99999999999")
    assert_clean_failure(result, code=2)
    assert "--within" in result.err


@pytest.mark.parametrize("content", [b"\x00\xff\x13binary", b"users: 5\n", b"clusters: [\n"])
def test_14_and_18_a_broken_kubeconfig_is_one_clean_line(project: Path, tmp_path: Path,
                                                         content: bytes) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_bytes(content)
    result = run("deploy", "--dir", project, "--kubeconfig", kubeconfig, "--dry-run")
    assert_clean_failure(result, code=1)
    assert str(kubeconfig) in result.err


# --- 15. validation gaps ----------------------------------------------------------------------


@pytest.mark.parametrize(("issuer", "says"), [
    ("https://dex.example.com:0", "port '0'"),
    ("https://dex.example.com:", "port ''"),
    ("https://[fe80::1%25eth0]:32000", "IPv6 zone"),
    ("https://999.1.1.1:32000", "not a valid DNS name or IP address"),
    ("https://dex.example.com:32000/my path", "white space"),
    ("https://dex.example.com:32000/a\tb", "white space"),
    ("https://dex.example.com:32000/ä", "non-ASCII"),
    ("https://dex.example.com:32000/a\"b", "characters a URL path cannot hold"),
])
def test_15_issuers_dexkit_cannot_serve_are_refused(tmp_path: Path, issuer: str,
                                                    says: str) -> None:
    result = run("init", "--dir", tmp_path / "p", "--issuer", issuer)
    assert_clean_failure(result, code=2)
    assert says in result.err and "error: issuer:" in result.err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("issuer", ["https://[fe80::1]:32000", "https://10.0.0.1:32000",
                                    "https://dex-1.example.com", "https://a.b.c/dex/x_y~z"])
def test_15_what_init_accepts_certs_check_accepts(tmp_path: Path, issuer: str) -> None:
    assert run("init", "--dir", tmp_path, "--issuer", issuer).code == 0
    result = run("certs", "check", "--dir", tmp_path)
    assert result.code == 0, result.err


@pytest.mark.parametrize(("yaml_text", "says"), [
    ("dex:\n  idTokenLifetime: forever\n", "3: dex.idTokenLifetime: 'forever' is not a duration"),
    ("dex:\n  idTokenLifetime: -1h\n", "dex.idTokenLifetime"),
    ("dex:\n  idTokenLifetime: 0s\n", "must be more than 0"),
    ("apiServer:\n  requiredClaims:\n    hd: a,b\n",
     "3: apiServer.requiredClaims: 'hd: a,b' cannot be passed"),
    ("tls:\n  ips: ['fe80::1%eth0']\n", "tls.ips: 'fe80::1%eth0' is not a valid IP address"),
])
def test_15_values_dex_or_the_api_server_would_refuse_are_refused_at_load(
        tmp_path: Path, yaml_text: str, says: str) -> None:
    (tmp_path / "dexkit.yaml").write_text("# a comment\n" + yaml_text)
    result = run("apiserver", "flags", "--dir", tmp_path)
    assert_clean_failure(result, code=1)
    assert says in result.err


def test_15_go_durations_dex_accepts_are_accepted(tmp_path: Path) -> None:
    for value in ("24h", "1h30m", "90s", "1.5h", "100ms"):
        (tmp_path / "dexkit.yaml").write_text(f"dex:\n  idTokenLifetime: {value}\n")
        assert run("apiserver", "flags", "--dir", tmp_path).code == 0, value


# --- 16. render -------------------------------------------------------------------------------


def test_16_cleanup_never_follows_a_symlinked_subdirectory(project: Path, tmp_path: Path) -> None:
    assert run("render", "--dir", project).code == 0
    out = project / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.yaml").write_text("not dexkit's\n")
    shutil.rmtree(out / "kind")
    (out / "kind").symlink_to(outside)
    record = out / ".dexkit-rendered"
    record.write_text(record.read_text() + "kind/precious.yaml\n")
    before = snapshot(tmp_path / "outside")
    result = run("render", "--dir", project)
    assert_clean_failure(result, code=2)
    assert "is a symbolic link" in result.err
    assert snapshot(outside) == before


def test_16_the_config_secret_is_private_in_an_open_out_dir(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "public-out"
    out.mkdir()
    out.chmod(0o755)
    assert run("render", "--dir", project, "--out", out).code == 0
    assert _mode(out / "dex/06-config-secret.yaml") == 0o600
    assert _mode(out / "dex.yaml") == 0o600  # the all-in-one holds the Secret too
    assert _mode(out / "dex/00-namespace.yaml") == 0o644
    assert _mode(out) == 0o755


# --- 17. CRLF manifests -----------------------------------------------------------------------


def test_17_a_crlf_manifest_keeps_crlf_on_every_line(project: Path, tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, newline="\r\n")
    dry = run("apiserver", "patch", manifest, "--dir", project, "--dry-run")
    assert run("apiserver", "patch", manifest, "--dir", project).code == 0
    raw = manifest.read_bytes()
    assert raw.count(b"\n") == raw.count(b"\r\n") > 100
    changed = [line for line in dry.out.splitlines() if line[:1] in "+-"
               and not line.startswith(("+++", "---"))]
    assert 0 < len(changed) < 20  # the diff shows the flag and volume lines only


# --- 18. error text ---------------------------------------------------------------------------


def test_18_a_non_string_key_names_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "dexkit.yaml").write_text(
        "issuer: https://dex.example.com:32000\ndex:\n  ingress:\n    annotations:\n"
        "      1: x\n")
    result = run("apiserver", "flags", "--dir", tmp_path)
    assert_clean_failure(result, code=1)
    assert f"{tmp_path / 'dexkit.yaml'}:5: dex.ingress.annotations: the key '1' is not a " \
        "string" in result.err
    assert "$." not in result.err and "Expected" not in result.err


def test_18_nel_and_line_separators_survive_a_rewrite(tmp_path: Path) -> None:
    name = "GitHub\x85Enterprise\u2028x"
    (tmp_path / "dexkit.yaml").write_text(
        f"connectors:\n- type: github\n  name: {json.dumps(name)}\n", encoding="utf-8")
    assert run("init", "--dir", tmp_path, "--issuer", "https://other.example.com").code == 0
    assert load_config(tmp_path).config.connectors[0].name == name


def test_18_an_expiring_ca_is_said_and_the_leaf_not_reissued_every_run(tmp_path: Path) -> None:
    (tmp_path / "dexkit.yaml").write_text("tls:\n  caDays: 20\n")
    first = run("init", "--dir", tmp_path)
    assert first.code == 0 and "warning: the CA expires in 19 days" in first.err
    cert = (tmp_path / "ssl/cert.pem").read_bytes()
    second = run("init", "--dir", tmp_path)
    assert second.code == 0 and "kept       " + str(tmp_path / "ssl/cert.pem") in second.err
    assert "warning: the CA expires in" in second.err and "rotate --ca" in second.err
    assert (tmp_path / "ssl/cert.pem").read_bytes() == cert


def test_18_one_bad_kubeconfig_is_one_doctor_failure(project: Path, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("apiVersion: v1\nusers: [\n")
    result = run("doctor", "--dir", project, "--kubeconfig", kubeconfig, "--offline",
                 "--output", "json")
    report = json.loads(result.out)
    about = [r for r in report["results"] if r["status"] == "fail" and "kc" in r["message"]]
    assert len(about) == 1, about


# --- found by the new fuzz tests (beyond the 18) -------------------------------------


def test_fuzz_a_password_in_a_malformed_issuer_never_prints(tmp_path: Path) -> None:
    for issuer in (f"https:/user:{SECRET}@dex.example.com?", f"user:{SECRET}@dex.example.com",
                   f"https://u:{SECRET}/x@dex.example.com"):
        result = run("init", "--dir", tmp_path / "p", "--issuer", issuer)
        assert_clean_failure(result, code=2, secrets=(SECRET,))


def test_fuzz_a_trailing_dot_host_is_refused_before_it_breaks_certs(tmp_path: Path) -> None:
    result = run("init", "--dir", tmp_path / "p", "--issuer", "https://dex.example.com.")
    assert_clean_failure(result, code=2)
    assert "not a valid DNS name" in result.err


@pytest.mark.parametrize(("change", "says"), [
    (lambda t: t.replace("    volumeMounts:\n", "    volumeMounts:\n    - mountPath: /x\n"
                         "      name: y\n    volumeMounts:\n", 1), "duplicate key"),
    (lambda t: t.replace("  - command:\n", "  - command: &cmd\n", 1), "anchors or aliases"),
])
def test_fuzz_a_manifest_with_duplicate_keys_or_anchors_is_refused(
        project: Path, tmp_path: Path, change: object, says: str) -> None:
    text = change((FIXTURES / "kube-apiserver-1.34.yaml").read_text())  # type: ignore[operator]
    manifest = _manifest(tmp_path, text)
    before = snapshot(tmp_path)
    result = run("apiserver", "patch", manifest, "--dir", project)
    assert_clean_failure(result, code=2)
    assert says in result.err
    assert snapshot(tmp_path) == before


def test_fuzz_a_key_with_a_local_tag_is_a_clean_error(tmp_path: Path) -> None:
    (tmp_path / "dexkit.yaml").write_text("\n!ls : x\n")
    result = run("apiserver", "flags", "--dir", tmp_path)
    assert_clean_failure(result, code=1)
    assert ":2: the top level: the key" in result.err


def test_fuzz_control_characters_never_reach_the_terminal_or_split_the_message(
        tmp_path: Path) -> None:
    # \x1f once split dexkit's own validator message, leaving "hint: '" behind
    result = run("init", "--dir", tmp_path / "p", "--issuer", "https://user@host/\x1f")
    assert_clean_failure(result, code=2)
    assert "\\u001f" in result.err and "hint: see 'dexkit init --help'" in result.err
    (tmp_path / "dexkit.yaml").write_text('tls:\n  hosts: ["a\\u001b[31mred"]\n')
    result = run("certs", "show", "--dir", tmp_path)
    assert_clean_failure(result, code=1)
    assert "\x1b" not in result.err and "\\x1b[31mred" in result.err
