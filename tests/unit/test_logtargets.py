"""The log targets against real receivers on 127.0.0.1: rsyslogd (SYSLOG over UDP, and the
TCP target), a TCP listener, an HTTP server; LOCAL on a directory; a target that is down
never blocks, drops are counted."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest

from appliance.hal.cf import DirVolume
from appliance.services.logtargets import (
    HttpTarget,
    LocalTarget,
    LogRecord,
    Sender,
    SyslogTarget,
    TcpTarget,
    make_target,
)
from tests.receivers import free_port, http_receiver, rsyslog, tcp_listener, wait_for

T0 = 1_700_000_000.0


def rec(text: str, t: float = T0) -> LogRecord:
    return LogRecord(t, "lab7", text)


@pytest.fixture(scope="module")
def syslogd(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with rsyslog(tmp_path_factory.mktemp("rsyslog")) as r:
        yield r


@pytest.mark.parametrize("facility", [0, 5, 7])
def test_syslog_udp_arrives_at_rsyslog_with_local_facility_and_severity_6(
    syslogd, facility: int
) -> None:  # type: ignore[no-untyped-def]
    sender = Sender(SyslogTarget("127.0.0.1", syslogd.udp_port, facility))
    text = f"config write by admin (class {facility}) ü"
    sender.log(rec(text))
    line = wait_for(
        lambda: next((x for x in syslogd.lines() if text in x), None), what="rsyslog line"
    )
    pri, fac, sev, host, rest = line.split(" ", 4)
    assert (int(pri), fac, sev, host) == ((16 + facility) * 8 + 6, f"local{facility}", "6", "lab7")
    assert rest == f"IPVA: {text}"
    sender.stop()
    assert sender.stats.sent == 1 and sender.stats.dropped == 0


def test_tcp_target_arrives_at_rsyslog_imtcp(syslogd) -> None:  # type: ignore[no-untyped-def]
    sender = Sender(TcpTarget("127.0.0.1", syslogd.tcp_port, 3))
    for i in range(3):
        sender.log(rec(f"tcp record {i}"))
    wait_for(lambda: sum("tcp record" in x for x in syslogd.lines()) == 3, what="3 lines")
    got = [x for x in syslogd.lines() if "tcp record" in x]
    assert [x.split(" ", 4)[4] for x in got] == [f"IPVA: tcp record {i}" for i in range(3)]
    assert all(x.startswith("158 local3 6 lab7 ") for x in got)
    sender.stop()


def test_tcp_listener_gets_lf_framed_lines_over_one_connection() -> None:
    with tcp_listener() as listener:
        sender = Sender(TcpTarget("127.0.0.1", listener.port, 0))
        for i in range(5):
            sender.log(rec(f"link up ETH0 {i}"))
        assert sender.drain(10)
        wait_for(lambda: len(listener.lines()) == 5, what="5 lines")
        stamp = time.strftime("%b %e %H:%M:%S", time.localtime(T0))
        assert listener.lines()[0] == f"<134>{stamp} lab7 IPVA: link up ETH0 0"
        assert listener.connections == 1
        sender.stop()


def test_tcp_target_that_refuses_is_retried_in_order_once_it_listens() -> None:
    port = free_port()
    sender = Sender(TcpTarget("127.0.0.1", port, 0), retry_s=0.2)
    for i in range(3):
        sender.log(rec(f"early {i}"))
    wait_for(lambda: sender.stats.failures >= 1, what="a refused connect")
    assert not sender.stats.up and "refused" in sender.stats.last_error.lower()
    import socket

    server = socket.create_server(("127.0.0.1", port))
    conn, _ = server.accept()
    data = b""
    while data.count(b"\n") < 3:
        data += conn.recv(4096)
    assert [line.rsplit(": ", 1)[1] for line in data.decode().splitlines()] == [
        "early 0",
        "early 1",
        "early 2",
    ]
    assert sender.drain(5) and sender.stats.up and sender.stats.sent == 3
    conn.close()
    server.close()
    sender.stop()


def test_a_target_that_hangs_never_blocks_and_counts_drops() -> None:
    """A server that never accepts, its backlog full: the target's connect hangs until its
    timeout. log() meanwhile returns at once; what does not fit the queue is counted."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept backlog: further SYNs go unanswered
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    sender = Sender(TcpTarget("127.0.0.1", port, 0), queue_size=10, retry_s=60)
    results = [sender.log(rec(f"r{i}")) for i in range(1000)]
    # all 1000 returned while the connect still hangs: log() did not wait for it
    assert sender.stats.failures == 0
    # the first is taken by the thread (hanging in connect); 10 wait in the queue
    assert results.count(True) in (10, 11)
    assert sender.stats.dropped == 1000 - results.count(True)
    wait_for(lambda: sender.stats.failures >= 1, what="the connect to time out")
    assert "timed out" in sender.stats.last_error and not sender.stats.up
    sender.stop()
    for c in fillers:
        c.close()
    server.close()


@pytest.mark.parametrize(
    ("method", "path", "want_method", "want_path"),
    [
        ("standard", "ignored", "POST", "/LOG0/log"),
        ("post", "/collect/box1", "POST", "/collect/box1"),
    ],
)
def test_http_post_methods(method: str, path: str, want_method: str, want_path: str) -> None:
    with http_receiver() as http:
        sender = Sender(HttpTarget("127.0.0.1", http.port, 2, method, path))
        sender.log(rec("login admin from 10.0.2.2"))
        wait_for(lambda: http.requests, what="the request")
        req = http.requests[0]
        assert (req.method, req.path) == (want_method, want_path)
        assert req.body.decode().endswith("lab7 IPVA: login admin from 10.0.2.2")
        assert req.body.startswith(b"<150>") and req.content_type.startswith("text/plain")
        sender.stop()


def test_http_get_codes_the_record_as_query_arguments() -> None:
    with http_receiver() as http:
        sender = Sender(HttpTarget("127.0.0.1", http.port, 1, "get", "log.cgi?box=7"))
        sender.log(rec("config change IP0 & more"))
        wait_for(lambda: http.requests, what="the request")
        req = http.requests[0]
        path, _, query = req.path.partition("?")
        assert req.method == "GET" and path == "/log.cgi" and req.body == b""
        args = urllib.parse.parse_qs(query)
        assert args["box"] == ["7"] and args["msg"] == ["config change IP0 & more"]
        assert args["facility"] == ["local1"] and args["severity"] == ["6"]
        assert args["host"] == ["lab7"] and args["time"] == [str(int(T0))]
        sender.stop()


def test_http_4xx_is_dropped_and_counted_5xx_retried() -> None:
    with http_receiver() as http:
        http.status = 404
        sender = Sender(HttpTarget("127.0.0.1", http.port, 0, "post", "/nope"), retry_s=0.1)
        sender.log(rec("one"))
        assert sender.drain(10)
        assert sender.stats.dropped == 1 and "404" in sender.stats.last_error
        http.status = 503
        sender.log(rec("two"))
        wait_for(lambda: sender.stats.failures >= 2, what="retries")
        http.status = 200
        assert sender.drain(10) and sender.stats.sent == 1
        assert [r.body.decode().rsplit(": ", 1)[1] for r in http.requests][-1] == "two"
        sender.stop()


def test_local_rotates_on_size_newest_in_0_and_keeps_four(tmp_path: Path) -> None:
    vol = DirVolume(tmp_path)
    target = LocalTarget(lambda: vol, "LOG0", max_bytes=100)
    for i in range(30):
        target.send(rec(f"line {i:02d}"))  # ~40 bytes a line: 2 lines per file
    names = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert names == ["LOG0.0", "LOG0.1", "LOG0.2", "LOG0.3"]
    files = [(tmp_path / "log" / f"LOG0.{n}").read_text().splitlines() for n in range(4)]
    assert [f[-1][-7:] for f in files] == ["line 29", "line 27", "line 25", "line 23"]
    assert all(len(f) == 2 for f in files)
    assert all((tmp_path / "log" / f"LOG0.{n}").stat().st_size <= 100 for n in range(4))


def test_local_rotates_on_backup_time(tmp_path: Path) -> None:
    now = [T0]
    vol = DirVolume(tmp_path)
    target = LocalTarget(
        lambda: vol, "LOG1", max_bytes=1 << 20, backup_s=3600, clock=lambda: now[0]
    )
    target.send(rec("first"))
    now[0] += 3599
    target.send(rec("same file"))
    now[0] += 2
    target.send(rec("new file"))
    log = tmp_path / "log"
    assert log.joinpath("LOG1.0").read_text().count("\n") == 1
    assert "new file" in log.joinpath("LOG1.0").read_text()
    assert log.joinpath("LOG1.1").read_text().count("\n") == 2


def test_local_without_a_mounted_card_fails_and_is_retried(tmp_path: Path) -> None:
    mounted: list[DirVolume] = []
    sender = Sender(LocalTarget(lambda: mounted[0] if mounted else None), retry_s=0.1)
    sender.log(rec("before the card"))
    wait_for(lambda: sender.stats.failures, what="a failed send")
    assert sender.stats.last_error == "CF0 not mounted"
    mounted.append(DirVolume(tmp_path))
    assert sender.drain(10)
    assert "before the card" in (tmp_path / "log" / "LOG0.0").read_text()
    sender.stop()


def test_make_target_from_config_values(tmp_path: Path) -> None:
    base = {"addr": "10.0.0.5", "port": 514, "class": 4, "path": "", "method": "standard",
            "max-file-size": 1024}  # fmt: skip
    vol = DirVolume(tmp_path)
    assert make_target("LOG0", {**base, "type": "off"}, lambda: vol) is None
    syslog = make_target("LOG0", {**base, "type": "syslog"}, lambda: vol)
    assert syslog is not None and syslog.name == "syslog 10.0.0.5:514"
    tcp = make_target("LOG0", {**base, "type": "tcp"}, lambda: vol)
    assert tcp is not None and tcp.name == "tcp 10.0.0.5:514"
    http = make_target("LOG0", {**base, "type": "http", "port": 80}, lambda: vol)
    assert http is not None and http.name == "http standard 10.0.0.5:80/LOG0/log"
    local = make_target("LOG1", {**base, "type": "local"}, lambda: vol)
    assert isinstance(local, LocalTarget) and local.max_bytes == 1024 * 1024
    assert local.path(0) == "log/LOG1.0"


BASE = {"addr": "127.0.0.1", "port": 514, "class": 0, "path": "", "method": "standard",
        "max-file-size": 1024}  # fmt: skip


def test_log_service_sends_to_log0_and_its_shadow_log1(syslogd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from xml.etree import ElementTree as ET

    from appliance.services.logtargets.service import LogService

    vol = DirVolume(tmp_path)
    service = LogService(lambda: "lab7", lambda: vol)
    log0 = {**BASE, "type": "syslog", "port": syslogd.udp_port, "class": 2}
    log1 = {**BASE, "type": "local"}
    service.configure({"LOG0": log0, "LOG1": log1})
    service.log('config write by admin "<all>"')
    wait_for(lambda: any("config write by admin" in x for x in syslogd.lines()), what="syslog")
    log1_0 = tmp_path / "log" / "LOG1.0"
    # the file is made before its first line lands: wait for the line, not the file
    wait_for(
        lambda: log1_0.exists() and 'config write by admin "<all>"' in log1_0.read_text(),
        what="the line in LOG1.0",
    )
    first = service.sender("LOG0")
    service.configure({"LOG0": log0, "LOG1": log1})  # unchanged: same sender, same counters
    assert service.sender("LOG0") is first
    assert first is not None and first.drain(10)  # counted once delivered, not on arrival
    el = ET.fromstring(service.info("LOG0")).find("log")
    assert el is not None and el.get("type") == "syslog" and el.get("sent") == "1"
    assert el.get("target") == f"syslog 127.0.0.1:{syslogd.udp_port}" and el.get("dropped") == "0"
    service.configure({"LOG0": {**BASE, "type": "off"}, "LOG1": log1})
    assert service.sender("LOG0") is None
    assert service.info("LOG0") == '<info><log module="LOG0" type="off" /></info>'
    service.stop()
    assert service.sender("LOG1") is None


def test_event_texts_what_is_logged_and_what_is_not() -> None:
    from appliance.events import (
        AddressChanged,
        ConfigChanged,
        ConfigWritten,
        Crashed,
        LinkChanged,
        RestartRequested,
        Resumed,
        Traced,
    )
    from appliance.services.logtargets.service import event_text
    from appliance.trace import Tag, format_trace

    assert event_text(ConfigChanged("", "config change ADMIN0 /pwd ********")) == (
        "config change ADMIN0 /pwd ********"
    )
    assert event_text(ConfigWritten(1, "write")) == "config write: 1 saved object"
    assert event_text(RestartRequested("reset")) == "reset"  # type: ignore[arg-type]
    assert event_text(AddressChanged("ETH0", None)) == "ETH0 IP address lost"
    assert event_text(LinkChanged("ETH1", False)) == "ETH1 link down"
    assert event_text(Crashed("watchdog trap")) == "restart after a crash: watchdog trap"
    assert event_text(Resumed(41.96)) == "resumed after a pause: clock stepped by +42.0 s"
    update = format_trace("UP0: receiving firmware from http://10.0.2.2/ipva.bin", Tag.UPDATE)
    assert event_text(Traced(update)) == "UP0: receiving firmware from http://10.0.2.2/ipva.bin"
    assert event_text(Traced(format_trace("config: 0 saved objects loaded"))) is None


def test_event_texts_say_who_and_logins() -> None:
    from appliance.events import (
        ConfigActivated,
        ConfigChanged,
        ConfigWritten,
        LoginFailed,
        LoginSucceeded,
        RestartRequested,
    )
    from appliance.services.logtargets.service import event_text

    by = "HTTP admin@10.0.2.2"
    assert event_text(ConfigChanged("", "config change DNS0 /server1 1.2.3.4", by)) == (
        "config change DNS0 /server1 1.2.3.4 (by HTTP admin@10.0.2.2)"
    )
    assert event_text(ConfigWritten(2, "restore", by)) == (
        "config restore: 2 saved objects (by HTTP admin@10.0.2.2)"
    )
    assert event_text(ConfigActivated((), (), "console ttyS0")) == (
        "config activate (by console ttyS0)"
    )
    assert event_text(RestartRequested("reset", "UP1 update script")) == (  # type: ignore[arg-type]
        "reset (by UP1 update script)"
    )
    assert (
        event_text(LoginSucceeded("admin", "10.0.2.2")) == "login admin from 10.0.2.2 (web admin)"
    )
    assert event_text(LoginFailed("", "10.0.2.2", "malformed Basic header")) == (
        "failed login as ? from 10.0.2.2: malformed Basic header"
    )
    long_forged = event_text(LoginFailed("a\nb" * 40, "10.0.2.2", "x", 60.0))
    assert long_forged == (
        "failed login as " + ("a?b" * 40)[:64] + " from 10.0.2.2: x; 10.0.2.2 refused for 60 s"
    )


def test_who_never_leaks_between_threads() -> None:
    """A line typed on one console while another acts is that console's."""
    import threading

    from appliance.events import acting, actor

    seen: dict[str, str] = {}
    go = threading.Event()

    def other() -> None:
        go.wait(5)
        seen["other"] = actor()

    t = threading.Thread(target=other)
    t.start()
    with acting("console ttyS0"):
        go.set()
        t.join(5)
        seen["here"] = actor()
    assert seen == {"other": "", "here": "console ttyS0"} and actor() == ""


def test_acting_runner_says_whose_lines_they_are() -> None:
    from contextlib import nullcontext

    from appliance.events import actor
    from appliance.service import ActingRunner

    class Runner:  # the runtime's side: records who the box would see
        def __init__(self) -> None:
            self.seen: list[tuple[str, str]] = []

        def execute(self, line: str) -> str:
            self.seen.append((line, actor()))
            return ""

        def idle_for(self) -> float:
            return 0.0

        def locked(self):  # type: ignore[no-untyped-def]
            return nullcontext()

    inner = Runner()
    ActingRunner(inner, "UP1 update script").execute("config write")
    inner.execute("version")
    assert inner.seen == [("config write", "UP1 update script"), ("version", "")]
