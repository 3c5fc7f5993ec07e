"""Perf-counter timekeeping: probe the counter the platform offers, calibrate it, or say why not.

The box keeps time from a hardware counter, and which one depends on the hypervisor, taken
from the DMI (SMBIOS type 1) vendor in /sys/class/dmi/id:
  VMware, Inc.            VMware's pseudo performance counters: RDPMC 0x10000 (host TSC) and
                          0x10001 (elapsed real time, ns); present only with
                          `monitor_control.pseudo_perfctr = TRUE` in the .vmx, else RDPMC
                          faults — so the probe runs in a child process (hal.native).
  Microsoft Corporation   Hyper-V's reference TSC page (clocksource hyperv_clocksource_tsc_page)
  QEMU / other KVM        kvm-clock, or an invariant TSC (cpu flags constant_tsc + nonstop_tsc)
A clocksource counter is made the kernel's current clocksource and read through
CLOCK_MONOTONIC_RAW (no NTP slewing: the counter itself).

The boot decides on the probe alone, within milliseconds: is there a counter, and does it
move at all (ADVANCE_CHECK_S). Its calibration against the RTC (CMOS clock, rtc0) follows on
the measuring thread without holding up the prompt, and the trace gives its rate when it is
in: counter ticks across one RTC second, from one turn of its seconds to the next. The turns
come from the RTC's update interrupt (/dev/rtc0 with RTC_UIE_ON: each read returns at the
next one), so the one to two seconds of waiting cost no CPU (appliance/__main__.py starts the
measurement before the runtime's imports); without an interrupt the seconds in sysfs are
polled. Outcomes, as on the box and beyond it:
  - no counter                → `perfcounter-not enabled!!!`
  - counter does not advance  → `perfcounter-not running!!!` naming it (the seed's ESX 6.5
                                case: "the IPVA boots up properly but the clock does not run")
  - policy strict  (default on VMware, as the box): stop the boot.
    policy fallback (default elsewhere): warn, and keep time from the kernel's own clocksource;
    off VMware, where the seed's messages (about VMware's counters) do not apply, one line
    says what is missing and what the box keeps time with instead.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from appliance.hal.native import RDPMC_CODE, ChildResult, NativeCode, run_in_child
from appliance.hal.types import HaltError

NOT_ENABLED = "perfcounter-not enabled!!!"
NOT_RUNNING = "perfcounter-not running!!!"
VMWARE_REAL_NS = 0x10001  # elapsed real time in ns (0x10000 is the host TSC)
VMWARE_HOST_TSC = 0x10000
RTC_EDGE_TIMEOUT_S = 1.5
ADVANCE_CHECK_S = 0.02  # a counter that stands still this long does not run
RATE_TOLERANCE = 0.25  # TCG and busy hosts stretch seconds; a stopped clock is far off
CLOCKSOURCE = Path("/sys/devices/system/clocksource/clocksource0")
RTC_SECONDS = Path("/sys/class/rtc/rtc0/since_epoch")
RTC_DEVICE = Path("/dev/rtc0")
RTC_UIE_ON, RTC_UIE_OFF = 0x7003, 0x7004  # linux/rtc.h: _IO('p', 0x03), _IO('p', 0x04)
EDGES_INTERRUPT = "update interrupt"
EDGES_POLLED = "polled"
DMI = Path("/sys/class/dmi/id")
RDPMC_SYSCTL = Path("/sys/bus/event_source/devices/cpu/rdpmc")


class Hypervisor(enum.StrEnum):
    VMWARE = "VMware"
    HYPERV = "Hyper-V"
    KVM = "KVM/QEMU"
    OTHER = "unknown"


class Policy(enum.StrEnum):
    AUTO = "auto"  # strict on VMware, fallback elsewhere
    STRICT = "strict"
    FALLBACK = "fallback"

    def resolve(self, hv: Hypervisor) -> Policy:
        if self is Policy.AUTO:
            return Policy.STRICT if hv is Hypervisor.VMWARE else Policy.FALLBACK
        return self


class TimekeepingHalt(HaltError):
    """Strict policy and no usable counter: the box stops (message already traced)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, shown=True)


def detect_hypervisor(sys_vendor: str, product: str, cpu_flags: frozenset[str]) -> Hypervisor:
    vendor = sys_vendor.strip()
    if vendor == "VMware, Inc.":
        return Hypervisor.VMWARE
    if vendor == "Microsoft Corporation" and "Virtual Machine" in product:
        return Hypervisor.HYPERV
    if vendor == "QEMU" or "kvm" in product.lower():
        return Hypervisor.KVM
    return Hypervisor.OTHER


@dataclass
class Counter:
    """A counter the box can keep time from: how to read it and its nominal rate."""

    name: str
    read: Callable[[], int]
    hz: float  # nominal rate


@dataclass
class Calibration:
    """A counter measured against the RTC's seconds."""

    ticks: int  # counter ticks in one RTC second
    rate: float  # ticks / nominal ticks; 1.0 is perfect
    edges: str = EDGES_POLLED  # how the RTC's seconds were seen to turn (mod cmd TIME0 info)

    @property
    def stopped(self) -> bool:
        return self.ticks <= 0 or self.rate < 0.01


@dataclass
class Timekeeping:
    """How the box keeps time: the hypervisor, the policy, the counter and its calibration."""

    hypervisor: Hypervisor
    policy: Policy
    counter: Counter
    primary: bool  # the platform's own counter (False: fallback)
    calibration: Calibration | None  # None: not calibrated (yet, or there is no RTC)
    lines: list[str] = field(default_factory=list)  # what the boot trace showed
    calibrating: bool = True  # calibrated() is still to come

    def now_ns(self) -> int:
        return int(self.counter.read() * 1e9 / self.counter.hz)

    def calibrated(self, cal: Calibration | None, trace: Callable[[str], None]) -> None:
        """The counter's calibration is in (on the measuring thread, or at once if it was
        in before the boot decided): keep it and trace what it says."""
        self.calibration = cal
        self.calibrating = False
        for line in calibrated_lines(self.counter, cal):
            self.lines.append(line)
            trace(line)


# --- probes ----------------------------------------------------------------------------


def available_clocksources(base: Path = CLOCKSOURCE) -> list[str]:
    try:
        return (base / "available_clocksource").read_text().split()
    except OSError:
        return []


def current_clocksource(base: Path = CLOCKSOURCE) -> str:
    try:
        return (base / "current_clocksource").read_text().strip()
    except OSError:
        return "unknown"


def _monotonic_raw() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)


def clocksource_counter(name: str, base: Path = CLOCKSOURCE) -> Counter | None:
    """Make `name` the kernel's clocksource (root in the guest) and read it raw."""
    if current_clocksource(base) != name:
        try:
            (base / "current_clocksource").write_text(name)
        except OSError:
            return None
        if current_clocksource(base) != name:
            return None
    return Counter(f"clocksource {name}", _monotonic_raw, 1e9)


def probe_vmware_pseudo(
    child: Callable[[Callable[[], list[int]]], ChildResult] = run_in_child,
) -> tuple[Counter | None, str]:
    """RDPMC 0x10001 in a child: a fault (no pseudo_perfctr) kills only the child."""
    import ctypes  # here: only VMware's probe calls machine code (ctypes costs the boot)

    try:  # allow user-space RDPMC where the kernel has a PMU driver (CR4.PCE)
        RDPMC_SYSCTL.write_text("2")
    except OSError:
        pass

    def work() -> list[int]:
        fn = NativeCode(RDPMC_CODE, ctypes.c_uint64, ctypes.c_uint32).fn
        a = fn(VMWARE_REAL_NS)
        time.sleep(0.02)
        return [a, fn(VMWARE_REAL_NS), fn(VMWARE_HOST_TSC)]

    result = child(work)
    if not result.ok:
        return None, (
            f"RDPMC 0x10001 faulted ({result.signal}): add "
            "monitor_control.pseudo_perfctr = TRUE to the .vmx"
        )
    fn = NativeCode(RDPMC_CODE, ctypes.c_uint64, ctypes.c_uint32).fn
    return Counter("VMware pseudo perfctr 0x10001", lambda: int(fn(VMWARE_REAL_NS)), 1e9), "ok"


def probe_primary(
    hv: Hypervisor, cpu_flags: frozenset[str], sources: list[str], base: Path = CLOCKSOURCE
) -> tuple[Counter | None, str]:
    """The platform's own counter, or None and why it is missing."""
    if hv is Hypervisor.VMWARE:
        return probe_vmware_pseudo()
    invariant_tsc = {"constant_tsc", "nonstop_tsc"} <= cpu_flags and "tsc" in sources
    if hv is Hypervisor.HYPERV:
        for name in ("hyperv_clocksource_tsc_page", "hyperv_clocksource_msr"):
            if name in sources:
                return clocksource_counter(name, base), "ok"
        why = "no Hyper-V reference TSC (hyperv_clocksource_tsc_page)"
    elif hv is Hypervisor.KVM:
        if "kvm-clock" in sources:
            return clocksource_counter("kvm-clock", base), "ok"
        why = "no kvm-clock (KVM acceleration off?)"
    else:
        why = "unknown hypervisor"
    if invariant_tsc:
        return clocksource_counter("tsc", base), "ok"
    return None, f"{why} and no invariant TSC (constant_tsc+nonstop_tsc); clocksources: " + (
        " ".join(sources) or "none"
    )


# --- calibration -----------------------------------------------------------------------


def read_rtc_seconds(path: Path = RTC_SECONDS) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


# an edge waiter: blocks until the RTC's seconds turn; False when none came in time
NextEdge = Callable[[], bool]


def polled_edges(
    rtc: Callable[[], int | None] = read_rtc_seconds,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> NextEdge:
    """Edges by polling the RTC's seconds every 2 ms (where there is no update interrupt)."""

    def next_edge() -> bool:
        start = rtc()
        if start is None:
            return False
        deadline = monotonic() + RTC_EDGE_TIMEOUT_S
        while monotonic() < deadline:
            if rtc() != start:
                return True
            sleep(0.002)
        return False

    return next_edge


@contextlib.contextmanager
def rtc_edges(device: Path = RTC_DEVICE) -> Iterator[tuple[NextEdge, str]]:
    """The RTC's edges from its update interrupt if the device has one, else polled; with
    which of the two it is."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield polled_edges(), EDGES_POLLED
        return
    try:
        try:
            fcntl.ioctl(fd, RTC_UIE_ON)
        except OSError:  # no interrupt (no IRQ for the RTC, an RTC without updates)
            yield polled_edges(), EDGES_POLLED
            return

        def next_edge() -> bool:
            ready, _, _ = select.select([fd], [], [], RTC_EDGE_TIMEOUT_S)
            if not ready:
                return False
            os.read(fd, 8)  # the interrupt count and kind: the edge is what matters
            return True

        try:
            yield next_edge, EDGES_INTERRUPT
        finally:
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, RTC_UIE_OFF)
    finally:
        os.close(fd)


def calibrate(
    counter: Counter,
    edges: Callable[[], contextlib.AbstractContextManager[tuple[NextEdge, str]]] = rtc_edges,
) -> Calibration | None:
    """Counter ticks across one RTC second (two RTC edges); None if there is no RTC."""
    with edges() as (next_edge, how):
        if not next_edge():
            return None
        c0 = counter.read()
        if not next_edge():
            return None
        ticks = counter.read() - c0
    return Calibration(ticks, ticks / counter.hz, how)


# --- the boot step ---------------------------------------------------------------------


def read_dmi(name: str, base: Path = DMI) -> str:
    try:
        return (base / name).read_text().strip()
    except OSError:
        return ""


def advances(counter: Counter, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Whether the counter moves at all within ADVANCE_CHECK_S: the seed's "the clock does
    not run" (ESX 6.5) is a counter that stands still, which needs no RTC second to see."""
    first = counter.read()
    sleep(ADVANCE_CHECK_S)
    return counter.read() != first


@dataclass
class ClockProbe:
    """What the boot decides on, known within milliseconds: the platform's counter (or why
    there is none), whether it runs, and the kernel's clocksource to fall back to. Needs
    no config: VmPlatform.begin_clock probes while the runtime is imported."""

    hypervisor: Hypervisor
    counter: Counter | None
    why: str
    running: bool  # the counter advanced (False when there is none)
    fallback: Counter
    fallback_running: bool

    @property
    def problem(self) -> tuple[str, str] | None:
        if self.counter is None:
            return NOT_ENABLED, self.why
        if not self.running:
            ms = ADVANCE_CHECK_S * 1000
            return (
                NOT_RUNNING,
                f"{self.counter.name} did not advance in {ms:.0f} ms: the clock does not run",
            )
        return None

    @property
    def keeping(self) -> Counter:
        """The counter the box keeps time with unless the policy stops it: the one to
        calibrate."""
        return self.counter if self.counter is not None and self.problem is None else self.fallback


def probe_clock(
    cpu_flags: frozenset[str],
    *,
    hv: Hypervisor | None = None,
    sources: list[str] | None = None,
    primary_probe: Callable[..., tuple[Counter | None, str]] = probe_primary,
    advances_fn: Callable[[Counter], bool] = advances,
) -> ClockProbe:
    if hv is None:
        hv = detect_hypervisor(read_dmi("sys_vendor"), read_dmi("product_name"), cpu_flags)
    sources = available_clocksources() if sources is None else sources
    counter, why = primary_probe(hv, cpu_flags, sources)
    running = counter is not None and advances_fn(counter)
    if counter is not None and running:
        return ClockProbe(hv, counter, why, True, counter, True)
    fallback = Counter(f"clocksource {current_clocksource()}", _monotonic_raw, 1e9)
    return ClockProbe(hv, counter, why, running, fallback, advances_fn(fallback))


class ClockJob:
    """probe_clock() and then the calibration of the counter it chose, on a daemon thread
    of its own: probe() waits for the first (milliseconds), when_calibrated() hands on the
    second (one to two RTC seconds later) without waiting for it."""

    def __init__(self, cpu_flags: frozenset[str]) -> None:
        self._flags = cpu_flags
        self._probed = threading.Event()
        self._probe: ClockProbe | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()  # between the thread's result and when_calibrated()
        self._done = False
        self._cal: Calibration | None = None
        self._then: Callable[[Calibration | None], None] | None = None
        threading.Thread(target=self._run, name="clock-calibration", daemon=True).start()

    def _run(self) -> None:
        try:
            probe = self._probe = probe_clock(self._flags)
        except BaseException as e:  # handed to whoever calls probe()
            self._error = e
            return
        finally:
            self._probed.set()
        try:
            cal = calibrate(probe.keeping)
        except OSError:  # the RTC failed mid-way: as without one
            cal = None
        with self._lock:
            self._done, self._cal, then = True, cal, self._then
        if then is not None:
            then(cal)

    def probe(self) -> ClockProbe:
        self._probed.wait()
        if self._error is not None:
            raise self._error
        assert self._probe is not None
        return self._probe

    def when_calibrated(self, then: Callable[[Calibration | None], None]) -> None:
        """`then(calibration)` now if it is in, else on the job's thread when it is."""
        with self._lock:
            if not self._done:
                self._then = then
                return
        then(self._cal)


def calibrated_lines(counter: Counter, cal: Calibration | None) -> list[str]:
    """What the trace says once the counter's calibration against the RTC is in (after
    the boot's decision, which does not wait for it)."""
    if cal is None:
        return [f"time: {counter.name} not calibrated: no RTC"]
    lines = [f"time: {counter.name} runs at {cal.rate * 100:.1f}% of nominal against the RTC"]
    if cal.stopped:
        lines.append(f"time: warning: {counter.name} did not advance in one RTC second: "
                     "the clock does not run")  # fmt: skip
    elif abs(cal.rate - 1) > RATE_TOLERANCE:
        lines.append(f"time: warning: {counter.name} runs at {cal.rate * 100:.0f}% of the RTC")
    return lines


def start_timekeeping(
    policy: Policy,
    cpu_flags: frozenset[str],
    trace: Callable[[str], None],
    *,
    probe: ClockProbe | None = None,
    hv: Hypervisor | None = None,
    sources: list[str] | None = None,
    primary_probe: Callable[..., tuple[Counter | None, str]] = probe_primary,
    advances_fn: Callable[[Counter], bool] = advances,
) -> Timekeeping:
    """Decide on `probe` (probed here if not given), trace; raise TimekeepingHalt under the
    strict policy. The calibration comes later: Timekeeping.calibrated()."""
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        trace(text)

    p = probe
    if p is None:
        p = probe_clock(cpu_flags, hv=hv, sources=sources, primary_probe=primary_probe,
                        advances_fn=advances_fn)  # fmt: skip
    effective = policy.resolve(p.hypervisor)
    problem = p.problem
    if problem is None:
        assert p.counter is not None
        say(f"time: {p.hypervisor} {p.counter.name}")
        return Timekeeping(p.hypervisor, effective, p.counter, True, None, lines)
    off_vmware = p.hypervisor is not Hypervisor.VMWARE
    if off_vmware and effective is Policy.FALLBACK and p.fallback_running:
        # the seed's perfcounter-… messages are about VMware's pseudo counters: elsewhere the
        # fallback is the plan, said in one line
        say(f"time: {p.hypervisor}: {problem[1]}: keeping time from the kernel's {p.fallback.name}")
        return Timekeeping(p.hypervisor, effective, p.fallback, False, None, lines)
    say(problem[0])
    say(f"time: {p.hypervisor}: {problem[1]}")
    if effective is Policy.STRICT:
        say("time: policy strict: the box stops here (TIME0 /perfcounter)")
        raise TimekeepingHalt(problem[0])
    if not p.fallback_running:
        say(f"time: {p.fallback.name} does not advance either: the box stops here")
        raise TimekeepingHalt(problem[0])
    say(f"time: warning: policy fallback: keeping time from the kernel's {p.fallback.name}")
    return Timekeeping(p.hypervisor, effective, p.fallback, False, None, lines)
