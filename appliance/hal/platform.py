"""The platform the runtime runs on: inside the VM, or hosted on image files.

`detect_platform()` is the one place that decides. Everything the runtime asks of the
hardware goes through a Platform, so the boot sequence is the same code in both cases.
"""

from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from appliance.hal.block import BlockDevice, FileBlockDevice

if TYPE_CHECKING:  # hal.memory imports HaltError from here
    from appliance.hal.memory import MemoryInfo


class DiskRole(enum.StrEnum):
    """The four IDE disks of the box, by position (VMware/Hyper-V IDE; Proxmox SCSI 0-3)."""

    BOOT = "boot"  # IDE 0:0 — syslinux, bootcode, IPVA.BIN
    CF = "cf"  # IDE 0:1 — emulated compact flash
    FLASH = "flash"  # IDE 1:0 — FLASHMAN0
    DUMP = "dump"  # IDE 1:1 — crash dump

    @property
    def ide_position(self) -> str:
        return {"boot": "0:0", "cf": "0:1", "flash": "1:0", "dump": "1:1"}[self.value]


class HaltError(RuntimeError):
    """The box cannot run on this virtual hardware: the boot shows the message and stops.

    `shown`: the message (and its explanation) is already in the boot trace."""

    def __init__(self, message: str, *, shown: bool = False) -> None:
        super().__init__(message)
        self.shown = shown


class MissingDiskError(HaltError):
    """A disk role has no disk; the message names the role and its position."""

    def __init__(self, role: DiskRole, where: str | None = None) -> None:
        super().__init__(
            f"disk missing: {role.value} disk ({where or 'IDE ' + role.ide_position}): "
            "the IPVA needs 4 virtual disks; power off and attach it"
        )
        self.role = role


class NicConfigError(Exception):
    """The kernel refused part of a NIC's static set-up; the message is `ip`'s own.

    `what`: "address" (the interface has no address: link, flush or add failed) or
    "route" (the address is set, the default route is not)."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what


class Console(Protocol):
    """A byte console (serial ttyS0, VGA tty1, or the host terminal)."""

    name: str

    def read(self, n: int = 1) -> bytes: ...  # blocks; b"" at end of input

    def write(self, data: bytes) -> None: ...


@dataclass
class StreamConsole:
    """A console on a pair of binary streams (a tty device, or stdin/stdout)."""

    name: str
    rfile: BinaryIO
    wfile: BinaryIO

    def read(self, n: int = 1) -> bytes:
        return self.rfile.read(n)

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()


class Platform(Protocol):
    name: str  # "vm" or "hosted"

    def cpu_brand(self) -> str: ...

    def memory_info(self) -> MemoryInfo: ...  # the boot trace's mem(…), FLASHDIR sizing

    def open_disks(self) -> dict[DiskRole, BlockDevice]: ...

    def consoles(self) -> list[Console]: ...


def _cpuinfo_field(name: str) -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return "unknown CPU"


def _memtotal_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# sizes of the disks the hosted runtime creates when they are missing (sparse files)
HOSTED_DISK_SIZES = {
    DiskRole.BOOT: 64 << 20,
    DiskRole.CF: 64 << 20,
    DiskRole.FLASH: 100 << 20,  # the seed: VMware cannot make smaller disks
    DiskRole.DUMP: 64 << 20,
}


@dataclass
class HostedPlatform:
    """The runtime on the host: disks are `<role>.img` files in `directory`."""

    directory: Path
    memory: int = 256 << 20
    stdin: BinaryIO = field(default_factory=lambda: sys.stdin.buffer)
    stdout: BinaryIO = field(default_factory=lambda: sys.stdout.buffer)
    name: str = "hosted"

    def cpu_brand(self) -> str:
        return _cpuinfo_field("model name")

    def memory_info(self) -> MemoryInfo:
        from appliance.hal.memory import MemoryInfo  # not at the top: it imports this module

        return MemoryInfo(self.memory)  # a figure given by the caller, no firmware map

    def open_disks(self) -> dict[DiskRole, BlockDevice]:
        self.directory.mkdir(parents=True, exist_ok=True)
        disks: dict[DiskRole, BlockDevice] = {}
        for role in DiskRole:
            path = self.directory / f"{role.value}.img"
            if not path.exists():
                with open(path, "wb") as f:
                    f.truncate(HOSTED_DISK_SIZES[role])
            disks[role] = FileBlockDevice(path)
        return disks

    def consoles(self) -> list[Console]:
        return [StreamConsole("stdio", self.stdin, self.stdout)]


def detect_platform() -> Platform:
    """Inside our guest the bootcode sets IPVA_PLATFORM=vm; anything else is hosted."""
    if os.environ.get("IPVA_PLATFORM") == "vm":
        from appliance.hal.vm import VmPlatform  # only importable usefully in the guest

        return VmPlatform()
    return HostedPlatform(Path(os.environ.get("IPVA_HOSTED_DIR", ".ipva-hosted")))
