"""The trace hot path with the crash-dump trace mirror: `python -m bench trace`.

Each trace line used to rewrite the trace mirror on the dump disk (the newest TRACE_TAIL
lines, ~16 KiB, plus an fsync) in the thread that traced. Now a writer thread writes it
(appliance.services.crashwatch: at once after a pause, then at most every
MIRROR_INTERVAL_S). Measured hosted, the dump disk an image file on this machine's disk
(fsync as in the VM), LINES trace lines in a burst, median of RUNS, all in one run:

    floor        the trace buffer alone (no mirror)
    per line     the mirror written and flushed at every line (what the box did before)
    batched      the box's crash watch now (its writer thread; timed to the last line
                 on the disk, flush_trace() included)
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.events import Event, Events, Traced
from appliance.formats.dumpdisk import FAULT_END, TRACE_TAIL, write_trace_mirror
from appliance.hal.block import FileBlockDevice
from appliance.services.crashwatch import CrashWatch, DumpContext
from appliance.trace import TraceBuffer

LINES = 2000
RUNS = 3
CACHE = Path(__file__).resolve().parents[1] / ".cache"  # a real disk: fsync costs as it does


def _context(trace: TraceBuffer) -> DumpContext:
    return DumpContext(
        version="16r1sr1",
        build=1601001,
        bootcode_build=1601001,
        hw="IPVA-bench",
        booted_at=time.monotonic(),
        trace_tail=lambda: trace.lines(TRACE_TAIL),
        saved_config=lambda: ("", 0),
        memory=lambda: (0, 0),
    )


def _burst(trace: TraceBuffer) -> None:
    for i in range(LINES):
        trace(f"HTTP0: login admin from 10.0.2.{i % 250} (bench line {i})")


def _floor(dev: FileBlockDevice) -> tuple[float, int]:
    trace = TraceBuffer(events=Events())
    t0 = time.perf_counter()
    _burst(trace)
    return time.perf_counter() - t0, 0


def _per_line(dev: FileBlockDevice) -> tuple[float, int]:
    events = Events()
    trace = TraceBuffer(events=events)
    lock = threading.Lock()
    writes = 0

    def mirror(event: Event) -> None:  # the crash-dump service before this change
        nonlocal writes
        if isinstance(event, Traced):
            with lock:
                write_trace_mirror(dev, trace.lines(TRACE_TAIL))
                writes += 1

    events.subscribe(mirror)
    t0 = time.perf_counter()
    _burst(trace)
    return time.perf_counter() - t0, writes


def _batched(dev: FileBlockDevice) -> tuple[float, int]:
    events = Events()
    trace = TraceBuffer(events=events)
    watch = CrashWatch(
        dev, _context(trace), device_path=None, on_crash=lambda d: None, trace=lambda t: None
    )
    watch.arm()
    before = watch.mirror_writes
    events.subscribe(lambda e: watch.trace_changed() if isinstance(e, Traced) else None)
    t0 = time.perf_counter()
    _burst(trace)
    watch.flush_trace()  # the last line on the disk
    elapsed = time.perf_counter() - t0
    writes = watch.mirror_writes - before
    watch.disarm()
    return elapsed, writes


def main() -> None:
    CACHE.mkdir(exist_ok=True)
    cases: list[tuple[str, Callable[[FileBlockDevice], tuple[float, int]]]] = [
        ("floor (no mirror)", _floor),
        ("per line (before)", _per_line),
        ("batched (now)", _batched),
    ]
    with tempfile.TemporaryDirectory(prefix="ipva-bench-trace-", dir=CACHE) as tmp:
        image = Path(tmp) / "dump.img"
        with image.open("wb") as f:
            f.truncate(FAULT_END)
        results: dict[str, list[tuple[float, int]]] = {name: [] for name, _ in cases}
        with FileBlockDevice(image) as dev:
            for _ in range(RUNS):  # interleaved, so drift in the machine's load hits all
                for name, fn in cases:
                    results[name].append(fn(dev))
    floor = statistics.median(t for t, _ in results["floor (no mirror)"])
    print(f"{LINES} trace lines in a burst, median of {RUNS}")
    print(f"{'case':<20} {'us/line':>9} {'x floor':>8} {'disk writes':>12}")
    for name, _ in cases:
        t = statistics.median(x for x, _ in results[name])
        w = int(statistics.median(n for _, n in results[name]))
        print(f"{name:<20} {t / LINES * 1e6:9.1f} {t / floor:8.1f} {w:12d}")
