"""Alarms and events between two hosted boxes on 127.0.0.1 (services/alarms).

Box A forwards its entries and its log lines to box B by the Standard method; B's own
HTTP server answers both (B lists A's entries with A's name and address, B's CF card holds
A's log lines, read back over /DRIVE/CF0). The queues survive a reset and a power cut;
the memory queue keeps its bound under a flood; a forward server that never answers does
not slow the box (its queue is bounded and counts what it drops)."""

from __future__ import annotations

import shutil
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from appliance.flash import mount_flash
from appliance.flash.format import OWNER_VARS, SEGMENT_SIZE
from appliance.hal.block import MemoryBlockDevice
from appliance.services.alarms.forward import TIMEOUT_S
from tests.hosted.alarmbox import cf_image, events, info, lines, port_of
from tests.hosted.httpbox import (
    HostedHttpBox,
    authed,
    firmware_image,
    request,
    with_boot_disk,
)
from tests.receivers import free_port, http_receiver, wait_for


@pytest.fixture
def box_b(tmp_path: Path) -> Iterator[HostedHttpBox]:
    cf_image(tmp_path / "b")
    b = HostedHttpBox(tmp_path / "b")
    lines(b, "config change SYS0 /name box-b", "config activate")
    yield b
    b.close()


@pytest.fixture
def box_a(tmp_path: Path, box_b: HostedHttpBox) -> Iterator[HostedHttpBox]:
    (tmp_path / "a").mkdir()
    a = HostedHttpBox(tmp_path / "a")
    port = port_of(box_b)
    lines(
        a,
        "config change SYS0 /name box-a",
        f"config change ALARM0 /addr 127.0.0.1 /port {port} /method standard",
        f"config change LOG0 /type http /addr 127.0.0.1 /port {port} /method standard",
        "config activate",
        "config write",
    )
    yield a
    a.close()


def collected(b: HostedHttpBox, text: str) -> ET.Element:
    def find() -> list[ET.Element]:  # a list: an Element without children is falsy
        return [
            e for e in events(b).iter("event")
            if text in (e.text or "") and e.get("host") == "box-a"
        ]  # fmt: skip

    return wait_for(find, what=f"box-a's entry {text!r} on box B")[0]


def test_b_lists_a_entries_with_a_name_and_address(box_a: HostedHttpBox, box_b: HostedHttpBox):
    out = box_a.console_line("mod cmd ALARM0 test from-a")
    assert "fault 99 test ALARM0: from-a" in out
    e = collected(box_b, "from-a")
    assert (e.get("host"), e.get("addr"), e.get("code"), e.get("severity")) == (
        "box-a", "127.0.0.1", "99", "fault",
    )  # fmt: skip
    # A's reset: its own entry goes out before A stops, the boot after it comes next
    box_a.console_line("reset")
    assert collected(box_b, "reset").get("code") == "2"
    collected(box_b, "boot ")
    # the page lists them with the sender's name and address; B's own are apart
    page = authed(box_b.http_url, "GET", "/maintenance/events")
    assert page.status == 200
    collected_table = page.text.split('id="collected"', 1)[1]
    assert "box-a" in collected_table and "127.0.0.1" in collected_table
    assert "from-a" in collected_table and "from-a" not in page.text.split('id="collected"')[0]
    shown = box_b.console_line("mod cmd ALARM0 show")
    assert "collected from other boxes:" in shown and "from box-a (127.0.0.1)" in shown
    # a filter by severity: the fault is there, not among the events
    faults = authed(box_b.http_url, "GET", "/maintenance/events?severity=event").text
    assert "from-a" not in faults


def test_b_stores_a_log_lines_on_its_cf(box_a: HostedHttpBox, box_b: HostedHttpBox):
    box_a.console_line("config change SYS0 /name box-a")  # logged on A, sent to B
    path = "/DRIVE/CF0/log/remote/box-a.0"

    def stored() -> str | None:
        r = authed(box_b.http_url, "GET", path)
        return r.text if r.status == 200 and "SYS0 /name box-a" in r.text else None

    text = wait_for(stored, what="A's log line in B's CF")
    line = next(x for x in text.splitlines() if "SYS0 /name box-a" in x)
    assert line.endswith(" box-a IPVA: config change SYS0 /name box-a")
    assert not line.startswith("<")  # stored without the PRI, as LOCAL writes LOG0.n


def test_with_authentication_an_unauthenticated_sender_is_refused_and_counted(
    box_a: HostedHttpBox, box_b: HostedHttpBox
):
    lines(box_b, "config change ALARM0 /auth", "config activate")
    box_a.console_line("mod cmd ALARM0 test refused-one")
    wait_for(lambda: int(info(box_b).find("incoming").get("refused")) >= 1, what="a refusal")
    assert "refused-one" not in box_b.console_line("mod cmd ALARM0 show")
    # a sender refused by its receiver drops the entry (4xx) and counts it
    wait_for(lambda: int(info(box_a).find("forward").get("dropped")) >= 1, what="A's drop")
    # anyone else is refused the same way
    r = request(box_b.http_url, "POST", "/ALARM0/event", b"<event/>")
    assert r.status == 401
    # with the login (B's admin password, kept hashed on A) it is taken
    lines(box_a, "config add ALARM0 /pwd ipva", "config activate")
    box_a.console_line("mod cmd ALARM0 test with-login")
    collected(box_b, "with-login")


def test_bad_entries_are_refused_with_a_reason(box_b: HostedHttpBox):
    r = request(box_b.http_url, "POST", "/ALARM0/event", b"<event severity='nope'/>")
    assert r.status == 400 and "severity" in r.text
    r = request(box_b.http_url, "POST", "/LOG0/log", b"no syslog line")
    assert r.status == 400 and "not a log line" in r.text
    assert info(box_b).find("incoming").get("bad") == "2"


def test_persistent_queue_survives_reset_and_power_cut(tmp_path: Path):
    box = HostedHttpBox(tmp_path / "p")
    try:
        box.console_line("mod cmd ALARM0 test before-reset")
        box.console_line("reset")
        shown = box.console_line("mod cmd ALARM0 show")
        assert "before-reset" in shown and "boot " in shown
        box.console_line("mod cmd ALARM0 test before-cut")
        # a power cut: the disks as they are now, booted by another runtime, no stop
        shutil.copytree(tmp_path / "p", tmp_path / "cut")
    finally:
        box.close()
    after = HostedHttpBox(tmp_path / "cut")
    try:
        shown = after.console_line("mod cmd ALARM0 show fault")
        assert "before-cut" in shown and "before-reset" in shown
        # seq numbers go on from what the flash kept
        seqs = [int(x.split(" ", 1)[0]) for x in shown.splitlines()]
        assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    finally:
        after.close()


def test_memory_queue_keeps_its_bound_under_a_flood(tmp_path: Path):
    box = HostedHttpBox(tmp_path / "f")
    try:
        lines(box, "config change ALARM0 /flash 20", "config activate")
        for i in range(150):
            box.console_line(f"mod cmd ALARM0 test flood-{i}")
        queues = info(box).find("queues")
        assert (queues.get("mem"), queues.get("mem-max")) == ("100", "100")
        shown = box.console_line("mod cmd ALARM0 show").splitlines()
        assert len(shown) == 100 and "flood-149" in shown[0] and "flood-50" in shown[-1]
        box.console_line("config write")
        box.console_line("reset")
        kept = [x for x in box.console_line("mod cmd ALARM0 show fault").splitlines()]
        assert len(kept) == 20 and "flood-149" in kept[0] and "flood-130" in kept[-1]
    finally:
        box.close()


def _flood(box: HostedHttpBox, n: int) -> float:
    t0 = time.monotonic()
    for i in range(n):
        box.console_line(f"mod cmd ALARM0 test x{i}")
    return time.monotonic() - t0


def test_a_forward_server_that_never_answers_does_not_slow_the_box(tmp_path: Path):
    box = HostedHttpBox(tmp_path / "u")
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(200)  # takes connections, never answers a request
    try:
        lines(box, "config add ALARM0 /flash 0", "config activate")
        baseline = _flood(box, 150)
        port = sink.getsockname()[1]
        lines(box, f"config add ALARM0 /addr 127.0.0.1 /port {port}", "config activate")
        stuck = _flood(box, 150)
        fwd = info(box).find("forward")
        # a request that blocked the box would take the 3 s timeout per entry
        print(f"flood of 150: baseline {baseline * 1000:.1f} ms, forward server stuck "
              f"{stuck * 1000:.1f} ms, "
              f"ratio {stuck / baseline:.2f}")  # fmt: skip
        # the whole flood takes less than one request's timeout (3 s): nothing waited on it
        assert stuck < TIMEOUT_S
        assert int(fwd.get("queued")) <= 100
        assert int(fwd.get("dropped")) >= 150 - 100 - 1
        t0 = time.monotonic()
        box.console_line("reset")  # stopping the forwarder does not wait for the queue
        assert time.monotonic() - t0 < 15
    finally:
        sink.close()
        box.close()


def test_box_info_and_general_info_count_active_alarms(tmp_path: Path):
    box = HostedHttpBox(tmp_path / "blank-cf")
    try:  # a CF card without a file system: CF0 not mounted, an active alarm
        r = request(box.http_url, "GET", "/CMD0/box_info.xml")
        assert ET.fromstring(r.body).find("sys").get("alarms") == "1"
        assert "alarm raised 50 cf-unmounted CF0" in box.console_line("mod cmd ALARM0 show")
    finally:
        box.close()
    cf_image(tmp_path / "i")
    box = HostedHttpBox(tmp_path / "i")
    try:
        r = request(box.http_url, "GET", "/CMD0/box_info.xml")
        assert ET.fromstring(r.body).find("sys").get("alarms") == "0"
        # five failed logins lock the client out: an alarm, raised once
        for _ in range(5):
            authed(box.http_url, "GET", "/!version", password="wrong")
        r = request(box.http_url, "GET", "/CMD0/box_info.xml")
        assert ET.fromstring(r.body).find("sys").get("alarms") == "1"
        page = request(box.http_url, "GET", "/general/info").text
        assert 'id="alarms"><a href="/maintenance/events?severity=alarm">1</a>' in page
        shown = box.console_line("mod cmd ALARM0 show alarm")
        assert "alarm raised 31 login-lockout HTTP0: 127.0.0.1 refused for" in shown
        assert box.console_line("mod cmd ALARM0 show event").count("login-failed") == 5
    finally:
        box.close()


def test_catch_trace_stops_the_buffer_until_it_is_emptied(tmp_path: Path):
    box = HostedHttpBox(tmp_path / "c")
    try:
        lines(box, "config change ALARM0 /catch 2,99", "config activate")
        box.console_line("mod cmd ALARM0 test caught")
        box.console_line("config change SYS0 /name after")  # traced? the buffer takes no more
        log = request(box.http_url, "GET", "/log.txt")
        assert log.status == 401
        trace = authed(box.http_url, "GET", "/log.txt").text
        assert trace.rstrip().endswith("ALARM0: trace stopped at event 99 test: caught")
        box.console_line("mod cmd TRACE clear")
        box.console_line("mod cmd ALARM0 test again")
        trace = authed(box.http_url, "GET", "/log.txt").text
        assert "trace stopped at event 99 test: again" in trace
    finally:
        box.close()


def test_a_log_target_that_is_down_is_an_alarm_until_it_takes_records_again(tmp_path: Path):
    cf_image(tmp_path / "l")
    box = HostedHttpBox(tmp_path / "l")
    port = free_port()  # nothing listens there yet
    try:
        lines(box, f"config change LOG0 /type tcp /addr 127.0.0.1 /port {port}",
              "config activate")  # fmt: skip

        def shown(state: str) -> str:
            out = box.console_line("mod cmd ALARM0 show alarm")
            return out if f"alarm {state} 60 log-unreachable LOG0" in out else ""

        assert "does not take records" in wait_for(lambda: shown("raised"), what="the alarm")
        assert (
            ET.fromstring(request(box.http_url, "GET", "/CMD0/box_info.xml").body)
            .find("sys")
            .get("alarms")
            == "1"
        )
        with socket.create_server(("127.0.0.1", port)) as server:
            server.settimeout(0.2)
            received = bytearray()

            def taken() -> bool:  # the retry (after 5 s) connects and sends the records
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    return bool(shown("cleared"))
                with conn:
                    conn.settimeout(1)
                    received.extend(conn.recv(65536))
                return bool(shown("cleared"))

            assert wait_for(taken, what="the alarm cleared")
        assert "takes records again" in shown("cleared")
    finally:
        box.close()


def test_external_post_and_get_reach_a_plain_http_server(tmp_path: Path):
    box = HostedHttpBox(tmp_path / "x")
    try:
        with http_receiver() as http:
            lines(box, "config change SYS0 /name box-x",
                  f"config change ALARM0 /addr 127.0.0.1 /port {http.port} /method post "
                  "/path /in/alarms", "config activate")  # fmt: skip
            box.console_line("mod cmd ALARM0 test posted")

            def posted() -> list[ET.Element]:
                return [ET.fromstring(r.body) for r in http.requests
                        if r.method == "POST" and r.path == "/in/alarms"
                        and b">posted<" in r.body]  # fmt: skip

            e = wait_for(posted, what="the POST")[0]
            assert (e.tag, e.get("host"), e.get("code"), e.get("severity")) == (
                "event", "box-x", "99", "fault",
            )  # fmt: skip
            lines(box, "config add ALARM0 /method get /path /in?key=1", "config activate")
            box.console_line("mod cmd ALARM0 test as query")

            def got() -> list[dict[str, list[str]]]:
                return [parse_qs(urlsplit(r.path).query) for r in http.requests
                        if r.method == "GET" and "as+query" in r.path]  # fmt: skip

            q = wait_for(got, what="the GET")[0]
            assert q["key"] == ["1"] and q["text"] == ["as query"] and q["host"] == ["box-x"]
            assert (q["code"], q["name"], q["severity"]) == (["99"], ["test"], ["fault"])
    finally:
        box.close()


def test_the_events_page_clears_the_queues(tmp_path: Path):
    box = HostedHttpBox(tmp_path / "k")
    try:
        box.console_line("mod cmd ALARM0 test to-clear")
        assert "to-clear" in authed(box.http_url, "GET", "/maintenance/events").text
        r = authed(box.http_url, "POST", "/maintenance/events", b"action=clear",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        assert r.status == 200 and "events cleared (" in r.text and "to-clear" not in r.text
        box.console_line("reset")  # gone from the flash too
        assert "to-clear" not in box.console_line("mod cmd ALARM0 show")
    finally:
        box.close()


def test_firmware_updates_done_and_failed_are_entries(tmp_path: Path):
    box = HostedHttpBox(with_boot_disk(tmp_path / "up"))
    try:
        sr2 = firmware_image("16r1sr2", 1601002)
        r = authed(box.http_url, "PUT", "/ipva.bin", sr2[:-1000])  # truncated
        assert r.status == 400
        shown = box.console_line("mod cmd ALARM0 show fault")
        assert "fault 21 update-failed UP0: update from ipva.bin (PUT from 127.0.0.1" in shown
        assert authed(box.http_url, "PUT", "/ipva.bin", sr2).status == 200
        box.console_line("reset")  # the hosted boot plays the bootcode: slot B on trial

        def done() -> str:
            out = box.console_line("mod cmd ALARM0 show event")
            return out if "event 20 update-done UP0" in out else ""

        assert "UP0: firmware 16r1sr2 build 1601002 in slot B (IPVA2.BIN) started and" in wait_for(
            done, what="the update's entry"
        )
    finally:
        box.close()


def test_damage_the_flash_mount_finds_is_a_fault(tmp_path: Path):
    box = HostedHttpBox(tmp_path / "d")
    try:
        lines(box, "config change SYS0 /name kept", "config write")
    finally:
        box.close()
    image = tmp_path / "d" / "flash.img"
    data = bytearray(image.read_bytes())
    dev = MemoryBlockDevice(0)
    dev.data = bytearray(data)
    flash = mount_flash(dev, ram_bytes=256 << 20, trace=lambda _line: None, readonly=True)
    seg = flash.flashman.owners[OWNER_VARS].segs[0].index
    data[seg * SEGMENT_SIZE + 4] ^= 0xFF  # the first header copy of a VARS segment
    image.write_bytes(data)
    box = HostedHttpBox(tmp_path / "d")
    try:
        shown = box.console_line("mod cmd ALARM0 show fault")
        assert f"fault 10 flash-damage FLASHMAN0: flashman: segment {seg}: one header" in shown
        assert "config change SYS0 /name kept" in box.console_line("config show")
    finally:
        box.close()
