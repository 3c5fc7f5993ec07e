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

At boot the counter is calibrated against the RTC (CMOS clock, rtc0): count across one RTC
second, from one turn of its seconds to the next. The turns come from the RTC's update
interrupt (/dev/rtc0 with RTC_UIE_ON: each read returns at the next one), so the two seconds
of waiting cost no CPU and the runtime's imports run meanwhile (appliance/__main__.py starts
the measurement first); without an interrupt the seconds in sysfs are polled. Outcomes, as
on the box and beyond it:
  - no counter                → `perfcounter-not enabled!!!`
  - counter does not advance  → `perfcounter-not running!!!` naming it (the seed's ESX 6.5
                                case: "the IPVA boots up properly but the clock does not run")
  - policy strict  (default on VMware, as the box): stop the boot.
    policy fallback (default elsewhere): warn, and keep time from the kernel's own clocksource.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import fcntl
import os
import select
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
    name: str
    read: Callable[[], int]
    hz: float  # nominal rate


@dataclass
class Calibration:
    ticks: int  # counter ticks in one RTC second
    rate: float  # ticks / nominal ticks; 1.0 is perfect
    edges: str = EDGES_POLLED  # how the RTC's seconds were seen to turn (mod cmd TIME0 info)

    @property
    def stopped(self) -> bool:
        return self.ticks <= 0 or self.rate < 0.01


@dataclass
class Timekeeping:
    hypervisor: Hypervisor
    policy: Policy
    counter: Counter
    primary: bool  # the platform's own counter (False: fallback)
    calibration: Calibration | None
    lines: list[str] = field(default_factory=list)  # what the boot trace showed

    def now_ns(self) -> int:
        return int(self.counter.read() * 1e9 / self.counter.hz)


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


@dataclass
class ClockMeasurement:
    """What the boot decides on: the platform's counter (or why there is none) and the
    calibrations. Measuring takes about two RTC seconds, mostly waiting for RTC edges, and
    needs no config: VmPlatform.begin_clock runs it while the runtime is imported."""

    hypervisor: Hypervisor
    counter: Counter | None
    why: str
    calibration: Calibration | None
    # the kernel's clocksource and its calibration, measured when the primary failed
    fallback: Counter | None = None
    fallback_calibration: Calibration | None = None

    @property
    def problem(self) -> tuple[str, str] | None:
        if self.counter is None:
            return NOT_ENABLED, self.why
        if self.calibration is not None and self.calibration.stopped:
            return NOT_RUNNING, (f"{self.counter.name} did not advance in one RTC second: "
                                 "the clock does not run")  # fmt: skip
        return None


def measure_clock(
    cpu_flags: frozenset[str],
    *,
    hv: Hypervisor | None = None,
    sources: list[str] | None = None,
    primary_probe: Callable[..., tuple[Counter | None, str]] = probe_primary,
    calibrate_fn: Callable[[Counter], Calibration | None] = calibrate,
    with_fallback: bool = True,
) -> ClockMeasurement:
    """Probe and calibrate the counter; with_fallback: the kernel's clocksource too when
    the counter is missing or stopped (the fallback policy keeps time from it)."""
    if hv is None:
        hv = detect_hypervisor(read_dmi("sys_vendor"), read_dmi("product_name"), cpu_flags)
    sources = available_clocksources() if sources is None else sources
    counter, why = primary_probe(hv, cpu_flags, sources)
    cal = calibrate_fn(counter) if counter is not None else None
    m = ClockMeasurement(hv, counter, why, cal)
    if with_fallback and m.problem is not None:
        m.fallback = Counter(f"clocksource {current_clocksource()}", _monotonic_raw, 1e9)
        m.fallback_calibration = calibrate_fn(m.fallback)
    return m


def start_timekeeping(
    policy: Policy,
    cpu_flags: frozenset[str],
    trace: Callable[[str], None],
    *,
    measurement: ClockMeasurement | None = None,
    hv: Hypervisor | None = None,
    sources: list[str] | None = None,
    primary_probe: Callable[..., tuple[Counter | None, str]] = probe_primary,
    calibrate_fn: Callable[[Counter], Calibration | None] = calibrate,
) -> Timekeeping:
    """Decide on `measurement` (measured here if not given), trace; raise TimekeepingHalt
    under the strict policy."""
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        trace(text)

    m = measurement
    if m is None:
        m = measure_clock(cpu_flags, hv=hv, sources=sources, primary_probe=primary_probe,
                          calibrate_fn=calibrate_fn, with_fallback=False)  # fmt: skip
    hv = m.hypervisor
    effective = policy.resolve(hv)
    problem = m.problem
    if problem is None:
        counter, cal = m.counter, m.calibration
        assert counter is not None
        rate = (
            f"{cal.rate * 100:.1f}% of nominal against the RTC"
            if cal is not None
            else "not calibrated (no RTC)"
        )
        say(f"time: {hv} {counter.name}, {rate}")
        if cal is not None and abs(cal.rate - 1) > RATE_TOLERANCE:
            say(f"time: warning: {counter.name} runs at {cal.rate * 100:.0f}% of the RTC")
        return Timekeeping(hv, effective, counter, True, cal, lines)
    say(problem[0])
    say(f"time: {hv}: {problem[1]}")
    if effective is Policy.STRICT:
        say("time: policy strict: the box stops here (TIME0 /perfcounter)")
        raise TimekeepingHalt(problem[0])
    fallback, cal = m.fallback, m.fallback_calibration
    if fallback is None:  # the fallback must run too, else there is no time at all
        fallback = Counter(f"clocksource {current_clocksource()}", _monotonic_raw, 1e9)
        cal = calibrate_fn(fallback)
    if cal is not None and cal.stopped:
        say(f"time: {fallback.name} does not advance either: the box stops here")
        raise TimekeepingHalt(problem[0])
    rate = f"{cal.rate * 100:.1f}% against the RTC" if cal is not None else "no RTC"
    say(f"time: warning: policy fallback: keeping time from the kernel's {fallback.name} ({rate})")
    return Timekeeping(hv, effective, fallback, False, cal, lines)
