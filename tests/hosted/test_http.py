"""The HTTP admin, hosted on 127.0.0.1: every endpoint, both logins, lockout, backups, TLS."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import threading
import xml.etree.ElementTree as ET
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
    parse_challenge,
    request,
    tls_client_context,
)

from appliance.config import Config
from appliance.services.http import auth

CURL = shutil.which("curl")
# a box with no saved config runs (and shows) the factory settings: ETH1 192.168.1.1/24
FACTORY = "\n".join(Config.factory_settings().lines())
needs_curl = pytest.mark.skipif(CURL is None, reason="curl not installed (./dev installs it)")


@pytest.fixture
def box(tmp_path: Path) -> Iterator[HostedHttpBox]:
    b = HostedHttpBox(tmp_path / "box")
    yield b
    b.close()


def box_sys(box: HostedHttpBox) -> ET.Element:
    sys = ET.fromstring(request(box.http_url, "GET", "/CMD0/box_info.xml").body).find("sys")
    assert sys is not None
    return sys


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run(
        [CURL, "-sS", "--max-time", "20", *args], capture_output=True, text=True, timeout=60
    )


# -- status without login --------------------------------------------------------------


def test_box_info_xml_has_the_version_line_update_servers_parse(box: HostedHttpBox) -> None:
    r = request(box.http_url, "GET", "/CMD0/box_info.xml")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/xml")
    root = ET.fromstring(r.body)
    # the update server reads the root's child <sys> ($xml->sys['version']); plugins iter it
    assert root.tag == "info" and [e.tag for e in root] == ["sys"]
    sys = root.find("sys")
    assert sys is not None and list(root.iter("sys")) == [sys]
    # the php-update-server form: label[build], Bootcode[b], HW[h]
    m = re.fullmatch(
        r"(\S+) IPVA\[(\d+)\], Bootcode\[(\d+)\], HW\[([^\]]+)\]", sys.get("version", "")
    )
    assert m and m[1] == "16r1sr1" and m[4] == "IPVA-hosted", sys.attrib
    assert sys.get("default-password") == "true"
    assert "reset-required" not in sys.attrib
    assert int(sys.get("dram", "0")) > 0 and sys.get("uptime", "").isdigit()


def test_reset_required_after_a_written_address_change(box: HostedHttpBox) -> None:
    box.console_line("config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0")
    box.console_line("config write")
    sys = box_sys(box)
    assert sys.get("reset-required") == "true"
    page = request(box.http_url, "GET", "/general/info").text
    assert "IP0 ETH0 /addr" in page and 'id="reset-required"' in page


def test_general_info_is_public_and_warns_about_the_factory_password(box: HostedHttpBox) -> None:
    r = request(box.http_url, "GET", "/general/info")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
    assert "16r1sr1 IPVA[" in r.text and 'id="factory-password"' in r.text
    assert "DRAM" in r.text and "VARS - used" in r.text
    assert request(box.http_url, "GET", "/").headers["Location"] == "/general/info"
    assert request(box.http_url, "GET", "/static/style.css").status == 200


GUARDED = [
    "/configuration/ip",
    "/maintenance/upload",
    "/maintenance/download",
    "/maintenance/diagnostics/tracing",
    "/administration/compact-flash",
    "/administration/admin",
    "/reset",
    "/cfg.txt",
    "/log.txt",
    "/crash_dump.txt",
    "/!version",
]


@pytest.mark.parametrize("path", GUARDED)
def test_every_other_page_needs_the_login(box: HostedHttpBox, path: str) -> None:
    r = request(box.http_url, "GET", path)
    assert r.status == 401
    offered = r.challenges()
    assert [c.split(",")[2].strip() for c in offered] == ["algorithm=MD5", "algorithm=SHA-256"]
    assert not any(c.startswith("Basic") for c in offered)  # not over plain HTTP
    ok = authed(box.http_url, "GET", path)
    assert ok.status == 200, ok.text


def test_basic_is_offered_and_taken_over_https_only(box: HostedHttpBox) -> None:
    r = request(box.https_url, "GET", "/!version")
    assert any(c.startswith("Basic") for c in r.challenges())
    import base64

    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert (
        request(box.https_url, "GET", "/!version", headers={"Authorization": basic}).status == 200
    )
    plain = request(box.http_url, "GET", "/!version", headers={"Authorization": basic})
    assert plain.status == 401 and "Basic login only over HTTPS" in plain.text


def test_monitoring_reads_cpu_and_memory_as_the_icinga_plugin_does(box: HostedHttpBox) -> None:
    """check_innovaphone: HTTPS + Basic, `root.iter('info')`'s s, `h[last()]/m[minute-1]`."""
    import base64
    import datetime

    from appliance.services.counters import CountersService

    rt_box = box.runtime.box
    assert rt_box is not None
    counters = rt_box.service(CountersService)
    assert counters is not None
    now = datetime.datetime.now()
    # the plugin reads the minute before the last one (at 10:05, 10:03's m[4]): the sampler's
    # work (done each minute) for the last two minutes
    for back in (2, 1):
        counters.sample(6.0, 60.0, (now - datetime.timedelta(minutes=back)).replace(second=0))
    basic = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
    minute = now.minute  # check_innovaphone's positions for now
    hpos, mpos = ("last()-1", 60) if minute < 2 else ("last()", minute - 1)
    for x in ("2", "0"):
        r = request(box.https_url, "GET", f"/LOG0/CNT/mod_cmd.xml?cmd=xml-count&pos=23&x={x}",
                    headers=basic)  # fmt: skip
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/xml"), r.text
        root = ET.fromstring(r.body)
        total = [int(info.get("s", "")) for info in root.iter("info")][-1]
        assert total > 0
        values = [
            m.get("c")
            for h in root.findall(f"h[{hpos}]")
            for stats in h.findall(f"m[{mpos}]")
            for m in stats.iter("m")
        ]
        assert values and values[0] is not None and values[0].isdigit(), r.text[-300:]
    refused = request(box.https_url, "GET", "/LOG0/CNT/mod_cmd.xml?cmd=xml-count&x=9",
                      headers=basic)  # fmt: skip
    assert refused.status == 400 and "/x is 0 (CPU) or 2 (memory)" in refused.text
    assert request(box.https_url, "GET", "/LOG0/CNT/mod_cmd.xml?cmd=xml-count").status == 401
    # a GET URL only reads: a command that changes the box is not run from here
    changing = request(box.https_url, "GET", "/CFG0/mod_cmd.xml?cmd=factory-reset&yes=1",
                       headers=basic)  # fmt: skip
    assert changing.status == 403 and "only commands that show something" in changing.text


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_digest_both_algorithms(box: HostedHttpBox, algorithm: str) -> None:
    r = authed(box.http_url, "GET", "/!version", algorithm=algorithm)
    assert r.status == 200 and r.text.startswith("16r1sr1 IPVA[")
    bad = authed(box.http_url, "GET", "/!version", algorithm=algorithm, password="wrong")
    assert bad.status == 401 and "wrong user or password" in bad.text


def test_digest_answers_cannot_be_replayed_or_moved(box: HostedHttpBox) -> None:
    ch = challenge_for(box.http_url)
    header = digest_header(ch, "GET", "/!version", nc=1, cnonce="c0ffee")
    assert (
        request(box.http_url, "GET", "/!version", headers={"Authorization": header}).status == 200
    )
    replay = request(box.http_url, "GET", "/!version", headers={"Authorization": header})
    assert replay.status == 401 and "replayed" in replay.text
    moved = request(box.http_url, "GET", "/cfg.txt", headers={"Authorization": header})
    assert moved.status == 401 and "another URI" in moved.text
    nc2 = digest_header(ch, "GET", "/!version", nc=2, cnonce="c0ffee")
    assert request(box.http_url, "GET", "/!version", headers={"Authorization": nc2}).status == 200


def test_digest_response_matches_rfc7616_examples() -> None:
    # RFC 7616 section 3.9.1: Mufasa / Circle of Life, both algorithms
    common = dict(
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        method="GET",
        uri="/dir/index.html",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        qop="auth",
    )
    for alg, want in [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ]:
        h = auth._HASH[alg]
        ha1 = h(b"Mufasa:http-auth@example.org:Circle of Life").hexdigest()
        assert auth.digest_response(alg, ha1, **common) == want  # type: ignore[arg-type]


@needs_curl
def test_curl_digest_and_basic_over_https(box: HostedHttpBox) -> None:
    r = curl(
        "--digest", "-u", f"{USER}:{PASSWORD}", f"{box.http_url}/!mod%20cmd%20FLASHMAN0%20info"
    )
    assert r.returncode == 0 and "VARS" in r.stdout, r.stderr
    r = curl("-k", "-u", f"{USER}:{PASSWORD}", f"{box.https_url}/!version")
    assert r.stdout.startswith("16r1sr1 IPVA["), r.stderr
    r = curl("-k", "--digest", "-u", f"{USER}:nope", "-w", "%{http_code}", "-o", "/dev/null",
             f"{box.https_url}/!version")  # fmt: skip
    assert r.stdout == "401"


# -- lockout ---------------------------------------------------------------------------


def test_lockout_after_five_failures_is_traced_and_refuses_even_the_right_password(
    box: HostedHttpBox,
) -> None:
    for _ in range(auth.LOCKOUT_AFTER - 1):
        assert authed(box.http_url, "GET", "/!version", password="guess").status == 401
    assert "failed logins" not in box.console.text()
    assert authed(box.http_url, "GET", "/!version", password="guess").status == 401  # the 5th
    assert "5 failed logins from 127.0.0.1" in box.console.text()
    assert "refused for 30 s" in box.console.text()
    refused = request(box.http_url, "GET", "/!version")
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 29
    assert "too many failed logins" in refused.text
    # General/Info still answers; nothing guarded does, not even with the password
    assert request(box.http_url, "GET", "/general/info").status == 200
    assert request(box.https_url, "GET", "/cfg.txt").status == 429


def test_lockout_time_doubles_and_a_good_login_clears_it() -> None:
    now = [1000.0]
    traced: list[str] = []
    lock = auth.Lockout(traced.append, clock=lambda: now[0])
    periods = []
    for _ in range(auth.LOCKOUT_AFTER):
        periods.append(lock.failed("10.0.0.9", "admin", "wrong"))
    assert periods == [0, 0, 0, 0, 30]
    assert lock.refused_for("10.0.0.9") == 30 and lock.refused_for("10.0.0.8") == 0
    for want in (60, 120, 240):
        now[0] += lock.refused_for("10.0.0.9")
        assert lock.failed("10.0.0.9", "admin", "wrong") == want
    assert [t.split("refused for ")[1] for t in traced] == ["30 s", "60 s", "120 s", "240 s"]
    for _ in range(20):
        now[0] += lock.refused_for("10.0.0.9")
        lock.failed("10.0.0.9", "admin", "wrong")
    assert lock.refused_for("10.0.0.9") == auth.LOCKOUT_MAX_S
    now[0] += auth.LOCKOUT_MAX_S
    lock.succeeded("10.0.0.9")
    assert lock.failed("10.0.0.9", "admin", "wrong") == 0  # counting starts again


def test_the_lockout_table_is_bounded() -> None:
    lock = auth.Lockout(lambda _t: None)
    for n in range(auth.LOCKOUT_TABLE * 3):
        lock.failed(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", "admin", "wrong")
    assert len(lock._clients) == auth.LOCKOUT_TABLE


# -- password change -------------------------------------------------------------------


def test_password_change_from_the_ui(box: HostedHttpBox) -> None:
    form = b"old=ipva&new=S3cure-pw&again=S3cure-pw"
    hdr = {"Content-Type": "application/x-www-form-urlencoded"}
    r = authed(box.http_url, "POST", "/administration/admin", form, headers=hdr)
    assert r.status == 200 and 'id="done"' in r.text, r.text
    assert authed(box.http_url, "GET", "/!version").status == 401
    assert authed(box.http_url, "GET", "/!version", password="S3cure-pw").status == 200
    assert (
        authed(box.http_url, "GET", "/!version", algorithm="MD5", password="S3cure-pw").status
        == 200
    )
    saved = box.console_line("config show saved")
    # sealed with the box's key (issue 25): neither the password nor its verifier shows
    assert "S3cure-pw" not in saved and "digest$" not in saved
    assert re.search(r"^config change ADMIN0 /pwd enc\$[0-9a-f]{8}\$\S+$", saved, re.M), saved
    assert "S3cure-pw" not in box.console.text()  # nor in the trace
    sys = box_sys(box)
    assert "default-password" not in sys.attrib
    assert 'id="factory-password"' not in request(box.http_url, "GET", "/general/info").text
    wrong = authed(box.http_url, "POST", "/administration/admin", form, headers=hdr,
                   password="S3cure-pw")  # fmt: skip
    assert wrong.status == 400 and "current password is wrong" in wrong.text


def test_password_change_from_the_console_and_user_rename(box: HostedHttpBox) -> None:
    box.console_line("config change ADMIN0 /pwd Console-pw")
    assert authed(box.http_url, "GET", "/!version").status == 200  # not active yet
    box.console_line("config activate")
    assert authed(box.http_url, "GET", "/!version", password="Console-pw").status == 200
    refused = box.console_line("config add ADMIN0 /user root")
    assert refused.startswith("error:") and "give the password again" in refused
    box.console_line("config change ADMIN0 /user root /pwd Root-pw")
    box.console_line("config activate")
    assert authed(box.http_url, "GET", "/!version", user="root", password="Root-pw").status == 200
    assert authed(box.http_url, "GET", "/!version", password="Console-pw").status == 401


# -- commands --------------------------------------------------------------------------


def test_console_commands_as_urls(box: HostedHttpBox) -> None:
    r = authed(box.http_url, "GET", "/!config%20change%20SYS0%20/name%20office")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert authed(box.http_url, "GET", "/!config%20show").text == (
        f"{FACTORY}\nconfig change SYS0 /name office\n"
    )
    assert authed(box.http_url, "GET", "/!config%20write").text.startswith("config written")
    assert box.console_line("config show saved") == f"{FACTORY}\nconfig change SYS0 /name office"
    bad = authed(box.http_url, "GET", "/!frobnicate")
    assert bad.status == 400 and bad.text.startswith("error: unknown command 'frobnicate'")
    assert authed(box.http_url, "GET", "/!mod%20cmd%20FLASHMAN0%20info").status == 200


def test_reset_over_http_restarts_with_the_saved_config(box: HostedHttpBox) -> None:
    before = box.runtime.box
    authed(box.http_url, "GET", "/!config%20change%20SYS0%20/name%20unsaved")
    r = authed(box.http_url, "GET", "/!reset")
    assert r.status == 200 and "1 unwritten change discarded" in r.text
    import time

    deadline = time.monotonic() + 10
    while box.runtime.box is before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert box.runtime.box is not before
    assert box.console_line("config show") == FACTORY


def reset_while_hammered(url: str) -> Answer:
    """`/!reset`, asked again while the hammering connections are still counted against
    this address (the server closes one over MAX_PER_CLIENT at once: a loaded host notices
    the hammers' closed connections late)."""
    import time

    deadline = time.monotonic() + 20
    while True:
        try:
            return authed(url, "GET", "/!reset")
        except OSError:  # refused, or closed at once (http.client.RemoteDisconnected)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_pages_asked_for_during_a_reset_never_hold_it_up(box: HostedHttpBox) -> None:
    """A reset stops the web admin and joins its threads; a page asked for meanwhile
    answers 503 "restarting" (or is refused) instead of waiting for the box, which
    would hang the reset and the page for good."""
    import time

    stop = threading.Event()
    statuses: list[int] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                statuses.append(request(box.http_url, "GET", "/general/info", timeout=20).status)
            except (AssertionError, KeyError, OSError):  # between boxes: no listener yet
                time.sleep(0.01)

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(4):
            before = box.runtime.box
            r = reset_while_hammered(box.http_url)
            assert r.status == 200
            deadline = time.monotonic() + 20

            # the box is None while it restarts: wait for the new one, not only the gap
            def restarted(before: object = before) -> bool:
                now = box.runtime.box
                return now is not None and now is not before

            while not restarted() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert restarted(), "the reset hung behind a page request"
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(25)
    assert statuses and set(statuses) <= {200, 503}, statuses
    assert not any(t.is_alive() for t in threads), "a page request hung"


def test_requests_from_another_site_are_refused(box: HostedHttpBox) -> None:
    for hdr in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
        r = authed(box.http_url, "GET", "/!config%20write", headers=hdr)
        assert r.status == 403 and "another site" in r.text
    assert box.console_line("config show saved") == FACTORY  # nothing written


# -- backup and restore ----------------------------------------------------------------


def _seed(box: HostedHttpBox) -> None:
    for line in (
        "config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0",
        "config change IP0 RT0 /gateway 192.168.0.1",
        "config change DHCP0 /mode off",
        "config change SYS0 /name branch-7",
        "mod cmd FLASHDIR0 add-item 7 cn=alice",
        "config write",
    ):
        assert not box.console_line(line).startswith("error"), line


def test_backup_factory_reset_upload_gives_the_same_config(box: HostedHttpBox) -> None:
    _seed(box)
    shown = box.console_line("config show saved")
    backup = authed(box.http_url, "GET", "/cfg.txt")
    assert backup.status == 200 and backup.text.startswith("vars check ")
    assert 'filename="cfg.txt"' in backup.headers["Content-Disposition"]
    assert "mod cmd FLASHDIR0 add-item 7 cn=alice" in backup.text
    box.console_line("mod cmd CFG0 factory-reset yes")
    box.console_line("reset")
    assert box.console_line("config show") == FACTORY
    r = authed(box.http_url, "PUT", "/cfg.txt", backup.body)
    assert r.status == 200 and "config restored" in r.text
    box.console_line("reset")
    assert box.console_line("config show") == shown
    assert "7 cn=alice" in box.console_line("mod cmd FLASHDIR0 show 7")


def test_upload_form_restores_too(box: HostedHttpBox) -> None:
    _seed(box)
    shown = box.console_line("config show saved")
    backup = authed(box.http_url, "GET", "/cfg.txt").body
    box.console_line("mod cmd CFG0 factory-reset yes")
    boundary = "----ipva-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="cfg"; filename="cfg.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\n"
        ).encode()
        + backup
        + f"\r\n--{boundary}--\r\n".encode()
    )
    hdr = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    r = authed(box.http_url, "POST", "/maintenance/upload", body, headers=hdr)
    assert r.status == 200 and "config restored" in r.text, r.text
    assert box.console_line("config show saved") == shown


def test_vars_on_the_console_and_through_a_backup(box: HostedHttpBox) -> None:
    assert box.console_line("vars create UPDATE/CHECK p 42") == ""
    assert box.console_line("vars create X509/REQUESTRESPONSE/00000 pb 3082ff00") == ""
    assert box.console_line("vars read UPDATE/CHECK") == "UPDATE/CHECK p 42"
    assert box.console_line("vars read X509") == "X509/REQUESTRESPONSE/00000 pb 3082ff00"
    refused = box.console_line("vars create CFG:SYS0 p x")
    assert refused.startswith("error:") and "the box's own keys" in refused
    assert "X509:HTTPS.KEY" not in box.console_line("vars read")  # the box's own key stays
    backup = authed(box.http_url, "GET", "/cfg.txt")
    assert "vars create UPDATE/CHECK p 42\n" in backup.text and "HTTPS.KEY" not in backup.text
    assert box.console_line("vars del X509") == ""
    assert box.console_line("vars read X509").startswith("error: no variable X509")
    box.console_line("vars create UPDATE/CHECK p 43")
    r = authed(box.http_url, "PUT", "/cfg.txt", backup.body)
    assert r.status == 200 and "config restored" in r.text and "skipped" not in r.text
    assert box.console_line("vars read") == (
        "UPDATE/CHECK p 42\nX509/REQUESTRESPONSE/00000 pb 3082ff00"
    )


def test_a_real_boxs_backup_restores_the_ipvas_part_and_lists_the_rest(
    box: HostedHttpBox,
) -> None:
    text = (
        "vars check 5f2a0c17e3b64d89 # 13r3 sr12 IP811[13.6518], Bootcode[13.A206], "
        "Hardware[103] 1/2 # IP811 #\r\n"
        "config change SYS0 /name branch7\r\n"
        "config change PBX0 /name 4711\r\n"
        "vars create UPDATE/CHECK p d41d8cd98f00b204e9800998ecf8427e\r\n"
        "mod cmd GW1 trace on\r\n"
    )
    r = authed(box.http_url, "PUT", "/cfg.txt", text.encode())
    assert r.status == 200 and "config restored" in r.text, r.text
    assert "skipped (modules this box does not have): line 3 (PBX0); line 5 (GW1)" in r.text
    assert box.console_line("config show saved") == "config change SYS0 /name branch7"
    assert box.console_line("vars read UPDATE") == (
        "UPDATE/CHECK p d41d8cd98f00b204e9800998ecf8427e"
    )


HEAD = b"vars check - # 16r1sr1 IPVA[1601001], Bootcode[1601001], HW[IPVA-hosted]\n"
BAD_UPLOADS = [
    (b"", 400, "empty upload"),
    (HEAD + b"config change IP0 ETH0 /addr 999.1.1.1\n", 400, "line 2:"),
    (HEAD + b"config change SYS0 /name ok\nreset\n", 400, "line 3:"),
    (HEAD + b"config change SYS0 /name \xff\xfe\n", 400, "line 2: not text"),
    (HEAD.replace(b" - ", b" 00000000000000000000000000000000 ") + b"config change SYS0 /name a\n",
     400, "line 1:"),
    (b"config change SYS0 /name a\n", 400, "line 1: not a backup file"),
    (HEAD + b"vars create UPDATE/CHECK p 1\nconfig change PBX0 /x 1\nconfig change SYS0 /name -\n"
     b"vars create UPDATE/PROT pb zz\n", 400, "line 5:"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "status", "reason"), BAD_UPLOADS)
def test_a_bad_upload_changes_nothing(
    box: HostedHttpBox, body: bytes, status: int, reason: str
) -> None:
    _seed(box)
    saved = box.console_line("config show saved")
    backup = box.console_line("mod cmd CFG0 backup")
    r = authed(box.http_url, "PUT", "/cfg.txt", body)
    assert r.status == status and r.text.startswith("error:") and reason in r.text, r.text
    assert "nothing changed" in r.text or reason == "empty upload"
    assert box.console_line("config show saved") == saved
    assert box.console_line("mod cmd CFG0 backup") == backup


def test_an_oversize_body_is_413_and_changes_nothing(box: HostedHttpBox) -> None:
    _seed(box)
    saved = box.console_line("config show saved")
    from appliance.services.http.app import MAX_BODY

    host, port = box.http_url.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        head = f"PUT /cfg.txt HTTP/1.1\r\nHost: {host}\r\nContent-Length: {MAX_BODY + 1}\r\n"
        s.sendall(head.encode() + b"\r\nvars check - # x\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 413 ")  # refused before any login
    assert box.console_line("config show saved") == saved


# -- pages -----------------------------------------------------------------------------


def test_configuration_ip_form_sets_the_static_address(box: HostedHttpBox) -> None:
    hdr = {"Content-Type": "application/x-www-form-urlencoded"}
    form = (
        "action=apply&dhcp=off&dhcp_if=ETH0&eth0_addr=192.168.0.10&eth0_mask=255.255.255.0"
        "&eth1_addr=&eth1_mask=&gateway=192.168.0.1&dns1=192.168.0.2&dns2="
    )
    r = authed(box.http_url, "POST", "/configuration/ip", form.encode(), headers=hdr)
    assert r.status == 200, r.text
    assert "needs reset" in r.text
    assert box.console_line("config show") == (
        "config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0\n"
        "config change IP0 RT0 /gateway 192.168.0.1\n"
        "config change DHCP0 /mode off\n"
        "config change DNS0 /server1 192.168.0.2"
    )
    page = authed(box.http_url, "GET", "/configuration/ip").text
    assert 'value="192.168.0.10"' in page
    bad = form.replace("192.168.0.10", "192.168.0.300")
    r = authed(box.http_url, "POST", "/configuration/ip", bad.encode(), headers=hdr)
    assert r.status == 400 and "not an IPv4 address" in r.text
    r = authed(box.http_url, "POST", "/configuration/ip", b"action=write", headers=hdr)
    assert "config written to flash (4 objects)" in r.text


def test_configuration_ip_form_is_taken_whole_or_not_at_all(box: HostedHttpBox) -> None:
    """Every field a good IPv4 address, but the mask is not a netmask: the schema refuses
    that change, and none of the form's other changes is taken either (one job)."""
    hdr = {"Content-Type": "application/x-www-form-urlencoded"}
    form = (
        "action=apply&dhcp=off&dhcp_if=ETH0&eth0_addr=192.168.0.10&eth0_mask=255.0.255.0"
        "&eth1_addr=&eth1_mask=&gateway=192.168.0.1&dns1=192.168.0.2&dns2="
    )
    r = authed(box.http_url, "POST", "/configuration/ip", form.encode(), headers=hdr)
    assert r.status == 400 and "error:" in r.text, r.text
    assert box.console_line("config show") == FACTORY  # not even DHCP0 /mode off


def test_tracing_page_and_crash_dump(box: HostedHttpBox) -> None:
    assert "no crash dump (blank dump disk)" in authed(box.http_url, "GET", "/crash_dump.txt").text
    box.console_line("reboot")
    r = authed(box.http_url, "GET", "/crash_dump.txt")
    assert "watchdog trap (reboot command)" in r.text
    # the whole post-mortem dump: every thread's stack and the trace tail
    assert "Traceback" in r.text or "File " in r.text
    assert "0:0000:030:4 - " in r.text
    page = authed(box.http_url, "GET", "/maintenance/diagnostics/tracing")
    assert page.status == 200 and "watchdog trap" in page.text


def test_compact_flash_format_needs_the_confirmation(box: HostedHttpBox) -> None:
    hdr = {"Content-Type": "application/x-www-form-urlencoded"}
    r = authed(box.http_url, "POST", "/administration/compact-flash", b"", headers=hdr)
    assert r.status == 400 and "tick the box" in r.text
    r = authed(box.http_url, "POST", "/administration/compact-flash", b"confirm=yes", headers=hdr)
    # the page shows what the console says to the same commands
    assert r.status == 200 and "CF0 formatted: FAT16" in r.text, r.text
    r = authed(box.http_url, "POST", "/administration/compact-flash", b"action=mount", headers=hdr)
    assert r.status == 200 and "CF0 mounted (FAT16" in r.text and ", mounted" in r.text
    assert ", mounted" in box.console_line("mod cmd CF0 info")
    unmount = b"action=unmount"
    r = authed(box.http_url, "POST", "/administration/compact-flash", unmount, headers=hdr)
    assert r.status == 200 and "CF0 unmounted" in r.text and "not mounted" in r.text


def test_unknown_paths_and_methods(box: HostedHttpBox) -> None:
    assert request(box.http_url, "GET", "/nope").status == 404
    assert request(box.http_url, "DELETE", "/cfg.txt").status == 405
    assert request(box.http_url, "GET", "/../../etc/passwd").status == 404


# -- HTTPS -----------------------------------------------------------------------------


def _peer_cert(url: str, **ctx_args: ssl.TLSVersion) -> bytes:
    host, port = url.split("://")[1].split(":")
    ctx = tls_client_context()
    for k, v in ctx_args.items():
        setattr(ctx, k, v)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_tls_1_2_and_1_3_only(box: HostedHttpBox) -> None:
    _peer_cert(box.https_url, maximum_version=ssl.TLSVersion.TLSv1_2)
    _peer_cert(box.https_url, minimum_version=ssl.TLSVersion.TLSv1_3)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    host, port = box.https_url.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw).do_handshake()


def test_certificate_is_kept_across_restarts_and_renewed_by_factory_reset(
    box: HostedHttpBox,
) -> None:
    first = _peer_cert(box.https_url)
    box.console_line("reset")
    assert _peer_cert(box.https_url) == first
    assert "new self-signed certificate" in box.console.text()
    box.console_line("mod cmd CFG0 factory-reset yes")
    box.console_line("reset")
    assert _peer_cert(box.https_url) != first


def test_config_activate_rebinds_the_listeners(box: HostedHttpBox) -> None:
    import time

    https = box.https_url
    r = authed(https, "GET", "/!config%20change%20HTTP0%20/port%200")
    assert r.status == 200
    answer = authed(https, "GET", "/!config%20activate")
    assert "activated: HTTP0 /port" in answer.text and "needs reset" not in answer.text
    deadline = time.monotonic() + 10
    while set(box.service.urls()) != {"https"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(box.service.urls()) == {"https"}  # plain HTTP is off now, at once
    assert authed(box.https_url, "GET", "/!version").status == 200


def test_a_web_admin_that_cannot_start_leaves_the_console_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.services.http import HttpListeners

    def broken(self: object, admin: object, config: object, warning: str = "") -> None:
        raise ModuleNotFoundError("No module named 'concurrent'")

    monkeypatch.setattr(HttpListeners, "start", broken)
    b = HostedHttpBox(tmp_path / "box")
    try:
        assert b.service.wait_started()  # in its own thread, after the boot
        assert "HTTP0: the web admin did not start (ModuleNotFoundError" in b.console.text()
        assert b.console_line("version").startswith("16r1sr1")
        assert b.service.urls() == {}
    finally:
        b.close()


def test_https_only_redirects_plain_http(tmp_path: Path) -> None:
    b = HostedHttpBox(tmp_path / "box")
    try:
        b.console_line("config change HTTP0 /https-only")
        b.console_line("config write")
        b.console_line("reset")
        r = request(b.http_url, "GET", "/general/info")
        assert r.status == 301
        assert (
            r.headers["Location"]
            == f"https://127.0.0.1:{b.https_url.rsplit(':', 1)[1]}/general/info"
        )
    finally:
        b.close()


def test_parse_digest_params_is_strict() -> None:
    assert auth.parse_digest_params('username="a", uri="/x", nc=00000001') == {
        "username": "a",
        "uri": "/x",
        "nc": "00000001",
    }
    for bad in ['username="a', "username", 'a="1", a="2"', "x=1 y=2", '=""']:
        assert auth.parse_digest_params(bad) is None, bad
    ch = parse_challenge('Digest realm="IPVA", nonce="abc", algorithm=MD5')
    assert ch == {"realm": "IPVA", "nonce": "abc", "algorithm": "MD5"}
