"""CF0: the emulated compact flash card (IDE 0:1), a FAT file system on the whole disk.

The box formats it (`mod cmd CF0 format yes`, to the disk's whole size, so a disk grown in
the hypervisor gains its new size), mounts it at boot when it holds a FAT file system (and
says so in the trace), and keeps its log files (`/log/LOG0.n`) there. How a platform mounts
and formats it is appliance.hal.cf's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.hal.block import BlockDevice
from appliance.hal.cf import CfBackend, CfError, CfVolume, read_geometry
from appliance.hal.types import DiskRole, Unavailable
from appliance.modcmd import Command, ModCmdError
from appliance.service import BaseService

if TYPE_CHECKING:
    from appliance.box import Box


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f}MB"


class CompactFlash:
    """The CF0 module: info, format, mount, unmount; `volume` while mounted."""

    def __init__(self, dev: BlockDevice, backend: CfBackend) -> None:
        self.dev = dev
        self.backend = backend
        self.volume: CfVolume | None = None
        self._lock = threading.RLock()

    @property
    def mounted(self) -> bool:
        return self.volume is not None

    def mount(self) -> str:
        with self._lock:
            if self.volume is not None:
                return "CF0 already mounted"
            geo = read_geometry(self.dev)
            if geo is None:
                raise CfError("CF0 holds no FAT file system: format it with mod cmd CF0 format yes")
            self.volume = self.backend.mount()
            return f"CF0 mounted ({geo.kind}, {_mb(geo.bytes)})"

    def unmount(self) -> str:
        with self._lock:
            if self.volume is None:
                return "CF0 not mounted"
            volume, self.volume = self.volume, None
            self.backend.unmount(volume)
            return "CF0 unmounted"

    def format(self) -> str:
        """Erase and format to the whole disk; mounted again if it was."""
        with self._lock:
            was_mounted = self.volume is not None
            if was_mounted:
                self.unmount()
            self.backend.format()
            geo = read_geometry(self.dev)
            size = _mb(geo.bytes) if geo else "?"
            text = f"CF0 formatted: {geo.kind if geo else 'FAT'}, {size} of {_mb(self.dev.size)}"
            if was_mounted:
                self.mount()
                text += ", mounted"
            return text

    def info(self) -> str:
        with self._lock:
            geo = read_geometry(self.dev)
            if geo is None:
                return (
                    f"CF0: disk {_mb(self.dev.size)}, no FAT file system "
                    "(format it with mod cmd CF0 format yes)"
                )
            lines = [
                f"CF0: disk {_mb(self.dev.size)}, {geo.kind} {_mb(geo.bytes)}, "
                f"cluster {geo.cluster // 1024}k, {'mounted' if self.volume else 'not mounted'}"
            ]
            if self.volume is not None:
                total, free = self.volume.usage()
                lines.append(f"used {_mb(total - free)} free {_mb(free)}")
            if self.dev.size - geo.bytes >= 1 << 20:
                lines.append(
                    f"the disk is {_mb(self.dev.size - geo.bytes)} larger than its file system "
                    "(grown in the hypervisor?): mod cmd CF0 format yes uses all of it"
                )
            return "\n".join(lines)


CONFIRM = "this erases everything on the compact flash: confirm with mod cmd CF0 format yes"


class CfService(BaseService):
    """The CF0 module: mounts the card at boot when it holds a FAT file system."""

    name = "cf"

    def __init__(self) -> None:
        self.card: CompactFlash | None = None
        self._absent = "CF0: no compact flash disk on this platform"

    def volume(self) -> CfVolume | None:
        """The mounted card (for LOCAL logging …), None while it is not mounted."""
        return self.card.volume if self.card is not None else None

    def start(self, box: Box) -> None:
        dev = box.disks.get(DiskRole.CF)
        if dev is None:
            return
        try:
            self.card = CompactFlash(dev, box.platform.compact_flash(dev))
        except Unavailable as e:
            self._absent = str(e)
            return
        if read_geometry(dev) is None:
            return  # blank or foreign: the disk lines already said so (mod cmd CF0 format)
        try:
            box.trace(self.card.mount())
        except (CfError, OSError) as e:
            box.trace(f"CF0 not mounted: {e}")

    def stop(self) -> None:
        if self.card is not None and self.card.mounted:
            try:
                self.card.unmount()
            except (CfError, OSError):
                pass  # going down anyway; the kernel unmounts at reboot

    def _card(self) -> CompactFlash:
        if self.card is None:
            raise ModCmdError(self._absent)
        return self.card

    def _run(self, what: str, fn: Callable[[], str]) -> str:
        try:
            return fn()
        except (CfError, OSError) as e:
            raise ModCmdError(f"CF0 {what} failed: {e}") from e

    def info(self, box: Box, args: list[str]) -> str:
        return self._card().info()

    def format(self, box: Box, args: list[str]) -> str:
        card = self._card()
        if args != ["yes"]:  # as CFG0 factory-reset: erasing takes a second, deliberate word
            raise ModCmdError(CONFIRM)
        return self._run("format", card.format)

    def mount(self, box: Box, args: list[str]) -> str:
        return self._run("mount", self._card().mount)

    def unmount(self, box: Box, args: list[str]) -> str:
        return self._run("unmount", self._card().unmount)

    def commands(self) -> list[Command]:
        return [
            Command(
                "CF0", "info", "the card: disk and file system size, mounted, usage", self.info
            ),
            Command("CF0", "format", "format yes: FAT on the whole disk (erases it)", self.format),
            Command("CF0", "mount", "mount the card's file system", self.mount),
            Command("CF0", "unmount", "unmount it (before a hypervisor-side change)", self.unmount),
        ]
