"""CPU and memory counters read as the check_innovaphone plugin reads them, and the sampler's
life cycle (a thread the service owns: start starts it, stop joins it)."""

from __future__ import annotations

import datetime
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from appliance.services.counters import Counter, CounterLog, CountersService, Sample

T0 = datetime.datetime(2026, 12, 7, 9, 0)


def plugin_reads(xml: str, now: datetime.datetime) -> tuple[int, str | None]:
    """check_innovaphone.py mem()/cpu(): `info`'s s, then h[…]/m[…]'s c for the minute."""
    minute = now.strftime("%M")
    if minute.startswith(("00", "01")):
        hpos, mpos = "last()-1", 60
    else:
        hpos, mpos = "last()", int(minute) - 1
    root = ET.fromstring(xml)
    total = [int(info.get("s", "")) for info in root.iter("info")][-1]
    found = None
    for h in root.findall(f"h[{hpos}]"):
        for m in h.findall(f"m[{mpos}]"):
            for value in m.iter("m"):
                found = value.get("c")
    return total, found


def filled_log(start: datetime.datetime, minutes: int) -> CounterLog:
    log = CounterLog()
    for i in range(minutes):
        t = start + datetime.timedelta(minutes=i)
        log.record(t, Sample(cpu=t.minute % 50, memory=10 + t.hour))
    return log


@pytest.mark.parametrize("minute", [0, 1, 2, 5, 30, 59])
def test_the_plugin_finds_the_last_complete_minute(minute: int) -> None:
    log = filled_log(T0, 120)  # 09:00 … 10:59
    now = datetime.datetime(2026, 12, 7, 10, minute, 30)
    total, cpu = plugin_reads(log.xml(Counter.CPU, now, 100), now)
    assert total == 100
    # the minute the plugin reads: 09:59 at minutes 00 and 01, else minute-2 of this hour
    read = datetime.datetime(2026, 12, 7, 9, 59) if minute < 2 else now.replace(minute=minute - 2)
    assert cpu == str(read.minute % 50)
    kib, mem = plugin_reads(log.xml(Counter.MEMORY, now, 262144), now)
    assert kib == 262144 and mem == str(10 + read.hour)


def test_minutes_before_the_box_started_have_no_value() -> None:
    log = filled_log(datetime.datetime(2026, 12, 7, 10, 20), 10)  # up since 10:20
    now = datetime.datetime(2026, 12, 7, 10, 15)
    _total, value = plugin_reads(log.xml(Counter.CPU, now, 100), now)
    assert value is None  # the plugin says "value not found": there is none
    root = ET.fromstring(log.xml(Counter.CPU, datetime.datetime(2026, 12, 7, 10, 31), 100))
    (h,) = root.findall("h")
    assert len(h.findall("m")) == 31 and h.get("c") == str(round(sum(range(20, 30)) / 10))


def test_only_the_last_hours_are_kept() -> None:
    log = filled_log(T0, 60 * 30)
    now = T0 + datetime.timedelta(hours=30)
    assert len(ET.fromstring(log.xml(Counter.CPU, now, 100)).findall("h")) == log.hours


class _Platform:
    def memory_info(self) -> object:
        class Info:
            total = 256 << 20

        return Info()

    def memory_free(self) -> int:
        return 64 << 20


class _Box:
    platform = _Platform()
    traced: list[str] = []

    def trace(self, text: str, tag: object = None) -> None:
        self.traced.append(text)


def test_the_sampler_is_a_thread_the_service_starts_and_joins() -> None:
    clock = iter(T0 + datetime.timedelta(minutes=i) for i in range(10_000))
    service = CountersService(clock=lambda: next(clock), period_s=0.01)
    before = set(threading.enumerate())
    service.start(_Box())  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if '<m c="' in service._cmd_count(_Box(), ["/x", "2"]):  # type: ignore[arg-type]
            break
        time.sleep(0.01)
    answer = service._cmd_count(_Box(), ["/x", "2", "/pos", "23"])  # type: ignore[arg-type]
    root = ET.fromstring(answer)
    assert root.get("s") == str(256 << 10) and root.find("h/m[@c='75']") is not None
    service.stop()
    assert set(threading.enumerate()) <= before  # joined: nothing of it left running


def test_xml_count_refuses_what_it_does_not_know() -> None:
    service = CountersService()
    with pytest.raises(Exception, match="/x is 0 \\(CPU\\) or 2 \\(memory\\)"):
        service._cmd_count(_Box(), ["/x", "7"])  # type: ignore[arg-type]
    with pytest.raises(Exception, match="usage"):
        service._cmd_count(_Box(), ["/y", "1"])  # type: ignore[arg-type]
