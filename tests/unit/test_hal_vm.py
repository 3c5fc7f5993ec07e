"""VmPlatform's host-tool calls, with subprocess faked: ip failures are raised, udhcpc reaped."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from appliance.hal import vm
from appliance.hal.types import NicConfigError


class FakeIp:
    """subprocess.run for `ip`: records argv, fails the call whose argv contains `fail`."""

    def __init__(self, fail: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        if self.fail and self.fail in argv:
            return subprocess.CompletedProcess(argv, 2, "", "RTNETLINK answers: Invalid argument\n")
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_set_static_runs_the_steps_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    ip = FakeIp()
    monkeypatch.setattr(vm.subprocess, "run", ip)
    vm.VmPlatform().set_static("eth0", "192.168.0.10", 24, "192.168.0.1")
    assert ip.calls == [
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "-4", "addr", "flush", "dev", "eth0"],
        ["ip", "addr", "add", "192.168.0.10/24", "dev", "eth0"],
        ["ip", "route", "replace", "default", "via", "192.168.0.1", "dev", "eth0"],
    ]


def test_a_refused_address_raises_with_ips_message(monkeypatch: pytest.MonkeyPatch) -> None:
    ip = FakeIp(fail="add")
    monkeypatch.setattr(vm.subprocess, "run", ip)
    with pytest.raises(NicConfigError) as e:
        vm.VmPlatform().set_static("eth0", "192.168.0.10", 24, "192.168.0.1")
    assert e.value.what == "address"
    assert str(e.value) == (
        "ip addr add 192.168.0.10/24 dev eth0: RTNETLINK answers: Invalid argument"
    )
    assert ip.calls[-1][1:3] == ["addr", "add"]  # no route after a failed address


def test_a_refused_route_is_a_route_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm.subprocess, "run", FakeIp(fail="replace"))
    with pytest.raises(NicConfigError) as e:
        vm.VmPlatform().set_static("eth0", "192.168.0.10", 24, "192.168.0.1")
    assert e.value.what == "route"


def test_udhcpc_is_kept_and_reaped(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    real_popen = subprocess.Popen
    started: list[list[str]] = []
    envs: list[dict[str, str]] = []

    def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(argv)
        envs.append(kwargs["env"])
        return real_popen(["true"], **kwargs)  # exits at once, as udhcpc when it backgrounds

    upped: list[str] = []
    monkeypatch.setattr(vm, "RUN_DIR", tmp_path)
    monkeypatch.setattr(vm.subprocess, "run", FakeIp())
    monkeypatch.setattr(vm.subprocess, "Popen", popen)
    monkeypatch.setattr(vm, "set_link_up", upped.append)  # never this host's links
    (tmp_path / "dhcp-eth0").write_text("ip=10.0.2.15\nmask=24\n")  # the hook script's file
    platform = vm.VmPlatform()
    platform.start_dhcp("eth0", "192.168.0.1/24")  # returns at once: the lease is the watcher's
    assert platform.dhcp_lease("eth0") == {"ip": "10.0.2.15", "mask": "24"}
    assert upped == ["lo", "eth0"]  # ioctls, not `ip link set … up` processes
    assert started[0][:3] == ["udhcpc", "-i", "eth0"]
    assert envs[0]["IPVA_FALLBACK"] == "192.168.0.1/24"  # for the hook script's leasefail
    platform._reapers["eth0"].join(timeout=30)
    assert platform.dhcp_clients["eth0"].returncode == 0  # waited for: no zombie left


def test_the_box_decides_on_the_clock_without_waiting_for_its_calibration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """start_clock() returns on the probe; the calibration's line follows when it is in."""
    import threading

    from appliance.hal import timekeeping as tk

    counter = tk.Counter("clocksource kvm-clock", lambda: 5, 1e9)
    probe = tk.ClockProbe(tk.Hypervisor.KVM, counter, "ok", True, counter, True)
    monkeypatch.setattr(tk, "probe_clock", lambda flags: probe)  # no writes to the host's sysfs
    gate = threading.Event()

    def calibrate(c: tk.Counter) -> tk.Calibration:
        assert gate.wait(10), "start_clock waited for the calibration"
        return tk.Calibration(10**9, 1.0, "update interrupt")

    monkeypatch.setattr(tk, "calibrate", calibrate)
    platform = vm.VmPlatform()
    platform.begin_clock()
    lines: list[str] = []
    traced = threading.Event()

    def trace(line: str) -> None:
        lines.append(line)
        if "against the RTC" in line:
            traced.set()

    clock = platform.start_clock(tk.Policy.AUTO, trace)
    assert lines == ["time: KVM/QEMU clocksource kvm-clock"] and clock.calibrating
    gate.set()
    assert traced.wait(10)
    assert lines[1] == "time: clocksource kvm-clock runs at 100.0% of nominal against the RTC"
    assert clock.calibration is not None and clock.calibration.edges == "update interrupt"
