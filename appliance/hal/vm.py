"""The platform inside our guest: real devices under Debian's kernel, set up by /init."""

from __future__ import annotations

import os
import subprocess
import termios
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

from appliance.hal.block import BlockDevice, FileBlockDevice
from appliance.hal.disks import DiskPosition, assign_roles, scan_positions
from appliance.hal.platform import (
    Console,
    DiskRole,
    MissingDiskError,
    _cpuinfo_field,
    _memtotal_bytes,
)
from appliance.services.network import Network

SERIAL_CONSOLE = "/dev/ttyS0"
VGA_CONSOLE = "/dev/tty1"
RUN_DIR = Path("/run/ipva")
UDHCPC_SCRIPT = "/etc/udhcpc.script"
DHCP_WAIT_S = 8.0


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
    name: str = "vm"
    positions: dict[DiskRole, DiskPosition] = field(default_factory=dict)
    network: Network = field(init=False)

    def __post_init__(self) -> None:
        self.network = Network(self)

    def cpu_brand(self) -> str:
        return _cpuinfo_field("model name")

    def memory_bytes(self) -> int:
        return _memtotal_bytes()

    def open_disks(self) -> dict[DiskRole, BlockDevice]:
        # /init already waited for the boot disk; the others come from the same probe
        deadline = time.monotonic() + 5
        while True:
            self.positions = assign_roles(scan_positions())
            if len(self.positions) == len(DiskRole) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for role in DiskRole:
            if role not in self.positions:
                raise MissingDiskError(role)
        return {r: FileBlockDevice(f"/dev/{p.name}") for r, p in self.positions.items()}

    def consoles(self) -> list[Console]:
        return [TtyConsole(SERIAL_CONSOLE), TtyConsole(VGA_CONSOLE)]

    def interfaces(self) -> list[str]:
        return sorted(p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo")

    def start_dhcp(self, ifname: str) -> dict[str, str] | None:
        """Start busybox udhcpc on ifname (it keeps renewing); wait briefly for a lease."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
        subprocess.run(["ip", "link", "set", ifname, "up"], check=False)
        subprocess.Popen(
            ["udhcpc", "-i", ifname, "-s", UDHCPC_SCRIPT, "-b", "-S", "-t", "8", "-T", "1",
             "-p", str(RUN_DIR / f"udhcpc-{ifname}.pid"), "-x", "hostname:ipva"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + DHCP_WAIT_S
        while time.monotonic() < deadline:
            lease = self.dhcp_lease(ifname)
            if lease:
                return lease
            time.sleep(0.1)
        return None

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None:
        try:
            text = (RUN_DIR / f"dhcp-{ifname}").read_text()
        except OSError:
            return None
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def restart(self, kind: str) -> None:
        """reset: orderly restart; reboot: the same here — the box's 'trap' is the caller's."""
        os.sync()
        subprocess.run(["reboot", "-f"], check=False)
        time.sleep(30)  # reboot -f does not return
