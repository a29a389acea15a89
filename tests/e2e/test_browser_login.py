"""Browser and device logins for real: headless Chromium at Dex's real login page.

One sandbox (API server + Dex with the rendered config, static password users) and one
Chromium serve the whole module; each test starts its own ``dexkit`` process, as a user
would, and plays the person in the browser. The Dex client registers loopback redirect URIs
on ports chosen free for this run (Dex allows only listed URIs), and every login passes
``--listen-address`` for them.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from dexkit.config import load_config
from dexkit.oidc.options import identity_key, parse
from dexkit.oidc.settings import project_token_args
from dexkit.sandbox import controlplane
from tests.e2e.browser import CHROMEDRIVER, CHROMIUM, Browser, UrlInbox, spki_pin, wait_for
from tests.e2e.conftest import (
    KUBERNETES_VERSION,
    DexSandbox,
    new_static_project,
    peer_unavailable,
    say,
)
from tests.e2e.oidc_sandbox import start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.needs_dex]
USER = "admin@example.com"
SECOND = "bob@example.com"


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    dexkit_port, kubelogin_port = controlplane.free_ports(2)
    return {"dexkit": dexkit_port, "kubelogin": kubelogin_port}


def register_redirects(project: Path, ports: dict[str, int]) -> None:
    """The client as a Dex set up for dexkit on one port and for kubelogin's default redirect
    (``http://localhost:PORT``) on another."""
    import bcrypt
    import yaml

    from dexkit.config import validate_values
    from dexkit.project import render_config_file

    path = project / "dexkit.yaml"
    data = yaml.safe_load(path.read_text())
    data["clients"] = [{"id": "kubernetes", "name": "Kubernetes", "redirectURIs": [
        f"http://127.0.0.1:{ports['dexkit']}/callback", f"http://localhost:{ports['kubelogin']}"]}]
    # a second person, to prove the token cache keeps them apart
    password = "second-" + os.urandom(8).hex()
    data["staticUsers"].append({
        "email": SECOND, "username": "bob", "userID": "5f1c0a52-3d0e-4b1e-9c57-0a3c2c1f0b0b",
        "hash": bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode(),
        "groups": ["team-b"]})
    path.write_text(render_config_file(validate_values(data)))
    stored = project / ".dexkit" / "passwords" / SECOND
    stored.write_text(password + "\n")
    stored.chmod(0o600)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, dex_binary: Path,
        control_plane_binaries: controlplane.ControlPlaneBinaries,
        ports: dict[str, int]) -> Iterator[DexSandbox]:
    project = new_static_project(tmp_path_factory.mktemp("browser") / "project")
    register_redirects(project, ports)
    running = start_stack(project, control_plane_binaries, dex_binary, KUBERNETES_VERSION)
    user = load_config(project).config.static_users[0].email
    password = (project / ".dexkit" / "passwords" / user).read_text().strip()
    try:
        yield DexSandbox(project, running.plane, running, user, password)
    finally:
        running.stop()


@pytest.fixture(scope="module")
def chromium(box: DexSandbox) -> Iterator[Browser]:
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            peer_unavailable(f"{tool} is missing (apt-get install chromium chromium-driver)")
    browser = Browser([spki_pin(box.project / box.config.tls.dir / "cert.pem")])
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def browser(chromium: Browser) -> Browser:
    chromium.fresh()
    return chromium


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with their own HOME and token cache, no KUBECONFIG."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "DEXKIT_TOKEN_CACHE", "KUBECACHEDIR", "BROWSER",
                        "DEXKIT_PASSWORD", "KUBERNETES_EXEC_INFO")}
    (tmp_path / "home").mkdir()
    return {**env, "HOME": str(tmp_path / "home"), "NO_COLOR": "1"}


def dexkit_script() -> str:
    return str(Path(sys.executable).with_name("dexkit"))


class Running:
    """A dexkit process whose stderr is read as it comes (the device code, the keyboard URL)."""

    def __init__(self, argv: list[str], env: dict[str, str], stdin: int | None = None) -> None:
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=stdin or subprocess.DEVNULL,
                                     text=True)
        self.err_lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err_lines.append(line.rstrip("\n"))

    def line_with(self, needle: str, timeout: float = 30.0) -> str:
        return str(wait_for(f"'{needle}' on dexkit's stderr",
                            lambda: next((x for x in self.err_lines if needle in x), None),
                            timeout))

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        out = self.proc.stdout.read() if self.proc.stdout else ""
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code, out, "\n".join(self.err_lines)


def login_argv(box: DexSandbox, *extra: str) -> list[str]:
    return [dexkit_script(), "login", "--dir", str(box.project), "--print-token", "--output",
            "json", *extra]


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def cache_file(box: DexSandbox, home: dict[str, str], *args: str) -> Path:
    key = identity_key(parse([*project_token_args(box.project, box.config), *args]))
    return Path(home["HOME"]) / ".kube" / "cache" / "dexkit" / f"{key}.token"


def test_authcode_login_checks_state_nonce_and_pkce_and_fills_kubectls_cache(
        box: DexSandbox, browser: Browser, home: dict[str, str], tmp_path: Path,
        ports: dict[str, int], kubectl: Path) -> None:
    inbox = UrlInbox(tmp_path / "inbox")
    listen = ["--listen-address", f"127.0.0.1:{ports['dexkit']}"]
    run = Running(login_argv(box, "--browser-command", str(inbox.command), *listen), home)
    url = inbox.next_url()
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["redirect_uri"] == f"http://127.0.0.1:{ports['dexkit']}/callback"
    browser.open(url)
    browser.dex_login(USER, box.password)
    assert "Logged in" in browser.wait_text("Logged in")
    code, out, err = run.finish()
    assert code == 0, err
    token = json.loads(out)["id_token"]
    assert claims_of(token)["nonce"] == query["nonce"]  # the token is this login's
    assert json.loads(out)["claims"]["email"] == USER
    # ... and kubectl's `dexkit token` answers from that cache entry, with no browser at all
    cached = cache_file(box, home, *listen)
    assert cached.stat().st_mode & 0o777 == 0o600
    kubeconfig = tmp_path / "kubeconfig"
    wrote = subprocess.run([dexkit_script(), "kubeconfig", "--dir", str(box.project),
                            "--kubeconfig", str(kubeconfig), "--context", "dex", "--cluster",
                            "sandbox", "--server", box.plane.apiserver_url, "--server-ca",
                            str(box.plane.layout.ca), "--use-context", *listen],
                           env=home, capture_output=True, text=True, check=False)
    assert wrote.returncode == 0, wrote.stderr
    whoami = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "auth", "whoami",
                             "-o", "jsonpath={.status.userInfo.username}"],
                            env={**home, "BROWSER": "false"}, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert whoami.returncode == 0, whoami.stderr
    assert whoami.stdout == USER


def test_wrong_password_on_the_real_page_then_the_right_one(
        box: DexSandbox, browser: Browser, home: dict[str, str], tmp_path: Path,
        ports: dict[str, int]) -> None:
    inbox = UrlInbox(tmp_path / "inbox")
    run = Running(login_argv(box, "--browser-command", str(inbox.command),
                             "--listen-address", f"127.0.0.1:{ports['dexkit']}"), home)
    browser.open(inbox.next_url())
    browser.dex_login(USER, "not-the-password")
    assert "Invalid Email Address and password" in browser.wait_text("Invalid")
    assert run.proc.poll() is None, "a refused password does not end the login"
    browser.dex_login(USER, box.password)
    browser.wait_text("Logged in")
    code, out, err = run.finish()
    assert code == 0, err
    assert json.loads(out)["claims"]["email"] == USER


def test_user_cancels_on_dex_approval_screen(
        box: DexSandbox, browser: Browser, home: dict[str, str], tmp_path: Path,
        ports: dict[str, int]) -> None:
    """``approval_prompt=force`` (an extra authorization parameter) makes Dex show its
    approval screen; the user clicks Cancel, Dex never redirects, the CLI gives up."""
    inbox = UrlInbox(tmp_path / "inbox")
    run = Running(login_argv(box, "--browser-command", str(inbox.command),
                             "--listen-address", f"127.0.0.1:{ports['dexkit']}",
                             "--oidc-auth-request-extra-params", "approval_prompt=force",
                             "--authentication-timeout-sec", "8"), home)
    browser.open(inbox.next_url())
    browser.dex_login(USER, box.password)
    browser.wait_text("Grant Access")
    browser.click_xpath("//button[.//span[text()='Cancel']]")
    assert "Approval rejected" in browser.wait_text("Approval rejected")
    code, out, err = run.finish()
    assert code == 1 and out == ""
    lines = [x for x in err.splitlines() if x.startswith(("error:", "hint:"))]
    assert [x.split(":")[0] for x in lines] == ["error", "hint"], err
    assert "no login callback within 8 s" in lines[0]
    assert "Traceback" not in err
    assert not (Path(home["HOME"]) / ".kube" / "cache" / "dexkit").exists() or not any(
        (Path(home["HOME"]) / ".kube" / "cache" / "dexkit").glob("*.token"))


def test_a_callback_with_a_wrong_state_is_refused_and_the_real_login_wins(
        box: DexSandbox, browser: Browser, home: dict[str, str], tmp_path: Path,
        ports: dict[str, int]) -> None:
    inbox = UrlInbox(tmp_path / "inbox")
    run = Running(login_argv(box, "--browser-command", str(inbox.command),
                             "--listen-address", f"127.0.0.1:{ports['dexkit']}"), home)
    url = inbox.next_url()
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    forged = f"{query['redirect_uri']}?code=stolen-code&state=forged-{query['state'][:8]}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)  # noqa: S310 - the loopback callback
    assert refused.value.code == 400
    assert b"state mismatch" in refused.value.read()
    browser.open(forged)  # and through the browser, as a CSRF link would arrive
    assert "state mismatch" in browser.wait_text("state mismatch")
    assert run.proc.poll() is None
    browser.open(url)
    browser.dex_login(USER, box.password)
    browser.wait_text("Logged in")
    code, out, err = run.finish()
    assert code == 0, err
    assert claims_of(json.loads(out)["id_token"])["nonce"] == query["nonce"]


def test_device_login_enter_the_user_code(box: DexSandbox, browser: Browser,
                                          home: dict[str, str]) -> None:
    run = Running(login_argv(box, "--grant", "device", "--skip-open-browser"), home)
    line = run.line_with("enter the code")
    words = line.split()
    uri, user_code = words[words.index("open") + 1], words[-1]
    assert uri == f"{box.config.issuer}/device"
    browser.open(uri)
    browser.wait_text("Enter User Code")
    browser.fill("user_code", user_code)
    browser.click("#submit-login")
    browser.dex_login(USER, box.password)
    browser.wait_text("Login Successful")
    code, out, err = run.finish(timeout=90)
    assert code == 0, err
    assert json.loads(out)["claims"]["email"] == USER


def test_kubectl_exec_user_in_authcode_mode_opens_the_browser(
        box: DexSandbox, browser: Browser, home: dict[str, str], tmp_path: Path,
        ports: dict[str, int], kubectl: Path) -> None:
    """kubectl without a terminal (interactive: false) still gets a browser login: the flow
    needs no stdin. The BROWSER variable is the hook, as on a desktop."""
    inbox = UrlInbox(tmp_path / "inbox")
    kubeconfig = tmp_path / "kubeconfig"
    wrote = subprocess.run([dexkit_script(), "kubeconfig", "--dir", str(box.project),
                            "--kubeconfig", str(kubeconfig), "--context", "dex", "--cluster",
                            "sandbox", "--server", box.plane.apiserver_url, "--server-ca",
                            str(box.plane.layout.ca), "--use-context", "--listen-address",
                            f"127.0.0.1:{ports['dexkit']}"],
                           env=home, capture_output=True, text=True, check=False)
    assert wrote.returncode == 0, wrote.stderr
    env = {**home, "BROWSER": str(inbox.command)}
    argv = [str(kubectl), "--kubeconfig", str(kubeconfig), "auth", "whoami", "-o",
            "jsonpath={.status.userInfo.username}"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
    browser.open(inbox.next_url())
    browser.dex_login(USER, box.password)
    browser.wait_text("Logged in")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert out == USER
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)
    assert again.returncode == 0 and again.stdout == USER
    assert len(inbox.file.read_text().splitlines()) == 1, "the second call used the cache"


def test_keyboard_login_through_dex_out_of_band_page(box: DexSandbox, browser: Browser,
                                                      home: dict[str, str]) -> None:
    run = Running(login_argv(box, "--grant", "authcode-keyboard"), home,
                  stdin=subprocess.PIPE)
    url = run.line_with("/auth?").strip()
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["redirect_uri"] == "urn:ietf:wg:oauth:2.0:oob"
    assert query["code_challenge_method"] == "S256"
    browser.open(url)
    browser.dex_login(USER, box.password)
    browser.wait_text("Login Successful")
    code_value = browser.driver.find_element("css selector", "input").get_attribute("value")
    assert run.proc.stdin is not None
    run.proc.stdin.write(f"{code_value}\n")
    run.proc.stdin.close()
    code, out, err = run.finish()
    assert code == 0, err
    assert claims_of(json.loads(out)["id_token"])["nonce"] == query["nonce"]


def test_keyboard_user_without_a_terminal_is_told_the_exact_login(
        box: DexSandbox, home: dict[str, str]) -> None:
    args = project_token_args(box.project, box.config, grant="authcode-keyboard")
    result = subprocess.run([dexkit_script(), "token", *args], env={
        **home, "KUBERNETES_EXEC_INFO": json.dumps({
            "apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
            "spec": {"interactive": False}})}, capture_output=True, text=True,
        stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert result.returncode == 1 and result.stdout == ""
    error, hint = result.stderr.strip().splitlines()[-2:]
    assert error.startswith("error: the keyboard login reads the code from a terminal")
    assert hint.startswith("hint: log in again in a terminal") and "dexkit login --issuer" in hint


# --- the cache keeps identities apart (issue 13, item 8) ---------------------------------------


def test_two_users_of_one_dex_and_client_get_their_own_tokens(
        box: DexSandbox, home: dict[str, str], tmp_path: Path, kubectl: Path) -> None:
    """Two kubeconfig users (password grant, same Dex, same client, same HOME and cache):
    each context is its own person at the API server."""
    kubeconfig = tmp_path / "kubeconfig"
    for user, context in ((USER, "alice"), (SECOND, "bob")):
        wrote = subprocess.run(
            [dexkit_script(), "kubeconfig", "--dir", str(box.project), "--kubeconfig",
             str(kubeconfig), "--user", context, "--context", context, "--cluster", "sandbox",
             "--server", box.plane.apiserver_url, "--server-ca", str(box.plane.layout.ca),
             "--grant", "password", "--username", user], env=home, capture_output=True,
            text=True, check=False)
        assert wrote.returncode == 0, wrote.stderr
    seen = {}
    for _ in range(2):  # the second round answers from the cache
        for context in ("alice", "bob"):
            whoami = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "--context",
                                     context, "auth", "whoami", "-o",
                                     "jsonpath={.status.userInfo.username}"], env=home,
                                    capture_output=True, text=True, timeout=60,
                                    stdin=subprocess.DEVNULL, check=False)
            assert whoami.returncode == 0, whoami.stderr
            seen.setdefault(context, set()).add(whoami.stdout)
    assert seen == {"alice": {USER}, "bob": {SECOND}}
    cache = Path(home["HOME"]) / ".kube" / "cache" / "dexkit"
    assert len(list(cache.glob("*.token"))) == 2


# --- kubelogin's own documented snippets, with dexkit as the command (issue 14) ----------------


def kubelogin_user(kubectl: Path, kubeconfig: Path, env: dict[str, str], *args: str) -> None:
    """kubelogin's docs/setup.md step 5, literally, with ``dexkit`` for ``kubectl oidc-login``."""
    result = subprocess.run([
        str(kubectl), "--kubeconfig", str(kubeconfig), "config", "set-credentials", "oidc",
        "--exec-interactive-mode=Never",
        "--exec-api-version=client.authentication.k8s.io/v1",
        "--exec-command=dexkit", "--exec-arg=get-token",
        *[f"--exec-arg={a}" for a in args]], env=env, capture_output=True, text=True,
        check=False)
    assert result.returncode == 0, result.stderr


def kubelogin_kubeconfig(box: DexSandbox, kubectl: Path, tmp_path: Path,
                         env: dict[str, str], *args: str) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    ca = box.project / box.config.tls.dir / "ca.pem"
    kubelogin_user(kubectl, kubeconfig, env, f"--oidc-issuer-url={box.config.issuer}",
                   "--oidc-client-id=kubernetes", f"--certificate-authority={ca}", *args)
    for argv in (["config", "set-cluster", "sandbox", f"--server={box.plane.apiserver_url}",
                  f"--certificate-authority={box.plane.layout.ca}", "--embed-certs"],
                 ["config", "set-context", "oidc", "--cluster=sandbox", "--user=oidc"],
                 ["config", "use-context", "oidc"]):
        done = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), *argv], env=env,
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    return kubeconfig


def whoami(kubectl: Path, kubeconfig: Path, env: dict[str, str],
           user: str = "oidc") -> subprocess.CompletedProcess[str]:
    """kubelogin's setup.md step 6 (``kubectl --user=oidc``), asking who we are."""
    return subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), f"--user={user}",
                           "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
                          env=env, capture_output=True, text=True, timeout=90,
                          stdin=subprocess.DEVNULL, check=False)


def test_kubelogin_password_snippet(box: DexSandbox, kubectl: Path, tmp_path: Path,
                                    home: dict[str, str]) -> None:
    """usage.md, Resource Owner Password Credentials: --username and --password."""
    env = {**home, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{home['PATH']}"}
    kubeconfig = kubelogin_kubeconfig(box, kubectl, tmp_path, env, "--username=" + USER,
                                      "--password=" + box.password)
    result = whoami(kubectl, kubeconfig, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == USER
    assert "warning: --password puts the password in the process's arguments" in result.stderr
    assert box.password not in result.stderr


def test_kubelogin_authcode_snippets_listen_address_extra_params_extra_scopes(
        box: DexSandbox, kubectl: Path, browser: Browser, tmp_path: Path,
        home: dict[str, str], ports: dict[str, int]) -> None:
    """usage.md, Authorization Code Flow: --listen-address, the default redirect
    http://localhost:PORT of a Dex client registered for kubelogin, extra params, extra
    scopes, --browser-command, --authentication-timeout-sec, --token-cache-dir."""
    inbox = UrlInbox(tmp_path / "inbox")
    env = {**home, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{home['PATH']}"}
    cache = tmp_path / "kubelogin-cache"
    kubeconfig = kubelogin_kubeconfig(
        box, kubectl, tmp_path, env, "--grant-type=authcode",
        f"--listen-address=127.0.0.1:{ports['kubelogin']}",
        "--oidc-auth-request-extra-params=approval_prompt=force", "--oidc-extra-scope=email",
        "--oidc-extra-scope=profile", f"--browser-command={inbox.command}",
        "--authentication-timeout-sec=60", f"--token-cache-dir={cache}")
    run = subprocess.Popen([str(kubectl), "--kubeconfig", str(kubeconfig), "--user=oidc", "auth",
                            "whoami", "-o", "jsonpath={.status.userInfo.username}"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    url = inbox.next_url()
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["redirect_uri"] == f"http://localhost:{ports['kubelogin']}"
    assert query["approval_prompt"] == "force"
    browser.open(url)
    browser.dex_login(USER, box.password)
    browser.wait_text("Grant Access")
    browser.click_xpath("//button[.//span[text()='Grant Access']]")
    browser.wait_text("Logged in")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert out == USER
    assert len(list(cache.glob("*.token"))) == 1


def test_kubelogin_device_code_and_force_refresh_and_ca_data(
        box: DexSandbox, kubectl: Path, browser: Browser, tmp_path: Path,
        home: dict[str, str]) -> None:
    """usage.md: --grant-type=device-code with --skip-open-browser (the code is on kubectl's
    stderr), then --force-refresh and --certificate-authority-data on the cached login."""
    env = {**home, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{home['PATH']}"}
    ca_data = base64.b64encode((box.project / box.config.tls.dir / "ca.pem").read_bytes())
    kubeconfig = kubelogin_kubeconfig(box, kubectl, tmp_path, env, "--grant-type=device-code",
                                      "--skip-open-browser",
                                      f"--certificate-authority-data={ca_data.decode()}")
    run = Running([str(kubectl), "--kubeconfig", str(kubeconfig), "--user=oidc", "auth",
                   "whoami", "-o", "jsonpath={.status.userInfo.username}"], env)
    words = run.line_with("enter the code").split()
    browser.open(words[words.index("open") + 1])
    browser.fill("user_code", words[-1])
    browser.click("#submit-login")
    browser.dex_login(USER, box.password)
    browser.wait_text("Login Successful")
    code, out, err = run.finish(timeout=90)
    assert code == 0, err
    assert out == USER
    # --force-refresh: the cached login is refreshed (no new device code), a new token
    kubelogin_user(kubectl, kubeconfig, env, f"--oidc-issuer-url={box.config.issuer}",
                   "--oidc-client-id=kubernetes", "--grant-type=device-code",
                   "--skip-open-browser", f"--certificate-authority-data={ca_data.decode()}",
                   "--force-refresh")
    rerun = Running([str(kubectl), "--kubeconfig", str(kubeconfig), "--user=oidc", "auth",
                     "whoami", "-o", "jsonpath={.status.userInfo.username}"], env)
    try:
        code, out, err = rerun.finish(timeout=60)
    except subprocess.TimeoutExpired:
        rerun.proc.kill()
        raise AssertionError(f"--force-refresh did not refresh: {rerun.err_lines}") from None
    again = subprocess.CompletedProcess(rerun.proc.args, code, out, err)
    assert again.returncode == 0, again.stderr
    assert again.stdout == USER and "enter the code" not in again.stderr


def test_token_cache_storage_keyring_without_a_backend_degrades_to_disk(
        box: DexSandbox, home: dict[str, str], tmp_path: Path) -> None:
    env = {**home, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
           "DEXKIT_PASSWORD": box.password}
    args = [*project_token_args(box.project, box.config, grant="password", username=USER),
            "--token-cache-storage", "keyring", "--token-cache-dir", str(tmp_path / "c")]
    result = subprocess.run([dexkit_script(), "token", *args], env=env, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "kept on disk" in result.stderr
    assert len(list((tmp_path / "c").glob("*.token"))) == 1


def test_token_cache_storage_keyring_with_a_backend(box: DexSandbox, home: dict[str, str],
                                                     tmp_path: Path) -> None:
    """A real keyring backend (keyrings.alt's file keyring: the keyring library's own API, a
    file instead of a desktop service): the entry goes there, not to the cache directory, and
    the next call answers from it; logout removes it."""
    pytest.importorskip("keyrings.alt", reason="keyrings.alt is a test dependency")
    keyring_home = tmp_path / "keyring"
    env = {**home, "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
           "XDG_DATA_HOME": str(keyring_home), "DEXKIT_PASSWORD": box.password}
    args = [*project_token_args(box.project, box.config, grant="password", username=USER),
            "--token-cache-storage", "keyring", "--token-cache-dir", str(tmp_path / "c")]
    first = subprocess.run([dexkit_script(), "token", *args], env=env, capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert not list((tmp_path / "c").glob("*.token")), "the token is in the keyring"
    stored = list(keyring_home.rglob("*.cfg"))
    assert stored and "dexkit" in stored[0].read_text()
    env.pop("DEXKIT_PASSWORD")
    second = subprocess.run([dexkit_script(), "token", *args], env=env, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["status"]["token"] == json.loads(
        first.stdout)["status"]["token"]
    out = subprocess.run([dexkit_script(), "logout", *args], env=env, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and "forgot" in out.stderr, out.stderr
    assert "id_token" not in stored[0].read_text()


# --- a portable kubeconfig (issue 14, item 3) ---------------------------------------------------


def test_printed_kubeconfig_logs_in_from_another_home(box: DexSandbox, home: dict[str, str],
                                                      tmp_path: Path, kubectl: Path) -> None:
    printed = subprocess.run([dexkit_script(), "kubeconfig", "--dir", str(box.project), "-o",
                              "-", "--grant", "password", "--username", USER, "--context",
                              "dex", "--cluster", "sandbox", "--server",
                              box.plane.apiserver_url, "--server-ca",
                              str(box.plane.layout.ca)],
                             env=home, capture_output=True, text=True, check=False)
    assert printed.returncode == 0, printed.stderr
    text = printed.stdout
    assert str(box.project) not in text and str(Path(sys.executable).parent) not in text
    assert "installHint" in text and "command: dexkit" in text
    other = tmp_path / "colleague"
    (other / ".kube").mkdir(parents=True)
    (other / ".kube" / "config").write_text(text)
    env = {**home, "HOME": str(other), "DEXKIT_PASSWORD": box.password,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{home['PATH']}"}
    result = subprocess.run([str(kubectl), "auth", "whoami", "-o",
                             "jsonpath={.status.userInfo.username}"], env=env, cwd=other,
                            capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == USER


# --- no browser storm (issue 20, item 4) --------------------------------------------------------


def storm_argv(box: DexSandbox, inbox: UrlInbox, ports: dict[str, int], *extra: str) -> list[str]:
    """kubectl's call of the plugin (authcode, no terminal), as an IDE would make it."""
    return [dexkit_script(), "token", *project_token_args(box.project, box.config),
            "--listen-address", f"127.0.0.1:{ports['dexkit']}", "--browser-command",
            str(inbox.command), *extra]


def pages(inbox: UrlInbox) -> int:
    return len(inbox.file.read_text().splitlines()) if inbox.file.exists() else 0


def test_ten_parallel_token_calls_open_one_login_page_and_all_get_its_token(
        box: DexSandbox, browser: Browser, home: dict[str, str], tmp_path: Path,
        ports: dict[str, int]) -> None:
    inbox = UrlInbox(tmp_path / "inbox")
    argv = storm_argv(box, inbox, ports)
    started = time.monotonic()
    runs = [Running(argv, home) for _ in range(10)]
    browser.open(inbox.next_url())
    browser.dex_login(USER, box.password)
    browser.wait_text("Logged in")
    results = [run.finish(timeout=120) for run in runs]
    took = time.monotonic() - started
    assert [code for code, _, _ in results] == [0] * 10, [err for _, _, err in results]
    tokens = {json.loads(out)["status"]["token"] for _, out, _ in results}
    assert len(tokens) == 1, "one login, and all ten answer with its token"
    assert claims_of(tokens.pop())["email"] == USER
    assert pages(inbox) == 1
    assert sum("waiting up to 210 s" in err for _, _, err in results) >= 1
    assert not any("Traceback" in err for _, _, err in results)
    say(f"no browser storm: 10 parallel 'dexkit token' calls, {pages(inbox)} login page, "
        f"{len(results)} tokens, {took:.1f} s from start to the last token (the person's "
        "login in Chromium included)")


def test_a_cancelled_login_makes_the_parallel_calls_fail_fast_then_one_page_again(
        box: DexSandbox, browser: Browser, home: dict[str, str], tmp_path: Path,
        ports: dict[str, int]) -> None:
    """The person cancels on Dex's approval screen: the call that opened the page gives up at
    its timeout, the nine waiting ones fail at once with one line that says so, no second page
    opens; after the pause (8 s here instead of 60) one call opens one page again."""
    inbox = UrlInbox(tmp_path / "inbox")
    pause = 8
    argv = storm_argv(box, inbox, ports, "--oidc-auth-request-extra-params",
                      "approval_prompt=force", "--authentication-timeout-sec", "10",
                      "--login-retry-after-sec", str(pause))
    runs = [Running(argv, home) for _ in range(10)]
    browser.open(inbox.next_url())
    browser.dex_login(USER, box.password)
    browser.wait_text("Grant Access")
    browser.click_xpath("//button[.//span[text()='Cancel']]")
    browser.wait_text("Approval rejected")
    results = [run.finish(timeout=120) for run in runs]
    failed_at = time.monotonic()
    assert [(code, out) for code, out, _ in results] == [(1, "")] * 10
    lines = [[x for x in err.splitlines() if x.startswith(("error:", "hint:"))]
             for _, _, err in results]
    assert all([x.split(":")[0] for x in pair] == ["error", "hint"] for pair in lines), lines
    timed_out = [pair for pair in lines if "no login callback within 10 s" in pair[0]]
    paused = [pair for pair in lines if "failed or was cancelled" in pair[0]]
    assert len(timed_out) == 1 and len(paused) == 9, lines
    for error, hint in paused:
        assert "the last browser login for this user failed or was cancelled" in error
        assert "dexkit opens no new one for" in error
        assert "or log in now: dexkit login --issuer" in hint
    assert not any("Traceback" in err for _, _, err in results)
    assert pages(inbox) == 1, "no second page while the first was cancelled"
    record = cache_file(box, home, "--oidc-auth-request-extra-params",
                        "approval_prompt=force").with_suffix(".failed")
    assert record.stat().st_mode & 0o777 == 0o600
    assert box.password not in record.read_text()

    started = time.monotonic()
    again = subprocess.run(argv, env=home, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60, check=False)
    fail_fast = time.monotonic() - started
    assert again.returncode == 1 and "dexkit opens no new one for" in again.stderr
    assert pages(inbox) == 1

    time.sleep(max(0.0, failed_at + pause + 1 - time.monotonic()))
    browser.fresh()
    run = Running(argv, home)
    browser.open(inbox.next_url())
    browser.dex_login(USER, box.password)
    browser.wait_text("Grant Access")
    browser.click_xpath("//button[.//span[text()='Grant Access']]")
    browser.wait_text("Logged in")
    code, out, err = run.finish(timeout=60)
    assert code == 0, err
    assert claims_of(json.loads(out)["status"]["token"])["email"] == USER
    assert pages(inbox) == 2, "after the pause, one page again"
    assert not record.exists(), "a successful login ends the pause"
    say(f"no browser storm, cancelled: 10 parallel calls, 1 page, 1 timeout and 9 fail-fast "
        f"lines; a call within the pause failed in {fail_fast:.2f} s; after the {pause} s "
        "pause one page opened again")
