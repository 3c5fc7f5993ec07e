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


def _start(policy: Policy, hv: Hypervisor, probe_result: tuple, cal: tk.Calibration | None):  # type: ignore[no-untyped-def]
    lines: list[str] = []
    result = start_timekeeping(
        policy, frozenset(), lines.append, hv=hv, sources=["tsc", "hpet"],
        primary_probe=lambda *a: probe_result,
        calibrate_fn=lambda c: cal if c is probe_result[0] else tk.Calibration(10**9, 1.0),
    )  # fmt: skip
    return result, lines


def test_missing_counter_strict_stops_with_the_seed_message() -> None:
    with pytest.raises(TimekeepingHalt) as e:
        _start(Policy.AUTO, Hypervisor.VMWARE, (None, "RDPMC 0x10001 faulted (SIGILL)"), None)
    assert str(e.value) == "perfcounter-not enabled!!!" and e.value.shown


def test_missing_counter_fallback_warns_and_goes_on() -> None:
    result, lines = _start(Policy.FALLBACK, Hypervisor.VMWARE, (None, "faulted"), None)
    assert lines[0] == "perfcounter-not enabled!!!"
    assert "policy fallback" in lines[-1] and not result.primary


def test_counter_that_does_not_run_is_named() -> None:
    counter = Counter("VMware pseudo perfctr 0x10001", lambda: 5, 1e9)
    stopped = tk.Calibration(0, 0.0)
    with pytest.raises(TimekeepingHalt):
        _start(Policy.STRICT, Hypervisor.VMWARE, (counter, "ok"), stopped)
    result, lines = _start(Policy.FALLBACK, Hypervisor.VMWARE, (counter, "ok"), stopped)
    assert lines[0] == "perfcounter-not running!!!"
    assert "VMware pseudo perfctr 0x10001 did not advance" in lines[1]


def test_good_counter() -> None:
    counter = Counter("clocksource kvm-clock", lambda: 5, 1e9)
    result, lines = _start(Policy.AUTO, Hypervisor.KVM, (counter, "ok"), tk.Calibration(10**9, 1.0))
    assert result.primary and lines == [
        "time: KVM/QEMU clocksource kvm-clock, 100.0% of nominal against the RTC"
    ]


def test_kvm_without_kvmclock_or_invariant_tsc_has_no_primary(tmp_path) -> None:  # type: ignore[no-untyped-def]
    counter, why = tk.probe_primary(Hypervisor.KVM, frozenset({"tsc"}), ["tsc", "hpet"], tmp_path)
    assert counter is None and "no kvm-clock" in why and "no invariant TSC" in why


def test_measured_ahead_then_decided_without_measuring_again() -> None:
    """VmPlatform.begin_clock measures while the flash mounts: the later decision uses
    that measurement (fallback calibrated too) and calibrates nothing itself."""
    calls: list[str] = []

    def cal(c: Counter) -> tk.Calibration:
        calls.append(c.name)
        return tk.Calibration(10**9, 1.0)

    m = tk.measure_clock(
        frozenset(), hv=Hypervisor.KVM, sources=["tsc"],
        primary_probe=lambda *a: (None, "no kvm-clock"), calibrate_fn=cal,
    )  # fmt: skip
    assert m.problem is not None and m.fallback is not None and len(calls) == 1
    lines: list[str] = []

    def no_calibration(c: Counter) -> tk.Calibration:
        raise AssertionError("calibrated again")

    result = start_timekeeping(
        Policy.FALLBACK, frozenset(), lines.append, measurement=m, calibrate_fn=no_calibration
    )
    assert not result.primary and result.calibration is m.fallback_calibration
    assert lines[0] == "perfcounter-not enabled!!!" and "policy fallback" in lines[-1]
    with pytest.raises(TimekeepingHalt):  # the same measurement under strict stops the box
        start_timekeeping(Policy.STRICT, frozenset(), lines.append, measurement=m)
