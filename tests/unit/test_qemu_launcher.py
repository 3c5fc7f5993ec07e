"""The launcher and Machine against real QEMU, booting the KVM probe sector (≈1 s, TCG).

No built image needed: the probe boot sector prints a marker on COM1 and halts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hypervisors.qemu import accel
from hypervisors.qemu.errors import AbnormalShutdown, LaunchError
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import DISK_ROLES, get_profile


@pytest.fixture(autouse=True)
def _qemu_present() -> None:
    # fail, not skip: ./dev installs QEMU, and CI must really boot
    assert shutil.which(accel.QEMU), f"{accel.QEMU} not installed: ./dev installs qemu-system-x86"


MARKER = accel.PROBE_MARKER.decode()


@pytest.fixture
def probe_disks(tmp_path: Path) -> list[Path]:
    disks = [tmp_path / f"{role}.img" for role in DISK_ROLES]
    disks[0].write_bytes(accel.make_probe_sector().ljust(1 << 20, b"\0"))
    for disk in disks[1:]:
        disk.write_bytes(bytes(1 << 20))
    return disks


def test_probe_sector_is_a_boot_sector() -> None:
    sector = accel.make_probe_sector()
    assert len(sector) == 512 and sector[-2:] == b"\x55\xaa"
    assert accel.PROBE_MARKER in sector


def test_probe_runs_under_tcg() -> None:
    assert accel.probe_boot("tcg")


def test_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPVA_ACCEL", "tcg")
    assert accel.choose_accel() == "tcg"
    monkeypatch.setenv("IPVA_ACCEL", "hax")
    with pytest.raises(ValueError, match="IPVA_ACCEL"):
        accel.choose_accel()


@pytest.mark.parametrize("profile", ["vmware", "proxmox", "hyperv", "libvirt"])
def test_machine_boots_resets_power_cuts_and_shuts_down(
    profile: str, probe_disks: list[Path], tmp_path: Path
) -> None:
    with Machine(get_profile(profile), probe_disks, tmp_path / "vm", accel="tcg") as box:
        box.start()
        assert box.wait_for_console(MARKER, 30)
        box.reset()
        assert box.wait_for_console(MARKER, 30)
        box.power_cut()
        assert not box.is_running()
        box.start()
        assert box.wait_for_console(MARKER, 30)
        assert box.qmp("query-status")["status"] == "running"
        box.reset()
        assert box.wait_for_event("RESET", 10)["data"]["guest"] is False
        assert box.screenshot(tmp_path / "screen.ppm").read_bytes().startswith(b"P6")
        assert box.wait_for_console(MARKER, 30)
        box.shutdown()
        assert not box.is_running()
    assert box.console_log.count(MARKER) == 4
    assert (tmp_path / "vm" / "console.log").read_bytes().count(accel.PROBE_MARKER) == 4
    assert (tmp_path / "vm" / "qemu.log").read_text().startswith("# accel=tcg")
    assert probe_disks[0].read_bytes()[:512] == accel.make_probe_sector()  # overlays only


def test_launch_failure_carries_command_and_qemu_log(
    probe_disks: list[Path], tmp_path: Path
) -> None:
    profile = get_profile("vmware", nics=["no-such-nic"])
    with Machine(profile, probe_disks, tmp_path, accel="tcg") as box:
        with pytest.raises(LaunchError) as info:
            box.start()
    assert "no-such-nic,netdev=n0" in info.value.command
    assert "no-such-nic" in info.value.log


def test_hung_qemu_is_killed_and_reported(probe_disks: list[Path], tmp_path: Path) -> None:
    with Machine(get_profile("vmware"), probe_disks, tmp_path, accel="tcg") as box:
        box.start()
        assert box.launcher is not None and box.launcher.process is not None
        process = box.launcher.process
        os.kill(process.pid, signal.SIGSTOP)  # QMP will never answer `quit`
        with pytest.raises(AbnormalShutdown, match="did not quit gracefully") as info:
            box.shutdown(timeout=0.5)
        assert info.value.__cause__ is not None
        assert process.poll() is not None


def test_qemu_dies_with_a_harness_killed_from_outside(
    probe_disks: list[Path], tmp_path: Path
) -> None:
    # a CI job's timeout kills pytest with SIGKILL: no `finally` runs, and a QEMU started
    # without PDEATHSIG went on running (seen: an orphan from a killed test run)
    child = subprocess.Popen(
        [sys.executable, "-c", _HARNESS, str(tmp_path / "vm"), *map(str, probe_disks)],
        cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    qemu_pid = int(child.stdout.readline())
    assert _alive(qemu_pid), "QEMU should run while its harness does"
    child.kill()
    child.wait()
    gone = False
    for _ in range(100):  # a bounded wait for the kernel's SIGKILL, not a timing claim
        if not _alive(qemu_pid):
            gone = True
            break
        time.sleep(0.1)
    if not gone:
        os.kill(qemu_pid, signal.SIGKILL)
    assert gone, "QEMU outlived the harness that started it"


_HARNESS = """
import sys, time
from pathlib import Path
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import get_profile
box = Machine(get_profile("vmware"), [Path(d) for d in sys.argv[2:]], Path(sys.argv[1]),
              accel="tcg")
box.start()
print(box.launcher.process.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    # a zombie has no state worth waiting for: QEMU's parent (init) reaps it
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"
