"""CPU and memory counters for monitoring: `mod cmd LOG0/CNT xml-count /x 0|2`.

Monitoring reads these as the real box serves them, over HTTP at
`/LOG0/CNT/mod_cmd.xml?cmd=xml-count&pos=23&x=2` (memory; `x=0`: CPU). The check_innovaphone
plugin (github hashfunktion/check_innovaphone) takes `root.iter('info')`'s `s` (for memory
the total in KiB) and `root.findall('h[last()]')` → `m[<minute - 1>]`'s `c` (percent); at
minutes 00 and 01 it reads `h[last()-1]/m[60]`. So the answer is

    <info s="<total KiB|100>" x="2"><h hour="…" c="<hour's mean>"><m c="…"/> … </h> … </info>

one `<h>` per clock hour (the last one the current hour, there from its first minute), in
each `<m>` position k the minute k-1 of that hour: every minute that has passed, `c`
missing where the box has no sample (before it started), so positions are minutes.
`pos` (the real box's log position) is accepted and has no meaning here.

CPU is the runtime's own CPU time (with its children's: the IPVA runs nothing else) over
the minute, in percent of the box's CPUs; memory is the used share of MemTotal (MemTotal -
MemAvailable in the VM; hosted, where the host's memory says nothing about the box, the
runtime's resident size against the box's figure). One sample a minute, the last
`HOURS` hours, in memory only (a reset starts empty): the sampler is a thread the service
owns — start() starts it, stop() stops and joins it.
"""

from __future__ import annotations

import datetime
import enum
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.modcmd import Command, ModCmdError
from appliance.service import BaseService
from appliance.trace import Tag
from appliance.xmltext import attr

if TYPE_CHECKING:
    from appliance.box import Box

HOURS = 24  # hours of samples kept (24 * 60 * 2 small ints)
STOP_JOIN_S = 5.0
MODULE = "LOG0/CNT"


class Counter(enum.IntEnum):
    """The `x` of xml-count: which counter (the real box's numbering for these two)."""

    CPU = 0
    MEMORY = 2


@dataclass(frozen=True)
class Sample:
    """One minute's CPU and memory use, in percent."""

    cpu: int  # percent
    memory: int  # percent of the total


def _hour(t: datetime.datetime) -> datetime.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


class CounterLog:
    """The samples by minute, the last HOURS hours; no clock, no thread."""

    def __init__(self, hours: int = HOURS) -> None:
        self.hours = hours
        self._by_hour: dict[datetime.datetime, list[Sample | None]] = {}

    def record(self, minute: datetime.datetime, sample: Sample) -> None:
        row = self._by_hour.setdefault(_hour(minute), [None] * 60)
        row[minute.minute] = sample
        for old in sorted(self._by_hour)[: -self.hours]:
            del self._by_hour[old]

    def xml(self, counter: Counter, now: datetime.datetime, total: int) -> str:
        current = _hour(now)
        hours = [h for h in sorted(self._by_hour) if h < current][-(self.hours - 1) :]
        out = [f'<info s="{total}" x="{int(counter)}">']
        for h in [*hours, current]:
            row = self._by_hour.get(h, [None] * 60)
            # the current hour: the minutes that have passed; earlier hours: all 60
            upto = now.minute if h == current else 60
            values = [self._value(s, counter) for s in row[:upto]]
            got = [v for v in values if v is not None]
            mean = f' c="{round(sum(got) / len(got))}"' if got else ""
            out.append(f'<h hour="{attr(h.strftime("%Y-%m-%d %H"))}"{mean}>')
            out += ["<m/>" if v is None else f'<m c="{v}"/>' for v in values]
            out.append("</h>")
        out.append("</info>")
        return "".join(out)

    @staticmethod
    def _value(s: Sample | None, counter: Counter) -> int | None:
        if s is None:
            return None
        return s.cpu if counter is Counter.CPU else s.memory


def process_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class CountersService(BaseService):
    name = "counters"

    def __init__(
        self,
        *,
        clock: Callable[[], datetime.datetime] = datetime.datetime.now,
        cpu_s: Callable[[], float] = process_cpu_s,
        monotonic: Callable[[], float] = time.monotonic,
        period_s: float = 60.0,
    ) -> None:
        self.clock = clock
        self.cpu_s = cpu_s
        self.monotonic = monotonic
        self.period_s = period_s
        self.log = CounterLog()
        self._lock = threading.Lock()  # the sampler writes, commands read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._total = 0  # bytes
        self._used: Callable[[], int] = resident_bytes
        self._box: Box | None = None

    # --- life cycle ---------------------------------------------------------------------
    def start(self, box: Box) -> None:
        self._box = box
        self._total = box.platform.memory_info().total
        platform = box.platform
        if platform.memory_free() is not None:
            self._used = lambda: self._total - (platform.memory_free() or 0)
        self._thread = threading.Thread(target=self._run, name="counters", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        t = self._thread
        if t is None:
            return
        t.join(timeout=STOP_JOIN_S)
        if t.is_alive() and self._box is not None:
            self._box.trace(
                f"counters: the sampler did not stop within {STOP_JOIN_S:.0f} s", Tag.BOOT
            )

    def _run(self) -> None:
        cpu0, wall0 = self.cpu_s(), self.monotonic()
        while not self._stop.wait(self._until_next_minute()):
            cpu1, wall1 = self.cpu_s(), self.monotonic()
            self.sample(cpu1 - cpu0, wall1 - wall0)
            cpu0, wall0 = cpu1, wall1

    def _until_next_minute(self) -> float:
        """Seconds to the next sample: at each full minute of the clock (period_s apart
        under a test's clock)."""
        if self.period_s != 60.0:
            return self.period_s
        now = self.clock()
        return 60.0 - now.second - now.microsecond / 1e6

    def sample(self, cpu_s: float, wall_s: float, ended: datetime.datetime | None = None) -> None:
        """One minute's sample, put on `ended`: by default the minute before the clock's
        current one (the sampler wakes just after each full minute)."""
        if ended is None:
            now = self.clock().replace(second=0, microsecond=0)
            ended = now - datetime.timedelta(minutes=1)
        ncpu = os.cpu_count() or 1
        cpu = round(100 * cpu_s / (wall_s * ncpu)) if wall_s > 0 else 0
        try:
            used = self._used()
        except (OSError, ValueError):
            used = 0
        memory = round(100 * used / self._total) if self._total else 0
        with self._lock:
            self.log.record(ended, Sample(min(max(cpu, 0), 100), min(max(memory, 0), 100)))

    # --- commands -----------------------------------------------------------------------
    def commands(self) -> list[Command]:
        return [
            Command(MODULE, "xml-count", "xml-count /x 0|2 [/pos n]: CPU (0) or memory (2) "
                    "per minute and hour (XML, as monitoring reads it)", self._cmd_count),
        ]  # fmt: skip

    def _cmd_count(self, box: Box, args: list[str]) -> str:
        opts = dict(zip(args[::2], args[1::2], strict=False))
        if len(args) % 2 or not set(opts) <= {"/x", "/pos"}:
            raise ModCmdError(f"usage: mod cmd {MODULE} xml-count /x 0|2 [/pos <n>]")
        x = opts.get("/x", "0")
        try:
            counter = Counter(int(x))
        except ValueError:
            raise ModCmdError(
                f"{MODULE} xml-count: /x is 0 (CPU) or 2 (memory), not {x!r}"
            ) from None
        total = self._total // 1024 if counter is Counter.MEMORY else 100
        with self._lock:
            return self.log.xml(counter, self.clock(), total)
