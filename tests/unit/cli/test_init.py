"""`dexkit init` and `dexkit certs` through the real CLI: outputs, exit codes, files, modes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dexkit.config import load_config
from tests.conftest import snapshot


def test_init_on_defaults_writes_config_and_assets(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("init", "--dir", project)
    assert result.code == 0, result.err
    for name in ("dexkit.yaml", "ssl/ca.pem", "ssl/ca-key.pem", "ssl/cert.pem", "ssl/key.pem",
                 ".gitignore"):
        assert (project / name).is_file(), name
    assert "created" in result.err and "next:" in result.err
    assert result.out == ""  # chatter goes to stderr
    loaded = load_config(project)
    assert loaded.config.issuer == "https://dex.example.com:32000"
    text = (project / "dexkit.yaml").read_text()
    assert text.startswith("# dexkit.yaml")
    assert "\n# The issuer URL" in text  # the file is commented
    assert not list(project.rglob("*.srl")) and not list(project.rglob("csr.pem"))


def test_issuer_port_other_than_node_port_warns(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("init", "--dir", project, "--issuer", "https://dex.example.com:8443")
    assert result.code == 0
    assert "warning: the issuer port 8443 differs from the Dex NodePort 32000" in result.err


def test_issuer_port_in_node_port_range_becomes_the_node_port(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project, "--issuer", "https://127.0.0.1:31000").code == 0
    config = load_config(project).config
    assert config.dex.service.node_port == 31000
    assert config.tls.ips == ["127.0.0.1"] and config.tls.hosts == []


def test_names_are_sorted_into_hosts_and_ips(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project, "--host", "10.0.0.1", "--ip", "::1").code == 0
    tls = load_config(project).config.tls
    assert tls.hosts == ["dex.example.com"] and tls.ips == ["10.0.0.1", "::1"]


def test_modes(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project, "--connector", "static").code == 0
    mode = lambda p: (project / p).stat().st_mode & 0o777  # noqa: E731
    assert mode("ssl") == 0o700
    assert mode("ssl/ca-key.pem") == 0o600
    assert mode("ssl/key.pem") == 0o600
    assert mode("ssl/cert.pem") == 0o644
    assert mode(".dexkit") == 0o700
    assert mode(".dexkit/passwords") == 0o700
    assert mode(".dexkit/passwords/admin@example.com") == 0o600


def test_static_connector_keeps_only_the_hash(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    import bcrypt

    result = dexkit("init", "--dir", project, "--connector", "static")
    assert result.code == 0, result.err
    password = (project / ".dexkit/passwords/admin@example.com").read_text().strip()
    assert len(password) >= 20
    config_text = (project / "dexkit.yaml").read_text()
    assert password not in config_text
    assert password not in result.out + result.err
    user = load_config(project).config.static_users[0]
    assert user.email == "admin@example.com"
    assert user.groups == ["team-a", "team-a/admins"]
    assert bcrypt.checkpw(password.encode(), user.hash.encode())
    assert load_config(project).config.connectors == []
    assert ".dexkit/" in (project / ".gitignore").read_text()


def test_second_run_changes_nothing(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project, "--connector", "static").code == 0
    before = snapshot(project)
    second = dexkit("init", "--dir", project)
    assert second.code == 0, second.err
    assert snapshot(project) == before
    assert f"kept       {project}/dexkit.yaml" in second.err
    assert second.err.count("kept") == 5


def test_host_change_reissues_and_says_so(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    ca, key = (project / "ssl/ca.pem").read_bytes(), (project / "ssl/key.pem").read_bytes()
    result = dexkit("init", "--dir", project, "--host", "dex2.example.com")
    assert result.code == 0, result.err
    assert "reissued   ssl/cert.pem (hosts changed" in result.err.replace(str(project) + "/", "")
    assert (project / "ssl/ca.pem").read_bytes() == ca
    assert (project / "ssl/key.pem").read_bytes() == key
    assert load_config(project).config.tls.hosts == ["dex.example.com", "dex2.example.com"]
    assert list(project.glob("dexkit.yaml.bak-*")), "the previous config is kept"


def test_force_backs_up_the_ca_and_the_backup_restores(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    original = snapshot(project / "ssl")
    result = dexkit("init", "--dir", project, "--force")
    assert result.code == 0, result.err
    assert "warning: the CA was replaced" in result.err
    assert (project / "ssl/ca.pem").read_bytes() != original["ca.pem"][0]
    (backup,) = (project / "ssl").glob("backup-*")
    for path in backup.iterdir():
        shutil.copy2(path, project / "ssl" / path.name)
    shutil.rmtree(backup)
    assert snapshot(project / "ssl") == original
    check = dexkit("certs", "check", "--dir", project)
    assert check.code == 0, check.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--issuer", "http://dex.example.com:32000"], 2, "must be an https URL"),
        (["--issuer", "https://dex.example.com:32000?x=1"], 2, "query or fragment"),
        (["--issuer", "https://dex.example.com:32000#x"], 2, "query or fragment"),
        (["--issuer", "https://dex.example.com:80/"], 2, "must not end with '/'"),
        (["--issuer", "https://dex.example.com:99999"], 2, "port"),
        (["--host", "not a host"], 2, "'not a host' is not a valid DNS name"),
        (["--ip", "999.1.1.1"], 2, "not a valid IP"),
        (["--connector", "saml"], 2, "unknown connector 'saml'"),
        (["--key-type", "dsa"], 2, "unknown key type 'dsa'"),
        (["--ca-days", "0"], 2, "Invalid value for '--ca-days'"),
        (["--bogus"], 2, "No such option: --bogus"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(dexkit, project: Path, args: list[str],  # type: ignore[no-untyped-def]
                                                  code: int, message: str) -> None:
    result = dexkit("init", "--dir", project, *args)
    assert result.code == code, result.err
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("error: "), result.err
    assert message in lines[0]
    assert lines[1].startswith("hint: ")
    assert len(lines) == 2
    assert "Traceback" not in result.err
    assert not project.exists() or snapshot(project) == {}


def test_bad_input_on_an_existing_project_changes_nothing(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    before = snapshot(project)
    result = dexkit("init", "--dir", project, "--issuer", "http://nope")
    assert result.code == 2
    assert snapshot(project) == before


def test_broken_config_names_file_and_line(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    path = project / "dexkit.yaml"
    path.write_text(path.read_text().replace("namespace:", "namspace:"))
    before = snapshot(project)
    result = dexkit("init", "--dir", project)
    assert result.code == 1
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "namspace" in t)
    assert f"error: {path}:{line}: unknown key 'namspace'" in result.err
    assert "hint: did you mean 'namespace'?" in result.err
    assert snapshot(project) == before


def test_half_a_ca_refuses_without_force(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    (project / "ssl/ca-key.pem").unlink()
    before = snapshot(project)
    result = dexkit("init", "--dir", project)
    assert result.code == 1
    assert "refusing to create a new CA" in result.err
    assert snapshot(project) == before


def test_debug_shows_a_traceback(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    (project / "ssl/ca-key.pem").unlink()
    result = dexkit("--debug", "init", "--dir", project)
    assert result.code == 1
    assert "Traceback" in result.err and "refusing" in result.err


def test_dir_that_is_a_file(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "file"
    target.write_text("x")
    result = dexkit("init", "--dir", target)
    assert result.code == 2
    assert result.err.startswith("error: ")


def test_certs_show_json(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project, "--ip", "127.0.0.1").code == 0
    result = dexkit("certs", "show", "--dir", project, "--output", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    ca, serving = data["certificates"]
    assert ca["is_ca"] and not serving["is_ca"]
    assert serving["dns_names"] == ["dex.example.com"]
    assert serving["ip_addresses"] == ["127.0.0.1"]
    assert serving["key_type"] == "ecdsa-p256"
    assert 363 <= serving["days_left"] <= 365
    assert len(serving["sha256_fingerprint"].split(":")) == 32
    assert data["chain"]["verifies"] is True


def test_certs_show_text(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    result = dexkit("certs", "show", "--dir", project)
    assert result.code == 0
    assert "Serving certificate" in result.out and "dex.example.com" in result.out
    assert "verifies (for dex.example.com)" in result.out


def test_certs_check_fails_with_reason(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project, "--cert-days", "10").code == 0
    result = dexkit("certs", "check", "--dir", project)
    assert result.code == 1
    assert "expires in 10 days" in result.err or "expires in 9 days" in result.err
    assert "hint: run 'dexkit certs rotate'" in result.err
    ok = dexkit("certs", "check", "--dir", project, "--within", "5")
    assert ok.code == 0
    as_json = dexkit("certs", "check", "--dir", project, "--output", "json")
    assert as_json.code == 1
    assert json.loads(as_json.out)["problems"][0]["code"] == "expiring"


def test_certs_rotate_and_rotate_ca(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project).code == 0
    ca = (project / "ssl/ca.pem").read_bytes()
    cert = (project / "ssl/cert.pem").read_bytes()
    result = dexkit("certs", "rotate", "--dir", project)
    assert result.code == 0, result.err
    assert (project / "ssl/ca.pem").read_bytes() == ca
    assert (project / "ssl/cert.pem").read_bytes() != cert
    loud = dexkit("certs", "rotate", "--dir", project, "--ca")
    assert loud.code == 0
    assert (project / "ssl/ca.pem").read_bytes() != ca
    assert "API servers still trust the OLD CA" in loud.err
    assert "it reads --oidc-ca-file only when it starts" in loud.err  # flags mode, the default
    assert dexkit("certs", "check", "--dir", project).code == 0


def test_commands_without_a_project(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("certs", "show", "--dir", tmp_path)
    assert result.code == 1
    assert result.err.splitlines()[0] == f"error: no dexkit.yaml in {tmp_path}"
    assert "dexkit init" in result.err.splitlines()[1]


def test_version_and_help_do_not_import_kubernetes() -> None:
    code = ("import sys; from dexkit.__main__ import main\n"
            "try: main(sys.argv[1:])\nexcept SystemExit: pass\n"
            "assert 'kubernetes' not in sys.modules, 'kubernetes imported'\n"
            "print('typer' in sys.modules)")
    for args, typer_loaded in ((["--version"], "False"), (["--help"], "False"),
                               (["init", "--help"], "True")):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                                text=True, check=False, env={**os.environ, "NO_COLOR": "1"})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(typer_loaded)
    out = subprocess.run([sys.executable, "-m", "dexkit", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("dexkit ")


def test_no_color_and_no_tty_mean_plain_text(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = dexkit("init", "--dir", project)
    assert "\x1b[" not in result.err


def test_written_yaml_round_trips(dexkit, project: Path) -> None:  # type: ignore[no-untyped-def]
    assert dexkit("init", "--dir", project, "--connector", "ldap").code == 0
    data = yaml.safe_load((project / "dexkit.yaml").read_text())
    assert data["connectors"][0]["type"] == "ldap"
    assert data["connectors"][0]["bindPasswordSecret"] == "ldap-bind"


def test_init_takes_a_host_longer_than_a_common_name(dexkit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = "a.b." + "2" * 61 + "c"  # a valid DNS name of 66 characters; a CN holds 64
    result = dexkit("init", "--dir", tmp_path, "--issuer", f"https://{host}:32000")
    assert result.code == 0, result.err
    assert dexkit("certs", "check", "--dir", tmp_path).code == 0


def _modules_after(args: list[str], cwd: Path, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` a fresh interpreter imported to run ``dexkit ARGS``."""
    code = ("import json, sys; from dexkit.__main__ import main\n"
            "try: main(sys.argv[1:])\nexcept SystemExit as exc: assert not exc.code, exc.code\n"
            f"print(json.dumps([m for m in {names!r} if m in sys.modules]))")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                            text=True, check=False, env={**os.environ, "NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout.strip().splitlines()[-1]))


def test_init_imports_only_what_it_uses(tmp_path: Path) -> None:
    # (bcrypt is not on the list: cryptography's serialization imports it for SSH keys.)
    heavy = ("jinja2", "rich", "kubernetes", "httpx", "dexkit.sandbox")
    assert _modules_after(["init", "--dir", "a"], tmp_path, heavy) == []
    assert _modules_after(["init", "--dir", "b", "--connector", "static"], tmp_path, heavy) == []
