"""Headless Chromium, driven over WebDriver, as the person at Dex's real login page.

Why selenium with Debian's chromedriver: the ``chromium`` and ``chromium-driver`` packages are
built from one source at one version, so the driver always speaks to its browser; selenium is
the W3C WebDriver client (pure Python, no browser download of its own, no bundled Node). It is
a test dependency only.

Chromium is started as the machine's notes say: headless, ``--no-sandbox`` (CI runs as root),
no GPU, no QUIC, no first-run, background networking, component updates and sync off, and a
fresh ``--user-data-dir`` each time. It trusts Dex's serving certificate by pinning exactly its
public key (``--ignore-certificate-errors-spki-list``), nothing else: the browser's trust is
not what these tests prove (dexkit verifies Dex's TLS itself, against the project's CA).

The CLI hands URLs to the test through a tiny "browser command" (:class:`UrlInbox`): a script
that appends the URL to a file the test reads, so the test's Chromium opens what dexkit opened.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,900")


def spki_pin(cert_pem: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a certificate, as Chromium's pin flag wants."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def wait_for(what: str, probe: Callable[[], object], timeout: float = 20.0) -> object:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class Browser:
    def __init__(self, pins: list[str]) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = Path(tempfile.mkdtemp(prefix="dexkit-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self.profile}",
                     f"--ignore-certificate-errors-spki-list={','.join(pins)}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def fresh(self) -> None:
        """Forget Dex's session cookies between logins."""
        self.driver.delete_all_cookies()

    # --- what a person does -----------------------------------------------------------------
    def open(self, url: str) -> None:
        self.driver.get(url)

    def text(self) -> str:
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    def wait_text(self, needle: str, timeout: float = 20.0) -> str:
        wait_for(f"'{needle}' on the page (now at {self.driver.current_url}: "
                 f"{self._safe_text()[:300]!r})",
                 lambda: needle in self._safe_text(), timeout)
        return self.text()

    def _safe_text(self) -> str:
        try:
            return self.text()
        except Exception:  # the page is navigating
            return ""

    def fill(self, element_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        field = wait_for(f"#{element_id}", lambda: self._find(By.ID, element_id))
        field.clear()  # type: ignore[attr-defined]
        field.send_keys(value)  # type: ignore[attr-defined]

    def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        button = wait_for(css, lambda: self._find(By.CSS_SELECTOR, css))
        button.click()  # type: ignore[attr-defined]

    def click_xpath(self, xpath: str) -> None:
        from selenium.webdriver.common.by import By

        button = wait_for(xpath, lambda: self._find(By.XPATH, xpath))
        button.click()  # type: ignore[attr-defined]

    def _find(self, by: str, value: str) -> object:
        from selenium.common.exceptions import WebDriverException

        try:
            found = self.driver.find_elements(by, value)
        except WebDriverException:
            return None
        return found[0] if found else None

    def dex_login(self, email: str, password: str) -> None:
        """Dex's password form (the static users' ``local`` connector)."""
        self.wait_text("Log in to Your Account")
        self.fill("login", email)
        self.fill("password", password)
        self.click("#submit-login")

    @property
    def url(self) -> str:
        return str(self.driver.current_url)


class UrlInbox:
    """A browser command (``--browser-command`` / ``BROWSER``) that hands the URL to the test."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.file = directory / "opened-urls"
        self.command = directory / "open-url"
        self.command.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{self.file}'\n")
        self.command.chmod(0o755)
        self.seen = 0

    def next_url(self, timeout: float = 30.0) -> str:
        def probe() -> str | None:
            text = self.file.read_text() if self.file.exists() else ""
            lines = text[:text.rfind("\n") + 1].splitlines()  # whole lines only
            return lines[self.seen] if len(lines) > self.seen else None
        url = str(wait_for("dexkit to open a URL", probe, timeout))
        self.seen += 1
        return url
