"""The platform inside our guest: real devices under Debian's kernel, set up by /init.

Everything here is read from what the virtual machine presents (sysfs, procfs, DMI, PCI
ids, disk positions and signatures); services build on it (services.network uses the NICs
and the DHCP client) — hal never imports services.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.hal.block import BlockDevice, FileBlockDevice
from appliance.hal.bootfiles import BootFiles, MountedBootFiles
from appliance.hal.cpu import CpuInfo, read_cpuinfo
from appliance.hal.cpu import trace_lines as cpu_trace_lines
from appliance.hal.disks import (
    ROLE_ORDER,
    DiskPosition,
    Signature,
    assign_roles,
    check_signatures,
    read_signature,
    scan_positions,
)
from appliance.hal.memory import read_memory_info
from appliance.hal.nics import (
    DHCP_TRIES,
    DHCP_TRY_S,
    DHCP_WAIT_S,
    PciNic,
    Port,
    assign_ports,
    read_link_state,
    scan_pci_nics,
    set_link_up,
)
from appliance.hal.timekeeping import ClockJob, Policy, Timekeeping, start_timekeeping
from appliance.hal.types import (
    Console,
    DiskRole,
    HaltError,
    MemoryInfo,
    MissingDiskError,
    NicConfigError,
    RestartKind,
    Unavailable,
)
from appliance.version import BUILD, PRODUCT

if TYPE_CHECKING:
    from appliance.formats.signify import Keyring
    from appliance.hal.cf import CfBackend

BOOT_MOUNT = Path("/boot")  # where /init mounted the boot partition (read-only)

SERIAL_CONSOLE = "/dev/ttyS0"
VGA_CONSOLE = "/dev/tty1"
RUN_DIR = Path("/run/ipva")
UDHCPC_SCRIPT = "/etc/udhcpc.script"
DISK_WAIT_S = 5.0
NIC_WAIT_S = 5.0  # a supported NIC whose interface has not appeared yet
# written by the build into the initramfs (firmware/initramfs.py): "16r1sr1 build 1601001";
# the runtime runs in that root file system, so it reads the bootcode's own file
BOOTCODE_VERSION = Path("/etc/bootcode-version")
KEYRING_DIR = Path("/etc/ipva/keyring")  # in the initramfs: the keys /init checks slots with


def read_bootcode_build(path: Path = BOOTCODE_VERSION) -> int:
    """The bootcode's build from its version file; the runtime's build if it has none
    (a bootcode older than the file), so the version line always shows a number."""
    try:
        words = path.read_text().split()
    except OSError:
        return BUILD
    if len(words) >= 3 and words[1] == "build" and words[2].isdigit():
        return int(words[2])
    return BUILD


def run_ip(what: str, *args: str) -> None:
    """busybox/iproute2 `ip …`; a non-zero exit raises NicConfigError(what, its stderr)."""
    out = subprocess.run(
        ["ip", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        why = out.stderr.strip() or f"exit status {out.returncode}"
        raise NicConfigError(what, f"ip {' '.join(args)}: {why}")


class TtyConsole:
    """A tty in raw mode: the shell does its own line discipline, as on the box."""

    def __init__(self, path: str) -> None:
        self.name = Path(path).name
        self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self._fd, termios.TCSANOW)

    def read(self, n: int = 1) -> bytes:
        return os.read(self._fd, n)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]


@dataclass
class VmPlatform:
    """The Platform inside our guest: the VM's CPU, memory, disks, NICs and consoles."""

    name: str = "vm"
    hw_id: str = f"{PRODUCT}-vm"
    needs_nic: bool = True  # the box stops with `NIC unavailable!`
    newline: bytes = b"\r\n"
    ctrl_d_ends: bool = False  # a serial console never ends
    # the web admin, counters and update start after the prompt: under emulation their
    # imports alone take a second (appliance/services/__init__.py)
    prompt_first: bool = True
    bootcode_build: int = field(default_factory=read_bootcode_build)
    positions: dict[DiskRole, DiskPosition] = field(default_factory=dict)
    signatures: dict[DiskRole, Signature] = field(default_factory=dict)
    disk_notes: list[str] = field(default_factory=list)
    _cpu: CpuInfo | None = None
    _ports: list[Port] | None = None
    _pci_nics: list[PciNic] = field(default_factory=list)
    # udhcpc per interface: its first process exits when it backgrounds (-b) and must be
    # waited for, else it stays a zombie; a reaper thread each does that
    dhcp_clients: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _reapers: dict[str, threading.Thread] = field(default_factory=dict)
    _clock_job: ClockJob | None = None

    # --- CPU and memory ----------------------------------------------------------------
    def cpu(self) -> CpuInfo:
        if self._cpu is None:
            self._cpu = read_cpuinfo()
        return self._cpu

    def cpu_lines(self) -> list[str]:
        return cpu_trace_lines(self.cpu())

    def memory_info(self) -> MemoryInfo:
        return read_memory_info()

    def memory_free(self) -> int | None:
        """The kernel's MemAvailable (what support staff ask for next to DRAM)."""
        try:
            for line in open("/proc/meminfo"):
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return None

    # --- disks -------------------------------------------------------------------------
    def open_disks(self) -> dict[DiskRole, BlockDevice]:
        # /init already waited for the boot disk; the others come from the same probe
        deadline = time.monotonic() + DISK_WAIT_S
        while True:
            self.positions = assign_roles(scan_positions())
            if len(self.positions) == len(DiskRole) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        on_scsi = any(p.bus == "scsi" for p in self.positions.values())
        for role in DiskRole:
            if role not in self.positions:
                n = ROLE_ORDER.index(role)
                raise MissingDiskError(role, f"SCSI disk {n + 1} of 4" if on_scsi else None)
        files = {r: FileBlockDevice(f"/dev/{p.name}") for r, p in self.positions.items()}
        disks: dict[DiskRole, BlockDevice] = dict(files)
        try:
            self.signatures = {r: read_signature(d) for r, d in disks.items()}
            halt, self.disk_notes = check_signatures(self.signatures)
            if halt:
                raise HaltError(halt)
        except BaseException:  # the caller never gets them: close them here
            for dev in files.values():
                dev.close()
            raise
        return disks

    def disk_lines(self) -> list[str]:
        """Boot-trace lines: where each role was found and what it holds."""
        lines = [
            f"disk {role.value}: {self.positions[role].describe()} "
            f"({self.positions[role].name}, {self.signatures.get(role, Signature.UNKNOWN).value})"
            for role in DiskRole
            if role in self.positions
        ]
        return lines + self.disk_notes

    def compact_flash(self, dev: BlockDevice) -> CfBackend:
        """The kernel's vfat on the CF disk's device node (busybox mount, mkdosfs)."""
        if not isinstance(dev, FileBlockDevice):
            raise Unavailable("CF0: the CF disk is not a device here")
        # here, not with the module: hal.vm is imported before the clock's calibration
        # starts (appliance/__main__.py), and hal.cf brings construct
        from appliance.hal.cf import VmCfBackend

        return VmCfBackend(str(dev.path))

    # --- NICs --------------------------------------------------------------------------
    def pci_nics(self) -> list[PciNic]:
        self.ports()
        return self._pci_nics

    def http_listen(self, port: int, https: bool) -> tuple[str, int] | None:
        """Every address of the box, on HTTP0's port (0: that listener is off)."""
        return ("0.0.0.0", port) if port else None

    def ports(self) -> list[Port]:
        """ETH0/ETH1 from the supported NICs in PCI order (waits briefly for interfaces)."""
        if self._ports is None:
            deadline = time.monotonic() + NIC_WAIT_S
            while True:
                self._pci_nics = scan_pci_nics()
                pending = [n for n in self._pci_nics if n.model and n.ifname is None]
                if not pending or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self._ports = assign_ports(self._pci_nics)
        return self._ports

    def start_dhcp(self, ifname: str, fallback: str | None) -> None:
        """Start busybox udhcpc on ifname (it renews and rebinds) and return: the lease
        comes in its hook script's file (dhcp_lease), which the network's watcher reads;
        the boot does not wait for it. `fallback` (address/prefix): what the hook script
        sets when DHCP_TRIES DISCOVERs got no answer; its lease file then says
        `fallback=yes` until a server answers."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        for link in ("lo", ifname):
            with contextlib.suppress(OSError):  # no such link: udhcpc says so in its turn
                set_link_up(link)
        proc = subprocess.Popen(
            ["udhcpc", "-i", ifname, "-s", UDHCPC_SCRIPT, "-b", "-S",
             "-t", str(DHCP_TRIES), "-T", str(DHCP_TRY_S),
             "-p", str(RUN_DIR / f"udhcpc-{ifname}.pid"), "-x", "hostname:ipva"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "IPVA_RUN": str(RUN_DIR), "IPVA_FALLBACK": fallback or ""},
        )  # fmt: skip
        self.dhcp_clients[ifname] = proc
        reaper = threading.Thread(target=proc.wait, name=f"reap-udhcpc-{ifname}", daemon=True)
        self._reapers[ifname] = reaper
        reaper.start()

    def renew_dhcp(self, ifname: str) -> dict[str, str] | None:
        """Have udhcpc renew its lease now (SIGUSR1); the lease once its hook has written
        it again, None if no answer came within DHCP_WAIT_S (udhcpc keeps trying)."""
        state = RUN_DIR / f"dhcp-{ifname}"
        try:
            pid = int((RUN_DIR / f"udhcpc-{ifname}.pid").read_text())
            before = state.stat().st_mtime_ns if state.exists() else 0
            os.kill(pid, signal.SIGUSR1)
        except (OSError, ValueError):
            return None
        deadline = time.monotonic() + DHCP_WAIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if state.stat().st_mtime_ns != before:
                    return self.dhcp_lease(ifname)
            time.sleep(0.1)
        return None

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None:
        try:
            text = (RUN_DIR / f"dhcp-{ifname}").read_text()
        except OSError:
            return None
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def set_static(self, ifname: str, addr: str | None, prefix: int, gateway: str | None) -> None:
        """Link up, old IPv4 addresses off, then the address and the default route.
        Raises NicConfigError with ip's message at the first step the kernel refuses, so
        the console never shows an address the interface does not have."""
        run_ip("address", "link", "set", "lo", "up")
        run_ip("address", "link", "set", ifname, "up")
        run_ip("address", "-4", "addr", "flush", "dev", ifname)
        if addr:
            run_ip("address", "addr", "add", f"{addr}/{prefix}", "dev", ifname)
        if gateway:
            run_ip("route", "route", "replace", "default", "via", gateway, "dev", ifname)

    def link_up(self, ifname: str) -> bool:
        return read_link_state(ifname).up

    # --- clock -------------------------------------------------------------------------
    def begin_clock(self) -> None:
        """Probe the counter and calibrate it on a thread (hal.timekeeping.ClockJob): the
        calibration is one to two RTC seconds of waiting for RTC edges (no CPU). Called
        first thing (appliance/__main__.py), so the runtime's imports overlap it; the
        timekeeping service's probe calls it again (no-op, or a new measurement for a
        re-boot in the same process)."""
        if self._clock_job is None:
            self._clock_job = ClockJob(self.cpu().flags)

    def start_clock(self, policy: Policy, trace: Callable[[str], None]) -> Timekeeping:
        """The box's timekeeping from the perf counter (hal.timekeeping); TIME0 /perfcounter
        decides what happens when there is none. Waits for the probe only: the counter's
        calibration is traced when it is in, before or after the prompt."""
        self.begin_clock()
        assert self._clock_job is not None
        job, self._clock_job = self._clock_job, None
        tk = start_timekeeping(policy, self.cpu().flags, trace, probe=job.probe())
        job.when_calibrated(lambda cal: tk.calibrated(cal, trace))
        return tk

    # --- life cycle --------------------------------------------------------------------
    def boot_files(self) -> BootFiles:
        return MountedBootFiles(BOOT_MOUNT)

    def running_slot(self) -> int:
        # /init says which slot it checked and started (a bootcode from before slots: A)
        return 1 if os.environ.get("IPVA_SLOT") == "1" else 0

    def boot_note(self) -> str:
        return os.environ.get("IPVA_BOOT_NOTE", "")

    def keyring(self) -> Keyring:
        # imported here: only the update service reads the keyring, after the prompt,
        # which then does not wait for signify's module (its records, base64)
        from appliance.formats.signify import Keyring

        return Keyring.load(KEYRING_DIR)

    def restart(self, kind: RestartKind) -> None:
        """reset: orderly restart; reboot: the same here — the box's 'trap' is the caller's."""
        os.sync()
        subprocess.run(["reboot", "-f"], check=False)
        time.sleep(30)  # reboot -f does not return

    def halt(self) -> None:
        """Stop for good after a fatal boot message, as the box: no reboot loop, the
        message stays on the consoles until the VM is powered off."""
        while True:
            time.sleep(3600)

    def consoles(self) -> list[Console]:
        return [TtyConsole(SERIAL_CONSOLE), TtyConsole(VGA_CONSOLE)]

    def attached(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # the ttys are put in raw mode when opened
