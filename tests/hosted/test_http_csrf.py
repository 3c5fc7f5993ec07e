"""The web admin's request policy (csrf.py) and login hardening (auth.py), from clients
that are not browsers: raw http.client with the headers a browser would send, Python's
urllib, requests and curl. The real-browser attacks are in test_http_browser.py."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpbox import (
    PASSWORD,
    USER,
    Answer,
    HostedHttpBox,
    authed,
    challenge_for,
    digest_header,
    request,
)

from appliance.config import Config
from appliance.config.types import check_password, digest_secret, password_realm, stored_password
from appliance.services.http import auth, csrf

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl not installed (./dev installs it)")
CHROME_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# a box with no saved config runs (and shows) the factory settings: ETH1 192.168.1.1/24
FACTORY = "\n".join(Config.factory_settings().lines())


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostedHttpBox]:
    b = HostedHttpBox(tmp_path_factory.mktemp("csrf") / "box")
    yield b
    b.close()


@pytest.fixture(autouse=True)
def unlocked(box: HostedHttpBox) -> Iterator[None]:
    yield
    box.console_line("mod cmd HTTP0 unlock")  # one test's failed logins never lock the next


def saved_name(box: HostedHttpBox) -> str:
    return box.console_line("config show saved")


def change(box: HostedHttpBox, headers: dict[str, str], base: str = "") -> Answer:
    """A state-changing command (the name, then written) with extra headers."""
    r = authed(base or box.http_url, "GET", "/!config%20change%20SYS0%20/name%20forged",
               headers=headers)  # fmt: skip
    return r


# -- the Host header -------------------------------------------------------------------


def test_a_host_that_is_not_the_box_is_421(box: HostedHttpBox) -> None:
    port = box.http_url.rsplit(":", 1)[1]
    for host in ("evil.example", f"rebind.attacker.test:{port}", "ipva.evil.example"):
        r = request(box.http_url, "GET", "/general/info", headers={"Host": host})
        assert r.status == 421 and "DNS rebinding" in r.text, host
    for host in (f"127.0.0.1:{port}", "localhost", f"[::1]:{port}", "IPVA", "ipva."):
        r = request(box.http_url, "GET", "/general/info", headers={"Host": host})
        assert r.status == 200, host
    r = authed(box.http_url, "GET", "/!config%20write", headers={"Host": "evil.example"})
    assert r.status in (401, 421)  # the challenge itself is 421 already
    assert saved_name(box) == FACTORY  # nothing written


# -- state-changing requests: scripts yes, browsers only with a proof ---------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"User-Agent": CHROME_UA},
        {"User-Agent": CHROME_UA, "Referer": "http://127.0.0.2:9999/attack.html"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # same site, another port
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},
        {"Upgrade-Insecure-Requests": "1"},
        {"Cookie": "theme=dark"},
    ],
    ids=["chrome-ua", "referer", "origin-null", "same-site-origin", "same-site", "cross-site",
         "upgrade-insecure", "cookie"],
)  # fmt: skip
def test_a_browser_request_that_changes_the_box_is_refused(
    box: HostedHttpBox, headers: dict[str, str]
) -> None:
    r = change(box, headers)
    assert r.status == 403 and r.text.startswith("error: refused"), r.text
    assert box.console_line("config show") == FACTORY
    assert "refused" in box.console.text().splitlines()[-1]  # traced, with what and whence


def test_forms_posted_without_the_token_are_refused(box: HostedHttpBox) -> None:
    body = b"action=apply&dhcp=off&eth0_addr=10.9.9.9&eth0_mask=255.0.0.0"
    for hdr in ({"Origin": "null"}, {"User-Agent": CHROME_UA}, {"Origin": "http://evil.test"}):
        r = authed(box.http_url, "POST", "/configuration/ip", body, headers={**FORM, **hdr})
        assert r.status == 403, hdr
    assert box.console_line("config show") == FACTORY


def test_scripts_and_read_only_commands_keep_working(box: HostedHttpBox) -> None:
    # read-only commands answer a browser too (monitoring pages, the admin typing them)
    for path in ("/!config%20show", "/!version", "/!mod%20cmd%20UP0%20info", "/cfg.txt",
                 "/log.txt", "/general/info", "/maintenance/upload"):  # fmt: skip
        r = authed(box.http_url, "GET", path, headers={"User-Agent": CHROME_UA})
        assert r.status == 200, (path, r.text[:200])
    # a script (no browser header) changes the box by GET, as on a real box
    assert change(box, {"User-Agent": "curl/7.88.1"}).status == 200
    assert change(box, {"User-Agent": CHROME_UA, csrf.SCRIPT_HEADER: "1"}).status == 200
    # typed into the address bar, or a link opened from a mail program: the same to the box
    typed = {"User-Agent": CHROME_UA, "Sec-Fetch-Site": "none", "Sec-Fetch-User": "?1"}
    assert change(box, typed, box.https_url).status == 403
    assert authed(box.https_url, "GET", "/!config%20show", headers=typed).status == 200
    assert "config change SYS0 /name forged" in box.console_line("config show").splitlines()
    box.console_line("config change SYS0 /name IPVA")


def test_the_pages_forms_carry_the_sessions_token(box: HostedHttpBox) -> None:
    page = authed(box.http_url, "GET", "/configuration/ip", headers={"User-Agent": CHROME_UA})
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    session = cookie.split(";")[0]
    action = re.search(r'action="(/configuration/ip\?csrf=[0-9a-f]{32})"', page.text)
    assert action, page.text
    browser = {**FORM, "User-Agent": CHROME_UA, "Cookie": session,
               "Origin": box.http_url, "Sec-Fetch-Site": "same-origin"}  # fmt: skip
    body = b"action=apply&dhcp=client&dhcp_if=ETH0&eth0_addr=10.9.9.9&eth0_mask=255.0.0.0"
    ok = authed(box.http_url, "POST", action[1], body, headers=browser)
    assert ok.status == 200, ok.text
    assert "10.9.9.9" in box.console_line("config show")
    wrong = action[1][:-4] + "0000"
    assert authed(box.http_url, "POST", wrong, body, headers=browser).status == 403
    other = {**browser, "Cookie": "ipva_session=" + "0" * 32}  # another session's token
    assert authed(box.http_url, "POST", action[1], body, headers=other).status == 403
    # over HTTPS the cookie is a __Host- one, Secure
    secure = authed(box.https_url, "GET", "/reset", headers={"User-Agent": CHROME_UA})
    assert secure.headers["Set-Cookie"].startswith("__Host-ipva_session=")
    assert "Secure" in secure.headers["Set-Cookie"]
    box.console_line("config rem IP0 ETH0 /addr /mask")
    box.console_line("config activate")


def test_text_answers_are_not_cached_nor_sniffed(box: HostedHttpBox) -> None:
    for path in ("/!version", "/cfg.txt", "/log.txt", "/crash_dump.txt", "/general/info"):
        r = authed(box.http_url, "GET", path)
        assert r.headers["Cache-Control"] == "no-store", path
        assert r.headers["X-Content-Type-Options"] == "nosniff", path
    r = request(box.http_url, "GET", "/!version")  # the 401 too
    assert r.headers["X-Content-Type-Options"] == "nosniff"


# -- the login ---------------------------------------------------------------------------


def test_digest_without_qop_and_non_ascii_answers_are_401(box: HostedHttpBox) -> None:
    ch = challenge_for(box.http_url, "MD5")
    # RFC 2069 (no qop): right password, still refused, since it could be replayed
    ha1 = digest_secret(USER, PASSWORD, "MD5")
    resp = auth.digest_response("MD5", ha1, ch["nonce"], "GET", "/!version", None, None, None)
    old = (f'Digest username="{USER}", realm="{ch["realm"]}", nonce="{ch["nonce"]}", '
           f'uri="/!version", algorithm=MD5, response="{resp}"')  # fmt: skip
    r = request(box.http_url, "GET", "/!version", headers={"Authorization": old})
    assert r.status == 401 and "without qop=auth" in r.text
    good = digest_header(ch, "GET", "/!version")
    bad = re.sub(r'response="[0-9a-f]+"', 'response="ä' + "0" * 31 + '"', good)
    raw = http.client.HTTPConnection("127.0.0.1", int(box.http_url.rsplit(":", 1)[1]))
    raw.putrequest("GET", "/!version")
    raw.putheader("Authorization", bad.encode("utf-8"))
    raw.endheaders()
    assert raw.getresponse().status == 401
    raw.close()


def test_a_nonce_from_before_a_reset_is_stale_not_a_failure(box: HostedHttpBox) -> None:
    ch = challenge_for(box.http_url)
    other = auth.Nonces()  # another boot's key: what a browser holds after a reset
    ch = {**ch, "nonce": other.make()}
    r = request(box.http_url, "GET", "/!version",
                headers={"Authorization": digest_header(ch, "GET", "/!version")})  # fmt: skip
    assert r.status == 401 and all("stale=true" in c for c in r.challenges() if "Digest" in c)
    wrong = digest_header(ch, "GET", "/!version", password="guess")
    r = request(box.http_url, "GET", "/!version", headers={"Authorization": wrong})
    assert not any("stale=true" in c for c in r.challenges())  # a wrong password is not stale
    lockout = box.started_service().listeners.app.lockout  # type: ignore[union-attr]
    assert lockout._clients["127.0.0.1"].failures == 1  # only the wrong password counted


def test_the_admin_pages_current_password_check_is_counted_and_locked(
    box: HostedHttpBox,
) -> None:
    body = b"old=guess&new=Other-pw1&again=Other-pw1"
    for _ in range(auth.LOCKOUT_AFTER):
        r = authed(box.http_url, "POST", "/administration/admin", body, headers=FORM)
        assert r.status == 400 and "current password is wrong" in r.text
    assert "failed logins from 127.0.0.1" in box.console.text()
    assert "wrong current password on Administration/Admin" in box.console.text()
    good = b"old=ipva&new=Other-pw1&again=Other-pw1"
    r = authed(box.http_url, "POST", "/administration/admin", good, headers=FORM)
    assert r.status == 400 and "too many wrong current passwords" in r.text
    assert authed(box.http_url, "GET", "/!version").status == 200  # the login itself is fine


def test_failures_spread_over_addresses_lock_out_new_ones_not_the_known() -> None:
    now = [5000.0]
    traced: list[str] = []
    lock = auth.Lockout(traced.append, clock=lambda: now[0])
    lock.succeeded("10.0.0.1")  # the admin's workstation
    for n in range(auth.SPREAD_AFTER):
        lock.failed(f"10.1.{n}.1", "admin", "wrong")  # one guess per address
        now[0] += 1
    assert lock.refused_for("10.2.0.1") == pytest.approx(auth.LOCKOUT_FIRST_S - 1)
    assert lock.refused_for("10.0.0.1") == 0  # the way back: it logged in before
    assert "from several addresses" in traced[-1] and "HTTP0 unlock" in traced[-1]
    assert lock.clear() == 1 and lock.refused_for("10.2.0.1") == 0


def test_unlock_from_the_console(box: HostedHttpBox) -> None:
    for _ in range(auth.LOCKOUT_AFTER):
        authed(box.http_url, "GET", "/!version", password="guess")
    assert request(box.http_url, "GET", "/!version").status == 429
    assert box.console_line("mod cmd HTTP0 unlock") == "HTTP0: 1 lockout lifted"
    assert authed(box.http_url, "GET", "/!version").status == 200


def test_the_verifier_is_salted_per_password() -> None:
    a, b = stored_password("admin", "same"), stored_password("admin", "same")
    assert a != b and a.split("$")[2] != b.split("$")[2]
    assert check_password(a, "same") and check_password(b, "same")
    assert not check_password(a, "other")


# -- real clients (issue 24): urllib, requests, curl -------------------------------------


def test_python_urllib_digest_logs_in(box: HostedHttpBox) -> None:
    """urllib reads only the first challenge and knows MD5 only: MD5 comes first."""
    manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    manager.add_password(None, box.http_url, USER, PASSWORD)
    opener = urllib.request.build_opener(urllib.request.HTTPDigestAuthHandler(manager))
    with opener.open(box.http_url + "/!version", timeout=10) as r:
        assert r.status == 200 and r.read().decode().strip()
    with opener.open(box.http_url + "/!config%20change%20SYS0%20/name%20urllib") as r:
        assert r.status == 200  # a script: no browser header
    assert "urllib" in box.console_line("config show")
    box.console_line("config change SYS0 /name IPVA")


def test_requests_digest_and_basic_log_in(box: HostedHttpBox) -> None:
    requests = pytest.importorskip("requests")
    from requests.auth import HTTPBasicAuth, HTTPDigestAuth

    r = requests.get(box.http_url + "/!version", auth=HTTPDigestAuth(USER, PASSWORD), timeout=10)
    assert r.status_code == 200, r.text
    r = requests.get(box.http_url + "/!config%20write", auth=HTTPDigestAuth(USER, PASSWORD))
    assert r.status_code == 200, r.text
    # the Icinga plugin: Basic over HTTPS, box_info.xml and a read-only command
    r = requests.get(box.https_url + "/!mod%20cmd%20UP0%20info", verify=False,
                     auth=HTTPBasicAuth(USER, PASSWORD), timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text


@needs_curl
def test_curl_digest_and_basic(box: HostedHttpBox, tmp_path: Path) -> None:
    assert CURL is not None

    def curl(*args: str) -> str:
        done = subprocess.run([CURL, "-sS", "--max-time", "20", "-w", "%{http_code}", *args],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        return done.stdout

    login = f"{USER}:{PASSWORD}"
    assert curl("--digest", "-u", login, box.http_url + "/!version").endswith("200")
    assert curl("--digest", "-u", login, box.http_url + "/!config%20write").endswith("200")
    assert curl("-k", "-u", login, box.https_url + "/!version").endswith("200")
    assert curl("-k", "--digest", "-u", login, box.https_url + "/!version").endswith("200")
    backup = tmp_path / "cfg.txt"
    assert curl("--digest", "-u", login, "-o", str(backup), box.http_url + "/cfg.txt") == "200"
    assert curl("--digest", "-u", login, "-T", str(backup), box.http_url + "/cfg.txt").endswith(
        "200"
    )


def test_counts_out_of_order_are_taken_once() -> None:
    """A browser's parallel requests share a nonce and may arrive out of order: each count
    is taken once, within the window below the highest seen (a refused one is not a guess)."""
    nonces = auth.Nonces()
    n = nonces.make()
    assert nonces.count_ok(n, 3) and nonces.count_ok(n, 1) and nonces.count_ok(n, 2)
    assert not nonces.count_ok(n, 2) and not nonces.count_ok(n, 3)
    assert nonces.count_ok(n, 100)
    assert not nonces.count_ok(n, 100 - auth.REPLAY_WINDOW)  # too old to tell: refused
    assert nonces.count_ok(n, 100 - auth.REPLAY_WINDOW + 1)


@pytest.mark.parametrize(
    ("method", "path", "read_only"),
    [
        ("GET", "/!config%20show", True), ("GET", "/!config%20show%20saved", True),
        ("GET", "/!version", True), ("HEAD", "/!help", True),
        ("GET", "/!mod%20cmd%20UP0%20info", True), ("GET", "/!mod%20cmd%20TRACE%20show", True),
        ("GET", "/!config%20write", False), ("GET", "/!reset", False),
        ("GET", "/!mod%20cmd%20UP0%20prot%20http://x/%20ser%201", False),
        ("GET", "/!mod%20cmd%20TRACE%20clear", False), ("GET", "/!config", False),
        ("GET", '/!config%20show%20"', False), ("POST", "/!version", False),
        ("GET", "/cfg.txt", True), ("PUT", "/cfg.txt", False), ("GET", "/reset", True),
        ("POST", "/reset", False),
    ],
)  # fmt: skip
def test_which_requests_only_read(method: str, path: str, read_only: bool) -> None:
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    request = Request(EnvironBuilder(path=path, method=method).get_environ())
    assert csrf.is_read_only(request) is read_only


def test_an_older_unsalted_verifier_still_logs_in(box: HostedHttpBox) -> None:
    """Values stored before the salt (realm IPVA) keep working until the next change."""
    md5, sha = (digest_secret(USER, "Old-pw1", a) for a in ("MD5", "SHA-256"))
    box.console_line(f"config change ADMIN0 /pwd digest${USER}${md5}${sha}")
    box.console_line("config activate")
    try:
        assert challenge_for(box.http_url)["realm"] == "IPVA"
        assert authed(box.http_url, "GET", "/!version", password="Old-pw1").status == 200
        box.console_line("config change ADMIN0 /pwd New-pw2")
        box.console_line("config activate")
        realm = challenge_for(box.http_url)["realm"]
        assert re.fullmatch(r"IPVA-[0-9a-f]{12}", realm), realm
        assert authed(box.http_url, "GET", "/!version", password="New-pw2").status == 200
    finally:
        box.console_line(f"config change ADMIN0 /pwd {PASSWORD}")
        box.console_line("config activate")


def test_a_box_forwarding_alarms_logs_in_to_a_salted_receiver() -> None:
    """ALARM0 /pwd keeps the receiver's password (sealed on the sender), so the sender
    answers whatever salted realm the receiver asks for; an older value, Digest secrets for
    the realm IPVA, is refused by a salted receiver with what to do."""
    from appliance.config.types import CLEAR_PREFIX
    from appliance.services.alarms.forward import Refused, digest_authorization
    from appliance.services.http.host import Account

    receiver = stored_password(USER, "Recv-pw1")
    nonces = auth.Nonces()
    realm = password_realm(receiver)
    for algorithm in ("SHA-256", "MD5"):
        challenge = {"realm": realm, "nonce": nonces.make(), "algorithm": algorithm}
        header = digest_authorization(
            CLEAR_PREFIX + "Recv-pw1", "POST", "/ALARM0/event", challenge, USER
        )
        verdict = auth.check_authorization(
            header, method="POST", uri="/ALARM0/event", https=False,
            account=Account(USER, receiver), nonces=nonces,
        )  # fmt: skip
        assert verdict is not None and verdict.ok, verdict
    typed = stored_password(USER, "Recv-pw1", salted=False)
    with pytest.raises(Refused, match="give ALARM0 /pwd the receiver's password"):
        digest_authorization(typed, "POST", "/ALARM0/event", challenge)
