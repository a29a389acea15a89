"""Issue 20's second adversarial pass, kept (N-04/05/06/08/12/13/14): secrets never printed,
plain-http issuers only with consent, secret files read only from what they claim to be, no
special file ever read or waited on, and user mistakes said as such. Through the real CLI: in
process where nothing can hang, in a child process (with a time and memory limit) where the
base commit hung or ran out of memory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dexkit import pki
from tests.promise import Result, assert_clean_failure, run

SECRET = "Sup3rS3cretPW-never-printed"
RAW_CONTROLS = ("\x1b", "\x07", "\r", "\x9b")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLOSED = _closed_port()
TOKEN = ["token", "--issuer", f"https://127.0.0.1:{CLOSED}", "--client-id", "kubernetes"]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for name in ("KUBECACHEDIR", "KUBECONFIG", "DEXKIT_PASSWORD", "DEXKIT_TOKEN_CACHE",
                 "KUBERNETES_EXEC_INFO", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "p"
    result = run("init", "--dir", path, "--connector", "static", "--issuer",
                 f"https://127.0.0.1:{CLOSED}")
    assert result.code == 0, result.err
    return path


def _no_raw_controls(result: Result) -> None:
    both = result.out + result.err
    for ch in RAW_CONTROLS:
        assert ch not in both, f"{ch!r} reached the terminal: {both!r}"


def _process(*args: str | os.PathLike[str], env: dict[str, str] | None = None,
             timeout: float = 30) -> Result:
    """dexkit in a child process that may not hang (``timeout``) or take more than 1 GiB."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    try:
        done = subprocess.run([sys.executable, "-m", "dexkit", *map(str, args)],
                              capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                              env={**os.environ, "NO_COLOR": "1", **(env or {})}, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dexkit {' '.join(map(str, args))} still ran after {timeout} s (blocked)")
    return Result(done.returncode, done.stdout, done.stderr)


# --- N-04: the token option parser never echoes a value ----------------------------------------


@pytest.mark.parametrize(("argv", "says"), [
    ([f"--password {SECRET}"], "argument 5 holds the option '--password' and more"),
    ([f"--oidc-client-secret {SECRET}"], "the option '--oidc-client-secret' and more"),
    ([f" --password={SECRET}"], "the option '--password' and more"),
    ([SECRET], "argument 5 is not an option"),
    (["--username", "u", SECRET], "argument 7 is not an option"),
    ([f"--insecure={SECRET}"], "--insecure= takes true or false"),
    ([f"--skip-open-browser={SECRET}"], "--skip-open-browser= takes true or false"),
])
def test_n04_token_never_echoes_a_value_it_cannot_place(argv: list[str], says: str) -> None:
    result = run(*TOKEN, *argv)
    assert_clean_failure(result, code=2, secrets=(SECRET,))
    assert says in result.err


@pytest.mark.parametrize("command", ["login", "kubeconfig"])
def test_n04_pass_through_options_never_echo_a_value(project: Path, command: str) -> None:
    result = run(command, "--dir", project, f"--password {SECRET}")
    assert_clean_failure(result, code=2, secrets=(SECRET,))
    # kubeconfig refuses any password before parsing (N-07): it would land in the file.
    assert ("--password would put the password into the kubeconfig" if command == "kubeconfig"
            else "'--password' and more") in result.err


def test_n04_the_login_command_shown_hides_every_secret_spelling(tmp_path: Path) -> None:
    from dexkit.oidc.settings import build_settings

    settings = build_settings([*TOKEN[1:], "--oidc-client-secret", SECRET, "--grant-type",
                               "password", "--username", "u", f"--password={SECRET}"])
    shown = settings.login_command()
    assert SECRET not in shown and "--oidc-client-secret '***'" in shown


# --- N-05: URL userinfo is never printed --------------------------------------------------------


def test_n05_token_never_prints_an_issuer_password() -> None:
    result = run("token", "--issuer", f"https://admin:{SECRET}@127.0.0.1:{CLOSED}",
                 "--client-id", "kubernetes")
    assert_clean_failure(result, code=2, secrets=(SECRET,))
    # The issuer's one parse refuses credentials in it, without repeating the URL.
    assert "must not contain credentials (user:password@)" in result.err


@pytest.mark.parametrize("command", ["deploy", "destroy"])
def test_n05_deploy_and_destroy_never_print_the_servers_password(project: Path, tmp_path: Path,
                                                                 command: str) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: "
        f"'https://admin:{SECRET}@127.0.0.1:{CLOSED}'}}\nusers:\n- name: u\n  user: "
        "{token: abc}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\n"
        "current-context: c\n")
    result = run(command, "--dir", project, "--kubeconfig", kubeconfig)
    assert_clean_failure(result, code=1, secrets=(SECRET,))
    assert "https://***@127.0.0.1" in result.err  # the cluster line and the error name it


class _Issuer(BaseHTTPRequestHandler):
    """A plain-http issuer on loopback: discovery, and a token endpoint that refuses all."""

    posts: list[str]
    token_endpoint: str

    def do_GET(self) -> None:
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        body = json.dumps({"issuer": base, "authorization_endpoint": base + "/auth",
                           "token_endpoint": self.token_endpoint or base + "/token",
                           "jwks_uri": base + "/keys"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        type(self).posts.append(self.rfile.read(length).decode())
        body = b'{"error": "invalid_grant"}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_issuer() -> Iterator[tuple[str, type[_Issuer]]]:
    handler = type("Issuer", (_Issuer,), {"posts": [], "token_endpoint": ""})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _cached_refresh(tmp_path: Path, argv: list[str]) -> Path:
    """An expired cache entry with a refresh token for ``argv``'s login."""
    from dexkit.oidc.cache import TokenCache
    from dexkit.oidc.options import identity_key, parse

    cache = tmp_path / "cache"
    TokenCache(cache).store(identity_key(parse(argv)), {
        "id_token": "a.b.c", "refresh_token": "refresh-" + SECRET, "expiry": 1})
    return cache


def test_n05_a_url_from_discovery_never_prints_its_password(
        tmp_path: Path, http_issuer: tuple[str, type[_Issuer]]) -> None:
    issuer, handler = http_issuer
    handler.token_endpoint = f"http://admin:{SECRET}@127.0.0.1:{CLOSED}/token"
    argv = ["--issuer", issuer, "--client-id", "kubernetes", "--allow-insecure-http"]
    cache = _cached_refresh(tmp_path, argv)
    result = run("token", *argv, "--token-cache-dir", cache)
    assert_clean_failure(result, code=1, secrets=(SECRET,))
    assert "http://***@127.0.0.1" in result.err  # the refused refresh, named without it


# --- N-06: plain-http issuers --------------------------------------------------------------------


def test_n06_the_password_grant_to_an_http_issuer_needs_consent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEXKIT_PASSWORD", SECRET)
    argv = ["token", "--issuer", f"http://127.0.0.1:{CLOSED}", "--client-id", "kubernetes",
            "--grant", "password", "--username", "u"]
    refused = run(*argv)
    assert_clean_failure(refused, code=2, secrets=(SECRET,))
    assert "clear text" in refused.err and "--allow-insecure-http" in refused.err
    allowed = run(*argv, "--allow-insecure-http")
    assert_clean_failure(allowed, code=1, secrets=(SECRET,))  # tried: nobody listens
    assert "warning: THE ISSUER IS PLAIN HTTP" in allowed.err
    assert "cannot connect" in allowed.err


@pytest.mark.parametrize("grant", ["authcode", "device"])
def test_n06_every_other_use_of_an_http_issuer_is_warned(grant: str) -> None:
    result = run("token", "--issuer", f"http://127.0.0.1:{CLOSED}", "--client-id",
                 "kubernetes", "--grant", grant, "--skip-open-browser")
    assert_clean_failure(result, code=1)
    assert "warning: THE ISSUER IS PLAIN HTTP" in result.err


def test_n06_login_and_kubeconfig_warn_about_an_http_issuer(project: Path) -> None:
    issuer = ["--issuer", f"http://127.0.0.1:{CLOSED}", "--client-id", "kubernetes"]
    login = run("login", "--dir", project, *issuer, "--no-browser")
    assert_clean_failure(login, code=1)
    assert "warning: THE ISSUER IS PLAIN HTTP" in login.err
    written = run("kubeconfig", "--dir", project, *issuer)
    assert written.code == 0, written.err
    assert "warning: THE ISSUER IS PLAIN HTTP" in written.err
    refused = run("kubeconfig", "--dir", project, *issuer, "--grant", "password")
    assert_clean_failure(refused, code=2)
    assert "clear text" in refused.err


def test_n06_doctor_warns_about_a_kubeconfig_user_of_the_http_issuer(project: Path,
                                                                      tmp_path: Path) -> None:
    https = f"https://127.0.0.1:{CLOSED}"
    assert run("kubeconfig", "--dir", project, "--issuer", "http" + https[5:],
               "--user", "plain").code == 0
    result = run("doctor", "--dir", project, "--offline", "-o", "json")
    checks = {c["id"]: c for c in json.loads(result.out)["results"]}
    insecure = checks["security.insecure"]
    assert insecure["status"] == "warn"
    assert "kubeconfig user 'plain' (plain-http issuer" in insecure["message"]


def test_n06_the_refresh_token_is_not_sent_in_clear_text_unasked(
        tmp_path: Path, http_issuer: tuple[str, type[_Issuer]]) -> None:
    issuer, handler = http_issuer
    argv = ["--issuer", issuer, "--client-id", "kubernetes"]
    cache = _cached_refresh(tmp_path, argv)
    result = run("token", *argv, "--token-cache-dir", cache)
    assert_clean_failure(result, code=1, secrets=(SECRET,))  # no browser: log in needed
    assert "refresh token is not sent" in result.err
    assert not [p for p in handler.posts if "refresh_token" in p]
    consented = run("token", *argv, "--allow-insecure-http", "--token-cache-dir", cache)
    assert_clean_failure(consented, code=1, secrets=(SECRET,))
    assert [p for p in handler.posts if "grant_type=refresh_token" in p]


# --- N-08: secret files: no links, ours, private ------------------------------------------------


class _Listener:
    """A TCP port that records whether anything connected to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except TimeoutError:
            return False
        conn.close()
        return True


def test_n08_a_linked_password_file_is_never_read_nor_sent(tmp_path: Path) -> None:
    listener = _Listener()
    project = tmp_path / "q"
    assert run("init", "--dir", project, "--connector", "static", "--issuer",
               f"https://127.0.0.1:{listener.port}").code == 0
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    stored = project / ".dexkit/passwords/admin@example.com"
    stored.unlink()
    stored.symlink_to(secret)
    result = run("login", "--dir", project, "--grant", "password")
    assert_clean_failure(result, code=1, secrets=(SECRET,))
    assert "is a symbolic link" in result.err
    assert not listener.connected(), "the issuer was contacted with the linked file's content"


def test_n08_init_never_copies_a_linked_password_file(tmp_path: Path) -> None:
    # a cloned project: a password "file" that is a link, and no hash yet in dexkit.yaml
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    project = tmp_path / "cloned"
    stored = project / ".dexkit/passwords/admin@example.com"
    stored.parent.mkdir(parents=True)
    stored.symlink_to(secret)
    result = run("init", "--dir", project, "--connector", "static")
    assert_clean_failure(result, code=1, secrets=(SECRET,))
    assert "is a symbolic link" in result.err
    assert stored.is_symlink() and not (project / "dexkit.yaml").exists()


def test_n08_a_password_file_others_can_read_is_refused(project: Path) -> None:
    stored = project / ".dexkit/passwords/admin@example.com"
    stored.chmod(0o644)
    result = run("login", "--dir", project, "--grant", "password")
    assert_clean_failure(result, code=1)
    assert "readable by other users (mode 0644)" in result.err and "chmod 600" in result.err


def test_n08_a_linked_key_is_never_read_nor_uploaded(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "id_ecdsa"
    key = project / "ssl/key.pem"
    elsewhere.write_bytes(key.read_bytes())
    elsewhere.chmod(0o600)
    key.unlink()
    key.symlink_to(elsewhere)
    for args in (["certs", "check"], ["deploy", "--kubeconfig", tmp_path / "nowhere"]):
        result = run(*args, "--dir", project)
        assert_clean_failure(result, code=1)
        assert "key.pem is a symbolic link" in result.err, args


# --- N-12: nothing a terminal acts on is printed raw --------------------------------------------


EVIL = "dex\x1b]0;PWNED\x07\x1b[2J\r\nX\x9b"


def test_n12_a_path_in_step_lines_is_escaped(tmp_path: Path) -> None:
    result = run("init", "--dir", tmp_path / "p\x1b]0;PWNED\x07")
    assert result.code == 0, result.err
    _no_raw_controls(result)
    assert "p\\x1b]0;PWNED\\x07/dexkit.yaml" in result.err
    tls = tmp_path / "q"
    tls.mkdir()
    (tls / "dexkit.yaml").write_text('tls:\n  dir: "ssl\\e[2J"\n')
    result = run("init", "--dir", tls)
    assert result.code == 0, result.err
    _no_raw_controls(result)


def _evil_cert(project: Path) -> None:
    ssl = project / "ssl"
    ca, ca_key = pki.load_cert(ssl / "ca.pem"), pki.load_key(ssl / "ca-key.pem")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, EVIL)]))
            .issuer_name(ca.subject).public_key(pki.load_key(ssl / "key.pem").public_key())
            .serial_number(7).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(EVIL.rstrip("\x9b"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (ssl / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize("args", [["certs", "show"], ["doctor", "--offline"], ["init"]])
def test_n12_a_certificates_subject_and_sans_are_escaped(project: Path, args: list[str]) -> None:
    _evil_cert(project)
    result = run(*args, "--dir", project)
    _no_raw_controls(result)
    assert "\\x1b" in result.out + result.err


def test_n12_the_dry_run_diff_header_is_escaped(project: Path, tmp_path: Path) -> None:
    from tests.unit.cli.test_adversarial import _manifest

    manifest = _manifest(tmp_path / "m")
    evil = manifest.with_name("kube\x1b[2J\rapiserver.yaml")
    manifest.rename(evil)
    result = run("apiserver", "patch", "--dir", project, "--dry-run", evil)
    assert result.code == 0, result.err
    _no_raw_controls(result)
    assert "--- a/" in result.out and "\\x1b[2J\\r" in result.out


def test_n12_token_errors_are_escaped() -> None:
    result = run(*TOKEN, "--x\x1b[2J\x9b")
    assert_clean_failure(result, code=2)
    _no_raw_controls(result)
    assert "--x\\x1b[2J\\x9b" in result.err


# --- N-13: special files are refused by name, never read or waited on ---------------------------


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    os.mkfifo(path)
    return path


def test_n13_a_fifo_anywhere_dexkit_reads_is_refused_not_waited_on(project: Path,
                                                                    tmp_path: Path) -> None:
    from tests.unit.cli.test_adversarial import _manifest

    cases: list[tuple[list[str | os.PathLike[str]], Path]] = []
    yaml_dir = tmp_path / "y"
    yaml_dir.mkdir()
    cases.append((["apiserver", "flags", "--dir", yaml_dir], _fifo(yaml_dir / "dexkit.yaml")))
    ssl = tmp_path / "s"
    assert run("init", "--dir", ssl).code == 0
    cases.append((["certs", "check", "--dir", ssl], _fifo(ssl / "ssl/ca.pem")))
    kc = _fifo(tmp_path / "kc")
    cases.append((["kubeconfig", "--dir", project, "--kubeconfig", kc], kc))
    merge = _fifo(tmp_path / "authn.yaml")
    cases.append((["apiserver", "config", "--dir", project, "--merge", merge], merge))
    manifest = _fifo(_manifest(tmp_path / "m"))
    cases.append((["apiserver", "patch", "--dir", project, manifest], manifest))
    out = tmp_path / "out"
    assert run("render", "--dir", project, "--out", out).code == 0
    rendered = _fifo(out / "dex.yaml")
    cases.append((["render", "--dir", project, "--out", out], rendered))
    ca = _fifo(tmp_path / "ca.pem")
    cases.append(([*TOKEN, "--ca-file", ca, "--token-cache-dir", tmp_path / "cache"], ca))
    for args, fifo in cases:
        result = _process(*args)
        assert_clean_failure(result, code=1)
        assert f"{fifo} is a named pipe (FIFO), not a regular file" in result.err, args


def test_n13_a_fifo_token_cache_entry_is_no_entry(tmp_path: Path) -> None:
    from dexkit.oidc.options import identity_key, parse

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    _fifo(cache / f"{identity_key(parse([*TOKEN[1:], '--token-cache-dir', str(cache)]))}.token")
    result = _process(*TOKEN, "--token-cache-dir", cache)
    assert_clean_failure(result, code=1)  # not served, not waited on: a login is needed


def test_n13_an_env_file_pipe_without_a_writer_is_empty_not_a_hang(project: Path,
                                                                   tmp_path: Path) -> None:
    result = _process("deploy", "--dir", project, "--kubeconfig", tmp_path / "nowhere",
                      "--env-file", _fifo(tmp_path / "env"))
    assert_clean_failure(result, code=1)
    assert "no kubeconfig" in result.err


@pytest.mark.parametrize("where", ["dexkit.yaml", "ssl/ca.pem", "ca-file"])
def test_n13_a_device_is_refused_not_read_until_memory_runs_out(project: Path,
                                                                where: str) -> None:
    if where == "ca-file":
        args: list[str | os.PathLike[str]] = [*TOKEN, "--ca-file", "/dev/zero"]
    else:
        target = project / where
        target.unlink()
        target.symlink_to("/dev/zero")
        args = ["certs", "check", "--dir", project]
    result = _process(*args)
    assert_clean_failure(result, code=1)
    assert "/dev/zero is a character device, not a regular file" in result.err or \
        f"{where} is a character device" in result.err


# --- N-14: user mistakes are user errors -------------------------------------------------------


def test_n14_a_token_cache_directory_that_cannot_be_made(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    monkeypatch.setenv("KUBECACHEDIR", str(afile))
    result = run(*TOKEN)
    assert_clean_failure(result, code=1)
    assert f"cannot create the token cache directory {afile}/dexkit: Not a directory" in \
        result.err and "--token-cache-dir" in result.err
    monkeypatch.delenv("KUBECACHEDIR")
    result = run(*TOKEN, "--token-cache-dir", afile / "sub")
    assert_clean_failure(result, code=1)
    assert "Not a directory" in result.err


def test_n14_an_unwritable_home_and_an_immutable_cache(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.is_relative_to(tmp_path / ".kube"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    result = run(*TOKEN)  # HOME nobody may write to: ~/.kube cannot be made
    assert_clean_failure(result, code=1)
    assert "cannot create the token cache directory" in result.err
    monkeypatch.undo()
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / "immutable"
    cache.mkdir(mode=0o700)
    real_open = os.open

    def immutable(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(cache)) and flags & os.O_CREAT:
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", immutable)
    result = run(*TOKEN, "--token-cache-dir", cache)
    assert_clean_failure(result, code=1)
    assert f"cannot lock an entry in the token cache directory {cache}" in result.err


def test_n14_exec_info_nested_very_deep_means_the_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_EXEC_INFO", "[" * 100_000)
    result = run(*TOKEN)
    assert_clean_failure(result, code=1)
    assert "cannot connect" in result.err


@pytest.mark.parametrize(("issuer", "says"), [
    (f"https://127.0.0.1:{CLOSED}/\x1b[2J", "contains white space, a control character"),
    (f"https://127.0.0.1:{CLOSED}:1", "in the issuer is not a port from 1 to 65535"),
])
def test_n14_an_issuer_dexkit_token_cannot_use(issuer: str, says: str) -> None:
    result = run("token", "--issuer", issuer, "--client-id", "k")
    assert_clean_failure(result, code=2)
    _no_raw_controls(result)
    assert says in result.err


def _authn(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "authn.yaml"
    path.write_text("apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\n"
                    + text)
    return path


# An entry whose issuer is text is another issuer's, kept with a note (test_adversarial_pki).
@pytest.mark.parametrize(("jwt", "says"), [
    ("jwt:\n- issuer: {url: ISSUER, audiences: [kubernetes]}\n  claimMappings: &cm {username: "
     "{claim: email}}\n- issuer: {url: 'https://other.example.com', audiences: [x]}\n"
     "  claimMappings: *cm\n", "*cm refers to Dex's jwt entry"),
])
def test_n14_merge_into_an_authentication_config_it_cannot_edit(
        project: Path, tmp_path: Path, jwt: str, says: str) -> None:
    text = (project / "dexkit.yaml").read_text()
    (project / "dexkit.yaml").write_text(text.replace("mode: flags",
                                                      "mode: authentication-config"))
    merge = _authn(tmp_path, jwt.replace("ISSUER", f"'https://127.0.0.1:{CLOSED}'"))
    before = merge.read_bytes()
    result = run("apiserver", "config", "--dir", project, "--merge", merge, "--write")
    assert_clean_failure(result, code=2)
    assert says in result.err
    assert merge.read_bytes() == before


@pytest.mark.parametrize("command", ["merge", "env-file", "render-out"])
def test_n14_a_binary_file_where_text_belongs(project: Path, tmp_path: Path,
                                              command: str) -> None:
    binary = b"\xff\xfe\x00\x01binary\x80"
    if command == "merge":
        path = tmp_path / "authn.yaml"
        path.write_bytes(binary)
        result = run("apiserver", "config", "--dir", project, "--merge", path)
    elif command == "env-file":
        path = tmp_path / "env"
        path.write_bytes(binary)
        result = run("deploy", "--dir", project, "--env-file", path)
    else:
        out = tmp_path / "out"
        assert run("render", "--dir", project, "--out", out).code == 0
        path = out / "dex.yaml"
        path.write_bytes(binary)
        result = run("render", "--dir", project, "--out", out)
        assert path.read_bytes() == binary
    assert_clean_failure(result, code=1)
    assert f"{path} is not UTF-8 text" in result.err


def test_n14_a_dexkit_flag_whose_value_was_forgotten(project: Path, tmp_path: Path) -> None:
    from tests.unit.cli.test_adversarial import _manifest

    manifest = _manifest(tmp_path / "m")
    text = manifest.read_text()
    anchor = "    - --secure-port=6443\n"
    assert anchor in text
    manifest.write_text(text.replace(anchor, "    - --oidc-issuer-url\n" + anchor))
    before = manifest.read_bytes()
    result = run("apiserver", "patch", "--dir", project, manifest)
    assert_clean_failure(result, code=2)
    assert "kube-apiserver.yaml:" in result.err and "--oidc-issuer-url" in result.err
    assert "--oidc-issuer-url=VALUE" in result.err
    assert manifest.read_bytes() == before

