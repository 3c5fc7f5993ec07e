"""The types every layer of the runtime shares; this module imports nothing of the runtime.

Disk roles, the errors that stop a boot, a console, the memory figures. The platforms
(hal.hosted, hal.vm), the boot and the services all build on these; the Platform interface
itself is in hal.platform.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import BinaryIO, Protocol

MiB = 1 << 20
RAM_CAP = 3 << 30  # the box uses only the first linear 3 GiB (seed: "Maximal 3.072 MiB RAM")


class DiskRole(enum.StrEnum):
    """The four IDE disks of the box, by position (VMware/Hyper-V IDE; Proxmox SCSI 0-3)."""

    BOOT = "boot"  # IDE 0:0 — syslinux, bootcode, IPVA.BIN
    CF = "cf"  # IDE 0:1 — emulated compact flash
    FLASH = "flash"  # IDE 1:0 — FLASHMAN0
    DUMP = "dump"  # IDE 1:1 — crash dump

    @property
    def ide_position(self) -> str:
        return {"boot": "0:0", "cf": "0:1", "flash": "1:0", "dump": "1:1"}[self.value]


class RestartKind(enum.StrEnum):
    RESET = "reset"  # orderly restart with the saved config
    REBOOT = "reboot"  # forced watchdog trap (leaves a crash record)


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


class Unavailable(Exception):
    """This platform lacks the capability asked for; the message says so, for the console."""


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


@dataclass(frozen=True)
class MemoryInfo:
    """The memory figures of the box (hal.memory explains given/total/usable)."""

    total: int  # MemTotal, bytes
    given: int = 0  # e820 System RAM, bytes (0: unknown)

    @property
    def usable(self) -> int:
        return min(self.total, RAM_CAP)

    @property
    def capped(self) -> bool:
        return self.total > RAM_CAP or self.given > RAM_CAP

    def dram_mb(self) -> int:
        return self.usable // MiB
