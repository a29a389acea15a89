"""The README's sandbox section, typed as a user types it (issue 11, item 3).

    dexkit init --issuer https://127.0.0.1:32000 --connector static
    dexkit sandbox up
    dexkit verify
    dexkit kubeconfig
    kubectl auth whoami

Each line is its own process, in the project directory, with the user's own (fresh) HOME and
nothing else named: no --dir, no --kubeconfig, no KUBECONFIG. The browser `kubectl auth whoami`
opens is headless Chromium, reached through the BROWSER variable as on a desktop, and the
person at it logs in on Dex's real page with the password `init` stored.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.browser import CHROMEDRIVER, CHROMIUM, Browser, UrlInbox, spki_pin
from tests.e2e.conftest import peer_unavailable

# The node and port 32000 are the machine's: this module has it to itself.
pytestmark = [pytest.mark.e2e, pytest.mark.machine, pytest.mark.needs_dex,
              pytest.mark.usefixtures("machine_exclusive")]
USER = "admin@example.com"
README_PORT = 32000


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_the_readme_sandbox_sequence_verbatim(
        tmp_path: Path, peer: Callable[[str], Path], kubectl: Path) -> None:
    for name in ("etcd", "kube-apiserver", "dex"):
        peer(name)  # built (once) where `dexkit sandbox up` looks for them
    for tool in (CHROMIUM, CHROMEDRIVER):
        if not Path(tool).exists():
            peer_unavailable(f"{tool} is missing (apt-get install chromium chromium-driver)")
    if not _port_is_free(README_PORT):
        pytest.fail(f"127.0.0.1:{README_PORT} is taken: the README's issuer port must be free "
                    "for this test (is a node sandbox or another Dex running?)", pytrace=False)
    home = tmp_path / "home"
    project = tmp_path / "project"
    home.mkdir()
    project.mkdir()
    inbox = UrlInbox(tmp_path / "inbox")
    scripts = Path(sys.executable).parent
    env = {"HOME": str(home), "PATH": f"{scripts}:{kubectl.parent}:/usr/bin:/bin",
           "NO_COLOR": "1", "BROWSER": str(inbox.command),
           # where this machine keeps the built peers (a real user's default ~/.cache/dexkit)
           "DEXKIT_CACHE_DIR": os.environ["DEXKIT_CACHE_DIR"]}

    def typed(line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(line.split(), cwd=project, env=env, capture_output=True,
                              text=True, timeout=180, stdin=subprocess.DEVNULL, check=False)

    init = typed("dexkit init --issuer https://127.0.0.1:32000 --connector static")
    assert init.returncode == 0, init.stderr
    up = typed("dexkit sandbox up")
    try:
        assert up.returncode == 0, up.stderr
        assert f"the API server accepts Dex's token for {USER}" in up.stderr
        verify = typed("dexkit verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "using the project's running sandbox" in verify.stderr
        assert "verified:" in verify.stderr
        wired = typed("dexkit kubeconfig")
        assert wired.returncode == 0, wired.stderr
        assert "wiring the project's running sandbox" in wired.stderr
        assert (home / ".kube" / "config").is_file()

        browser = Browser([spki_pin(project / "ssl" / "cert.pem")])
        try:
            whoami = subprocess.Popen(["kubectl", "auth", "whoami"], cwd=project, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, text=True)
            try:
                browser.open(inbox.next_url(timeout=60))
                browser.dex_login(USER, (project / ".dexkit" / "passwords" / USER)
                                  .read_text().strip())
                browser.wait_text("Logged in")
                out, err = whoami.communicate(timeout=60)
            finally:
                if whoami.poll() is None:
                    whoami.kill()
        finally:
            browser.close()
        assert whoami.returncode == 0, err
        assert USER in out and "oidc:team-a/admins" in out, out
        # The same sequence leaves doctor with nothing to say, the kubeconfig user included.
        doctor = typed("dexkit doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "local.kubeconfig-user" in doctor.stdout
        row = next(line for line in doctor.stdout.splitlines()
                   if line.strip().startswith("local.kubeconfig-user"))
        assert " ok " in f" {row} ", row
    finally:
        down = typed("dexkit sandbox down")
    assert down.returncode == 0, down.stderr
