"""Crashes caught for real: an exception in a thread, a fatal signal in a child process
(faulthandler into the dump image), the runtime dying; each leaves its dump."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from appliance.formats.crashdump import Condition, CrashDump, DumpKind, format_dump, read_dump
from appliance.formats.dumpdisk import FAULT_END, TRACE_MIRROR, read_fault_area, read_trace_mirror
from appliance.hal.block import FileBlockDevice, MemoryBlockDevice
from appliance.services.crashwatch import (
    CrashWatch,
    DumpContext,
    collect,
    died_reason,
    record_died,
)
from tests.receivers import wait_for

REPO = Path(__file__).resolve().parents[2]


def context() -> DumpContext:
    return DumpContext(
        version="16r1sr1",
        build=1601001,
        bootcode_build=1601000,
        hw="IPVA-hosted",
        booted_at=time.monotonic() - 12.5,
        trace_tail=lambda: ["0:0000:030:4 - config: 2 saved objects loaded"],
        saved_config=lambda: ("config change SYS0 /name lab7\n", 2),
        memory=lambda: (205_810_048, 268_435_456),
    )


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    path = tmp_path / "dump.img"
    with path.open("wb") as f:
        f.truncate(4 << 20)
    return path


def test_collect_has_every_thread_and_the_box_figures() -> None:
    gate = threading.Event()
    t = threading.Thread(target=gate.wait, name="console-ttyS0", daemon=True)
    t.start()
    try:
        dump = collect(context(), DumpKind.REBOOT, "watchdog trap (reboot command)")
    finally:
        gate.set()
    names = {s.name for s in dump.threads}
    assert {"MainThread", "console-ttyS0"} <= names
    waiting = next(s for s in dump.threads if s.name == "console-ttyS0")
    assert waiting.frames[-1].function == "wait"
    assert dump.uptime_ms >= 12_500 and dump.config_objects == 2
    assert len(dump.config_digest) == 64 and dump.memory.usable == 205_810_048
    assert dump.memory.rss > 0 and dump.memory.available > 0
    assert dump.trace == ("0:0000:030:4 - config: 2 saved objects loaded",)


def test_unhandled_exception_in_a_thread_leaves_a_dump(disk: Path) -> None:
    crashes: list[CrashDump] = []
    traced: list[str] = []
    with FileBlockDevice(disk) as dev:
        watch = CrashWatch(
            dev, context(), device_path=str(disk), on_crash=crashes.append, trace=traced.append
        )
        watch.arm()
        try:

            def serve_http() -> None:
                {}["no such key"]

            t = threading.Thread(target=serve_http, name="http-server")
            t.start()
            t.join()
        finally:
            watch.disarm()
        reading = read_dump(dev)
    assert reading.condition is Condition.VALID and reading.dump is not None
    d = reading.dump
    assert d.kind is DumpKind.EXCEPTION
    assert d.reason == "unhandled exception in thread http-server: KeyError: 'no such key'"
    crashed = [s for s in d.threads if s.crashed]
    assert [s.name for s in crashed] == ["http-server"]
    assert crashed[0].frames[-1].function == "serve_http"
    assert "KeyError: 'no such key'" in d.exception
    assert crashes == [d] and traced == [d.reason]
    assert threading.excepthook is not watch._thread_hook  # disarm restored the hook


def test_fatal_signal_lands_in_the_fault_area_and_becomes_a_dump_at_boot(disk: Path) -> None:
    child = textwrap.dedent(
        f"""
        import dataclasses, os, signal, threading, time
        from appliance.hal.block import FileBlockDevice
        from appliance.formats.dumpdisk import read_trace_mirror
        from appliance.services.crashwatch import CrashWatch
        from tests.receivers import wait_for
        from tests.unit.test_services_crashwatch import context
        lines = ["0:0000:030:4 - boot line", "0:0000:030:4 - just before"]
        ctx = dataclasses.replace(context(), trace_tail=lambda: lines)
        dev = FileBlockDevice({str(disk)!r})
        watch = CrashWatch(dev, ctx, device_path={str(disk)!r}, on_crash=print, trace=print)
        watch.arm()
        watch.trace_changed()  # the writer thread puts it on the disk, nobody flushes
        wait_for(lambda: read_trace_mirror(dev) == tuple(lines), what="the mirror")
        threading.Thread(target=time.sleep, args=(30,), name="worker", daemon=True).start()
        def poke_the_driver():
            os.kill(os.getpid(), signal.SIGSEGV)
        poke_the_driver()
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True)
    assert proc.returncode == -11, proc.stderr
    with FileBlockDevice(disk) as dev:
        fault = read_fault_area(dev)
        assert fault is not None and "poke_the_driver" in fault[1]
        assert record_died(dev, 139) is None  # the signal's text says more; boot collects it
        watch = CrashWatch(dev, context(), device_path=None, on_crash=print, trace=print)
        dump = watch.collect_fault()
        assert dump is not None and dump.reason == "Fatal Python error: Segmentation fault"
        watch.arm()  # the next boot re-arms: the text is gone, the dump stays
        assert read_fault_area(dev) is None
        reading = read_dump(dev)
    assert reading.condition is Condition.VALID and reading.dump is not None
    assert reading.dump.kind is DumpKind.SIGNAL and reading.dump.version == "16r1sr1"
    assert reading.dump.trace == ("0:0000:030:4 - boot line", "0:0000:030:4 - just before")
    text = format_dump(reading)
    assert "fatal signal (faulthandler):" in text and "line 17 in poke_the_driver" in text


def test_runtime_death_leaves_a_dump_unless_the_boot_wrote_one(disk: Path) -> None:
    with FileBlockDevice(disk) as dev:
        watch = CrashWatch(dev, context(), device_path=None, on_crash=print, trace=print)
        watch.arm()
        dump = record_died(dev, 137)
        assert dump is not None and dump.reason == "runtime died: killed by SIGKILL"
        assert dump.version == "16r1sr1" and read_dump(dev).dump == dump
        watch.arm()  # a new boot; it crashes with an exception dump, then the process ends
        time.sleep(1.1)  # the dump's time must be at or after the arming boot's second
        watch.crash(DumpKind.EXCEPTION, "unhandled exception in thread x: ValueError: v")
        assert record_died(dev, 1) is None
        assert read_dump(dev).dump.kind is DumpKind.EXCEPTION  # type: ignore[union-attr]
    assert died_reason(1) == "runtime died: exit status 1"
    assert died_reason(134) == "runtime died: killed by SIGABRT"


def test_died_entry_point_usage() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "died", "nonsense"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "usage:" in proc.stderr


BURST = 400  # trace lines in a tight loop


class CountingDevice(MemoryBlockDevice):
    """Counts writes to the trace mirror's place on the disk."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.mirror_writes = 0

    def write(self, offset: int, data: bytes) -> None:
        if offset == TRACE_MIRROR:
            self.mirror_writes += 1
        super().write(offset, data)


def test_trace_mirror_batches_a_burst_and_lands_the_newest_tail() -> None:
    dev = CountingDevice(FAULT_END)
    tail: list[str] = []
    ctx = dataclasses.replace(context(), trace_tail=lambda: list(tail))
    watch = CrashWatch(dev, ctx, device_path=None, on_crash=print, trace=print)
    watch.arm()
    for i in range(BURST):
        tail[:] = [f"0:0000:030:4 - line {j}" for j in range(max(0, i - 5), i + 1)]
        watch.trace_changed()
    last = tuple(tail)
    wait_for(lambda: read_trace_mirror(dev) == last, what="the newest tail on the disk")
    # one write per interval, not one per line (the arm's own clearing write is counted)
    assert dev.mirror_writes < BURST // 4, dev.mirror_writes
    tail.append("0:0000:030:4 - traced just before disarm")
    watch.trace_changed()
    watch.disarm()  # writes what the writer had not written yet
    assert read_trace_mirror(dev)[-1] == "0:0000:030:4 - traced just before disarm"


def test_flush_trace_writes_at_once_what_is_dirty() -> None:
    dev = CountingDevice(FAULT_END)
    ctx = dataclasses.replace(context(), trace_tail=lambda: ["0:0000:030:4 - now"])
    watch = CrashWatch(dev, ctx, device_path=None, on_crash=print, trace=print)
    watch.arm()
    watch.flush_trace()  # nothing traced yet: nothing to write
    assert read_trace_mirror(dev) == ()
    watch.trace_changed()
    watch.flush_trace()
    assert read_trace_mirror(dev) == ("0:0000:030:4 - now",)
    watch.disarm()
