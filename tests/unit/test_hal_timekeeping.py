"""Perf-counter probe outcomes, RTC calibration and the strict/fallback policy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.hal import timekeeping as tk
from appliance.hal.timekeeping import (
    Counter,
    Hypervisor,
    Policy,
    TimekeepingHalt,
    calibrate,
    detect_hypervisor,
    polled_edges,
    rtc_edges,
    start_timekeeping,
)


def test_hypervisor_from_dmi() -> None:
    assert detect_hypervisor("VMware, Inc.", "VMware Virtual Platform", frozenset()) == (
        Hypervisor.VMWARE
    )
    assert detect_hypervisor("Microsoft Corporation", "Virtual Machine", frozenset()) == (
        Hypervisor.HYPERV
    )
    assert detect_hypervisor("QEMU", "Standard PC (i440FX + PIIX, 1996)", frozenset()) == (
        Hypervisor.KVM
    )
    assert Policy.AUTO.resolve(Hypervisor.VMWARE) is Policy.STRICT
    assert Policy.AUTO.resolve(Hypervisor.KVM) is Policy.FALLBACK


class FakeRtc:
    """An RTC whose second ticks every `per` calls; the counter advances `step` per call."""

    def __init__(self, per: int = 5) -> None:
        self.calls = 0
        self.per = per

    def __call__(self) -> int:
        self.calls += 1
        return self.calls // self.per


def polled(rtc: Callable[[], int | None]):  # type: ignore[no-untyped-def]
    """calibrate()'s edges from a fake RTC's seconds, polled without sleeping."""
    return lambda: contextlib.nullcontext((polled_edges(rtc, sleep=lambda s: None), "polled"))


def test_calibration_counts_one_rtc_second() -> None:
    rtc = FakeRtc()
    running = Counter("fake", lambda: rtc.calls * 200_000_000, 1e9)
    cal = calibrate(running, polled(rtc))
    assert cal is not None and cal.ticks == 1_000_000_000 and not cal.stopped
    assert cal.edges == "polled"
    stopped = Counter("stuck", lambda: 42, 1e9)
    cal = calibrate(stopped, polled(FakeRtc()))
    assert cal is not None and cal.stopped
    assert calibrate(running, polled(lambda: None)) is None  # no RTC


def test_without_an_update_interrupt_the_rtc_is_polled(tmp_path: Path) -> None:
    """No RTC device, or one that refuses RTC_UIE_ON (here /dev/null: not an RTC): the
    seconds are polled. The interrupt itself is seen in the VM (tests/vm/test_boot.py)."""
    for device in (tmp_path / "rtc0", Path("/dev/null")):
        with rtc_edges(device) as (next_edge, how):
            assert how == "polled" and callable(next_edge)


def _start(policy: Policy, hv: Hypervisor, probe_result: tuple, running: bool = True):  # type: ignore[no-untyped-def]
    lines: list[str] = []
    result = start_timekeeping(
        policy, frozenset(), lines.append, hv=hv, sources=["tsc", "hpet"],
        primary_probe=lambda *a: probe_result,
        advances_fn=lambda c: running if c is probe_result[0] else True,
    )  # fmt: skip
    return result, lines


def test_missing_counter_strict_stops_with_the_seed_message() -> None:
    with pytest.raises(TimekeepingHalt) as e:
        _start(Policy.AUTO, Hypervisor.VMWARE, (None, "RDPMC 0x10001 faulted (SIGILL)"))
    assert str(e.value) == "perfcounter-not enabled!!!" and e.value.shown


def test_missing_counter_fallback_warns_and_goes_on() -> None:
    result, lines = _start(Policy.FALLBACK, Hypervisor.VMWARE, (None, "faulted"))
    assert lines[0] == "perfcounter-not enabled!!!"
    assert "policy fallback" in lines[-1] and not result.primary
    assert result.counter.name.startswith("clocksource ")


def test_counter_that_does_not_run_is_named() -> None:
    counter = Counter("VMware pseudo perfctr 0x10001", lambda: 5, 1e9)
    with pytest.raises(TimekeepingHalt):
        _start(Policy.STRICT, Hypervisor.VMWARE, (counter, "ok"), running=False)
    result, lines = _start(Policy.FALLBACK, Hypervisor.VMWARE, (counter, "ok"), running=False)
    assert lines[0] == "perfcounter-not running!!!"
    assert "VMware pseudo perfctr 0x10001 did not advance in 20 ms" in lines[1]
    assert not result.primary and result.counter is not counter


def test_a_counter_that_stands_still_is_seen_at_once() -> None:
    """The seed's ESX 6.5 case without waiting for an RTC second."""
    ticks = iter(range(100))
    assert tk.advances(Counter("moving", lambda: next(ticks), 1e9), sleep=lambda s: None)
    assert not tk.advances(Counter("stuck", lambda: 42, 1e9), sleep=lambda s: None)


def test_good_counter_decided_then_calibrated() -> None:
    counter = Counter("clocksource kvm-clock", lambda: 5, 1e9)
    result, lines = _start(Policy.AUTO, Hypervisor.KVM, (counter, "ok"))
    assert result.primary and lines == ["time: KVM/QEMU clocksource kvm-clock"]
    assert result.calibrating and result.calibration is None
    result.calibrated(tk.Calibration(10**9, 1.0, "update interrupt"), lines.append)
    assert lines[1:] == ["time: clocksource kvm-clock runs at 100.0% of nominal against the RTC"]
    assert not result.calibrating and result.calibration is not None
    assert result.lines == lines


def test_calibration_findings_are_traced() -> None:
    c = Counter("clocksource tsc", lambda: 5, 1e9)
    assert tk.calibrated_lines(c, None) == ["time: clocksource tsc not calibrated: no RTC"]
    slow = tk.calibrated_lines(c, tk.Calibration(5 * 10**8, 0.5))
    assert slow[1] == "time: warning: clocksource tsc runs at 50% of the RTC"
    stopped = tk.calibrated_lines(c, tk.Calibration(0, 0.0))
    assert "did not advance in one RTC second" in stopped[1]
    assert len(tk.calibrated_lines(c, tk.Calibration(10**9, 1.1))) == 1  # within tolerance


def test_kvm_without_kvmclock_or_invariant_tsc_has_no_primary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    counter, why = tk.probe_primary(Hypervisor.KVM, frozenset({"tsc"}), ["tsc", "hpet"], tmp_path)
    assert counter is None and "no kvm-clock" in why and "no invariant TSC" in why


def test_probed_ahead_then_decided_without_probing_again() -> None:
    """VmPlatform.begin_clock probes while the runtime is imported: the later decision
    uses that probe (the fallback's too) and probes nothing itself."""
    p = tk.probe_clock(
        frozenset(), hv=Hypervisor.KVM, sources=["tsc"],
        primary_probe=lambda *a: (None, "no kvm-clock"), advances_fn=lambda c: True,
    )  # fmt: skip
    assert p.problem is not None and p.keeping is p.fallback
    lines: list[str] = []

    def no_probe(*a: object) -> tuple[None, str]:
        raise AssertionError("probed again")

    result = start_timekeeping(
        Policy.FALLBACK, frozenset(), lines.append, probe=p, primary_probe=no_probe
    )
    assert not result.primary and result.counter is p.fallback
    # off VMware one line says what is missing and what the box falls back to
    assert lines == ["time: KVM/QEMU: no kvm-clock: keeping time from the kernel's clocksource tsc"]
    with pytest.raises(TimekeepingHalt):  # the same probe under strict stops the box
        start_timekeeping(Policy.STRICT, frozenset(), lines.append, probe=p)


def test_the_job_hands_on_the_calibration_whenever_it_comes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ClockJob: probe() comes before the calibration; when_calibrated() registered before
    the calibration is in is called on the job's thread, registered after it at once."""
    import threading

    gate = threading.Event()
    counter = Counter("clocksource kvm-clock", lambda: 5, 1e9)
    probe = tk.ClockProbe(Hypervisor.KVM, counter, "ok", True, counter, True)
    monkeypatch.setattr(tk, "probe_clock", lambda flags: probe)

    def slow_calibrate(c: Counter) -> tk.Calibration:
        assert gate.wait(10)
        return tk.Calibration(10**9, 1.0, "update interrupt")

    monkeypatch.setattr(tk, "calibrate", slow_calibrate)
    job = tk.ClockJob(frozenset())
    assert job.probe() is probe  # while the calibration still waits
    got: list[tuple[str, tk.Calibration | None]] = []
    done = threading.Event()
    job.when_calibrated(
        lambda cal: (got.append((threading.current_thread().name, cal)), done.set())
    )
    assert got == []
    gate.set()
    assert done.wait(10)
    assert got[0][0] == "clock-calibration" and got[0][1] is not None
    later: list[tk.Calibration | None] = []
    job.when_calibrated(later.append)  # already in: called at once
    assert later == [got[0][1]]


def test_time0_info_says_calibrating_until_the_calibration_is_in() -> None:
    from appliance.services.timekeeping import TimekeepingService

    service = TimekeepingService()
    counter = Counter("clocksource tsc", lambda: 5, 1e9)
    service.clock = tk.Timekeeping(Hypervisor.KVM, Policy.FALLBACK, counter, False, None)
    info = service.info(None, [])  # type: ignore[arg-type]  # TIME0 info reads no box
    assert 'rate="calibrating"' in info and 'rtc="calibrating"' in info
    service.clock.calibrated(tk.Calibration(10**9, 1.0, "update interrupt"), lambda line: None)
    info = service.info(None, [])  # type: ignore[arg-type]
    assert 'rate="100.0%"' in info and 'rtc="update interrupt"' in info
    service.clock.calibrated(None, lambda line: None)  # no RTC
    info = service.info(None, [])  # type: ignore[arg-type]
    assert 'rate="not calibrated"' in info and 'rtc="none"' in info
