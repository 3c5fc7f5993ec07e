"""services/alarms without a running box: the entry's XML both ways, the persistent queue
under power cuts (the emulated device of the FLASHMAN tests), the mailer's rate, and which
box events become which entries."""

from __future__ import annotations

import threading
import time

import pytest
from flashdev import MODES, CutDevice, PowerCut, formatted_image, memdev, mount

from appliance.events import AddressChanged, LinkChanged, LoginFailed, RestartRequested, Traced
from appliance.services.alarms import codes
from appliance.services.alarms.codes import BY_NUMBER, CODES, Severity
from appliance.services.alarms.entry import Entry, EntryError, parse_entry
from appliance.services.alarms.forward import syslog_record
from appliance.services.alarms.mail import Mailer, MailSettings
from appliance.services.alarms.queues import MemoryQueue, PersistentQueue
from appliance.services.alarms.service import entries_of
from appliance.trace import Tag, format_trace


def entry(seq: int, code: codes.Code = codes.TEST, text: str = "t") -> Entry:
    return Entry.of(code, "ALARM0", text, host="box-a", seq=seq, at=1_700_000_000 + seq)


def test_codes_are_decided_once_and_the_readme_lists_them_all() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for c in CODES:
        assert f"| {c.number} | `{c.name}` | {c.severity.value} |" in readme, c
    assert BY_NUMBER[40] is codes.LINK_DOWN


def test_entry_xml_round_trips_and_bad_ones_are_refused() -> None:
    e = Entry.of(codes.LINK_DOWN, "ETH0", 'link "down" <&>', host="box-a", seq=7, at=1e9)
    assert parse_entry(e.xml()) == e
    assert e.state == "raised" and e.active
    for bad, why in [(b"<x/>", "<event>"), (b"<event seq='1' time='1' code='1'/>", "severity"),
                     (b"not xml", "not XML"),
                     (b"<event seq='a' time='1' code='1' severity='event'/>", "seq")]:  # fmt: skip
        with pytest.raises(EntryError, match=why):
            parse_entry(bad)
    # a received text cannot forge lines
    forged = parse_entry(b"<event seq='1' time='1' code='1' severity='event'>a&#10;b</event>")
    assert forged.text == "a?b"


def test_syslog_record_pri_by_severity() -> None:
    assert syslog_record(entry(1), 3).startswith(f"<{19 * 8 + 2}>")
    raised = Entry.of(codes.LINK_DOWN, "ETH0", "down", seq=1)
    cleared = Entry.of(codes.LINK_DOWN, "ETH0", "up", seq=2, cleared=True)
    assert syslog_record(raised, 0).startswith(f"<{16 * 8 + 3}>")
    assert syslog_record(cleared, 0).startswith(f"<{16 * 8 + 5}>")
    assert syslog_record(entry(3, codes.BOOT), 7).startswith(f"<{23 * 8 + 6}>")


def test_memory_queue_bound_and_filter() -> None:
    q = MemoryQueue(100)
    for i in range(1, 1001):
        q.add(entry(i, codes.BOOT if i % 2 else codes.TEST))
    assert len(q) == 100 and q.newest()[0].seq == 1000 and q.newest()[-1].seq == 901
    assert {e.severity for e in q.newest(Severity.FAULT)} == {Severity.FAULT}
    assert len(q.newest(Severity.EVENT)) == 50


def test_persistent_queue_keeps_the_newest_and_survives_remount() -> None:
    dev = memdev(formatted_image(16))
    q = PersistentQueue(mount(dev).vars, size=5)
    for i in range(1, 9):
        q.add(entry(i))
    again = PersistentQueue(mount(memdev(bytes(dev.data))).vars, size=5)
    assert [e.seq for e in again.load(print)] == [4, 5, 6, 7, 8]


@pytest.mark.parametrize("mode", MODES)
def test_persistent_queue_power_cut_leaves_old_or_new(mode: str) -> None:
    """Cut the power at every write of an add that also drops the oldest: after each cut
    the queue is the one before the add or the one after it, and takes the next add."""
    dev = memdev(formatted_image(16))
    q = PersistentQueue(mount(dev).vars, size=3)
    for i in range(1, 4):
        q.add(entry(i))
    base = bytes(dev.data)
    before, after = [1, 2, 3], [2, 3, 4]
    n = 0
    while True:
        cut = CutDevice(base, n, mode, seed=n)
        try:
            PersistentQueue(mount(cut).vars, size=3).add(entry(4))
        except PowerCut:
            survivor = mount(cut.survivor())
            seqs = [e.seq for e in PersistentQueue(survivor.vars, 3).load(print)]
            assert seqs in (before, after), f"cut at write {n} ({mode}): {seqs}"
            PersistentQueue(survivor.vars, 3).add(entry(5))
            assert [e.seq for e in PersistentQueue(survivor.vars, 3).load(print)][-1] == 5
            n += 1
            continue
        break
    assert n > 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_mailer_rate_batches_what_comes_while_it_is_used_up() -> None:
    sent: list[bytes] = []
    gate = threading.Event()

    def send(settings: MailSettings, message: bytes) -> bool:
        sent.append(message)
        gate.set()
        return False

    clock = Clock()
    settings = MailSettings("a@x", "", "b@x", "", "127.0.0.1", 25, "", "", rate=1)
    m = Mailer(settings, lambda: "box-a", clock=clock, send=send)
    m.start()
    try:
        m.put(entry(1, text="first"))
        assert gate.wait(5)
        gate.clear()
        for i in range(2, 6):
            m.put(entry(i, text=f"later-{i}"))
        assert not gate.wait(0.5) and len(sent) == 1  # the hour's one mail is used up
        clock.now = 3601.0
        assert gate.wait(5)
        assert len(sent) == 2 and all(f"later-{i}".encode() in sent[1] for i in range(2, 6))
        assert b"4 alarms and faults" in sent[1]
    finally:
        assert m.stop()


def test_mailer_mails_each_entry_alone_while_the_rate_has_room() -> None:
    """Entries queued before the mailer thread runs (a loaded box) are not a digest while
    the rate has room: the first fault is the first mail's subject."""
    sent: list[bytes] = []

    def send(settings: MailSettings, message: bytes) -> bool:
        sent.append(message)
        return False

    clock = Clock()
    settings = MailSettings("a@x", "", "b@x", "", "127.0.0.1", 25, "", "", rate=2)
    m = Mailer(settings, lambda: "box-a", clock=clock, send=send)
    for i in range(6):  # all queued before the thread starts
        m.put(entry(i, text=f"flap-{i}"))
    m.start()
    try:
        deadline = time.monotonic() + 5
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # a third mail would come now if the rate were not kept
        assert len(sent) == 2
        assert b"flap-0" in sent[0] and b"flap-1" not in sent[0]
        assert b"flap-1" in sent[1] and b"flap-2" not in sent[1]
        clock.now = 3601.0  # the hour is over: the four that waited go out together
        deadline = time.monotonic() + 5
        while len(sent) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b"4 alarms and faults" in sent[2]
    finally:
        assert m.stop()


def test_box_events_become_entries() -> None:
    assert [r.code for r in entries_of(RestartRequested("reboot", "console ttyS0"))] == [
        codes.REBOOT
    ]
    down, up = entries_of(LinkChanged("ETH0", False)), entries_of(LinkChanged("ETH0", True))
    assert (down[0].code, down[0].cleared, up[0].cleared) == (codes.LINK_DOWN, False, True)
    lost = entries_of(AddressChanged("ETH0", None))[0]
    assert lost.code is codes.DHCP_LOST and not lost.cleared
    locked = entries_of(LoginFailed("admin", "10.0.0.9", "wrong user or password", 30.0))
    assert [r.code for r in locked] == [codes.LOGIN_FAILED, codes.LOGIN_LOCKOUT]
    up0 = [
        ("UP0: update from x failed: bad header", codes.UPDATE_FAILED),
        ("UP0: firmware 16r1sr2 build 2 in slot B started and is confirmed", codes.UPDATE_DONE),
        ("UP0: slot B (16r1sr2 build 2) did not start; running slot A (16r1sr1)",
         codes.UPDATE_FALLBACK),
        ("UP0: firmware B failed its check: starting slot A", codes.UPDATE_FALLBACK),
    ]  # fmt: skip
    for line, code in up0:
        assert [r.code for r in entries_of(Traced(format_trace(line, Tag.UPDATE)))] == [code]
    assert entries_of(Traced(format_trace("UP0: receiving firmware", Tag.UPDATE))) == []


def test_a_watched_log_target_says_when_it_goes_down_and_comes_back() -> None:
    from appliance.events import LogTargetChanged
    from appliance.services.logtargets.sender import LogRecord, Rejected
    from appliance.services.logtargets.service import WatchedTarget

    outcomes: list[Exception | None] = [OSError("refused"), OSError("again"), Rejected("4xx"),
                                        None]  # fmt: skip
    changes: list[tuple[bool, str]] = []

    class Flaky:
        name = "tcp 127.0.0.1:9"

        def send(self, record: LogRecord) -> None:
            outcome = outcomes.pop(0)
            if outcome is not None:
                raise outcome

        def close(self) -> None:
            pass

    w = WatchedTarget(Flaky(), lambda up, error: changes.append((up, error)))
    record = LogRecord(0, "box-a", "x")
    for expected in (OSError, OSError, Rejected):
        with pytest.raises(expected):
            w.send(record)
    w.send(record)
    assert changes == [(False, "refused"), (True, "")]  # a refusal is an answer: up
    down = entries_of(LogTargetChanged("LOG1", "tcp 127.0.0.1:9", False, "refused"))[0]
    assert (down.code, down.src, down.cleared) == (codes.LOG_UNREACHABLE, "LOG1", False)
