"""The platform on the host: the disks are `<role>.img` files in a directory, one console on
stdin/stdout, the host's CPU, no NICs, the host's clock. `reset` restarts in-process (the
runtime re-boots on the same files), so `restart` and `halt` return.

stdin a terminal: raw mode while attached, the console line discipline as on the serial
console; Ctrl-D on an empty line ends. stdin not a terminal (a pipe, a file): each line is a
console command, the transcript (echo, output, boot trace) goes to stdout with plain "\n".
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from appliance.formats.signify import Keyring
from appliance.hal.block import BlockDevice, FileBlockDevice
from appliance.hal.bootctl import decide, read_boot_control, write_boot_control
from appliance.hal.bootfiles import BootFiles, ImageBootFiles
from appliance.hal.cf import CfBackend, HostedCfBackend
from appliance.hal.cpu import CpuInfo, read_cpuinfo
from appliance.hal.nics import PciNic, Port
from appliance.hal.timekeeping import Policy, Timekeeping
from appliance.hal.types import (
    Console,
    DiskRole,
    MemoryInfo,
    RestartKind,
    StreamConsole,
    Unavailable,
)
from appliance.version import BUILD, PRODUCT

# sizes of the disks the hosted runtime creates when they are missing (sparse files)
HOSTED_DISK_SIZES = {
    DiskRole.BOOT: 64 << 20,
    DiskRole.CF: 64 << 20,
    DiskRole.FLASH: 100 << 20,  # the seed: VMware cannot make smaller disks
    DiskRole.DUMP: 64 << 20,
}
NO_NIC = "no network interface on this platform"


@dataclass
class HostedPlatform:
    """The runtime on the host: disks are `<role>.img` files in `directory`."""

    directory: Path
    memory: int = 256 << 20
    stdin: BinaryIO = field(default_factory=lambda: sys.stdin.buffer)
    stdout: BinaryIO = field(default_factory=lambda: sys.stdout.buffer)
    name: str = "hosted"
    hw_id: str = f"{PRODUCT}-hosted"
    bootcode_build: int = BUILD  # no bootcode runs here: the runtime's own build
    needs_nic: bool = False  # the host's network is not ours to configure
    # the web admin on the host: (host, port) for `--http` / `--https`; None: off. The
    # host's ports are the caller's choice, not HTTP0's (80/443 are privileged and shared)
    http: tuple[str, int] | None = None
    https: tuple[str, int] | None = None
    _cpu: CpuInfo | None = None
    _slot: int = 0  # the firmware slot this boot "started" (see open_disks)

    @property
    def on_terminal(self) -> bool:
        return _isatty(self.stdin) and os.name == "posix"

    @property
    def newline(self) -> bytes:
        return b"\r\n" if self.on_terminal else b"\n"

    @property
    def ctrl_d_ends(self) -> bool:
        return self.on_terminal

    @property
    def prompt_first(self) -> bool:
        # every service starts before the prompt: the imports are quick on a host, and lines
        # typed at once (a script on stdin) get the same transcript every run
        return False

    def cpu(self) -> CpuInfo:
        if self._cpu is None:
            self._cpu = read_cpuinfo()
        return self._cpu

    def cpu_lines(self) -> list[str]:
        return []  # the host's core count says nothing about the box

    def memory_info(self) -> MemoryInfo:
        return MemoryInfo(self.memory)  # a figure given by the caller, no firmware map

    def memory_free(self) -> int | None:
        return None  # the host's free memory says nothing about the box

    def open_disks(self) -> dict[DiskRole, BlockDevice]:
        self.directory.mkdir(parents=True, exist_ok=True)
        disks: dict[DiskRole, BlockDevice] = {}
        for role in DiskRole:
            path = self.directory / f"{role.value}.img"
            if not path.exists():
                with open(path, "wb") as f:
                    f.truncate(HOSTED_DISK_SIZES[role])
            disks[role] = FileBlockDevice(path)
        self._slot = self._play_bootcode(disks[DiskRole.BOOT])
        return disks

    @staticmethod
    def _play_bootcode(boot: BlockDevice) -> int:
        """No bootcode runs here, so the hosted boot makes the bootcode's slot decision
        itself (hal.bootctl.decide: a trial slot loses a try, one without tries left gives
        way to the good slot), so updates go through their whole life cycle hosted. The code
        that runs is the host's either way; the slot files are checked only by the VM."""
        decision = decide(read_boot_control(boot))
        if decision.record is not None:
            write_boot_control(boot, decision.record)
        return decision.slot

    def boot_files(self) -> BootFiles:
        return ImageBootFiles(self.directory / "boot.img")

    def running_slot(self) -> int:
        return self._slot

    def boot_note(self) -> str:
        return ""  # no slot is checked here; a give-up shows in the record (failed)

    def keyring(self) -> Keyring:
        # no bootcode here: the keys are `*.pub` files in DIR/keyring (`ipva run --hosted`
        # puts the build's there); none: every image is refused, saying so
        return Keyring.load(self.directory / "keyring")

    def disk_lines(self) -> list[str]:
        return []

    def compact_flash(self, dev: BlockDevice) -> CfBackend:
        """The CF image file, through pyfatfs (mounting needs no root) and mkfs.fat."""
        if not isinstance(dev, FileBlockDevice):
            raise Unavailable("CF0: the CF disk is not an image file here")
        return HostedCfBackend(Path(dev.path))

    def pci_nics(self) -> list[PciNic]:
        return []

    def ports(self) -> list[Port]:
        return []

    def http_listen(self, port: int, https: bool) -> tuple[str, int] | None:
        """The address given for --http/--https; HTTP0 /port 0 still turns one off."""
        return (self.https if https else self.http) if port else None

    def start_dhcp(self, ifname: str, fallback: str | None) -> None:
        raise Unavailable(NO_NIC)

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None:
        return None

    def renew_dhcp(self, ifname: str) -> dict[str, str] | None:
        return None

    def set_static(self, ifname: str, addr: str | None, prefix: int, gateway: str | None) -> None:
        raise Unavailable(NO_NIC)

    def link_up(self, ifname: str) -> bool:
        return False

    def begin_clock(self) -> None:
        pass

    def start_clock(self, policy: Policy, trace: Callable[[str], None]) -> Timekeeping | None:
        return None  # the host's clock: nothing to probe or calibrate

    def restart(self, kind: RestartKind) -> None:
        """Returns: the runtime restarts in-process on the same disk files."""

    def halt(self) -> None:
        """Returns: the process ends with an exit status instead."""

    def consoles(self) -> list[Console]:
        return [StreamConsole("stdio", self.stdin, self.stdout)]

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Raw mode on a terminal so the line discipline sees every key; always restored."""
        if not self.on_terminal:
            yield
            return
        import termios
        import tty

        fd = self.stdin.fileno()
        saved = termios.tcgetattr(fd)
        try:
            tty.setraw(fd)
            yield
        finally:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _isatty(stream: BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed stream, or one without isatty
        return False
