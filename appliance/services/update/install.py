"""Installing a firmware image into the slot that does not run, and confirming a new one.

The order is what makes an update unable to brick the box:

1. the image streams into a spool file (the temp dir; tmpfs in the VM: one copy in RAM,
   never two) while
   `ImageVerifier` checks it; a foreign, truncated, oversize or corrupt image is refused
   here, and the boot disk has not been touched;
2. it must fit: the other slot's old file plus the partition's free space;
3. it is written as the other slot's file through the file system (hal.bootfiles) and read
   back from the disk and checked again;
4. only then the boot-control record flips to "try the new slot" (one sector, two copies:
   bootctl.py). A power cut before this step leaves the old firmware running as before;
   after it, the bootcode tries the new one `TRIAL_TRIES` times and falls back by itself.
5. the new firmware, once really up (flash mounted, config loaded, network configured),
   calls `confirm()`, and only then is it the known-good slot.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appliance.hal.block import BlockDevice
from appliance.hal.bootctl import (
    SLOT_LETTERS,
    SLOT_NAMES,
    BootControl,
    SlotState,
    read_boot_control,
    write_boot_control,
)
from appliance.hal.bootfiles import CHUNK, BootFiles, BootFilesError
from appliance.services.update.image import FirmwareError, FirmwareInfo, ImageVerifier

MAX_IMAGE = 32 << 20  # far above today's ~7 MB; refuses absurd uploads before spooling them


class UpdateError(Exception):
    """The update was refused or failed; the firmware that runs and boots is unchanged."""


@dataclass(frozen=True)
class Installed:
    slot: int
    info: FirmwareInfo
    record: BootControl

    def describe(self) -> str:
        return (
            f"firmware {self.info.version} build {self.info.build} written to slot "
            f"{SLOT_LETTERS[self.slot]} ({SLOT_NAMES[self.slot]}); it starts at the next reset"
        )


def slot_name(slot: int) -> str:
    return f"{SLOT_LETTERS[slot]} ({SLOT_NAMES[slot]})"


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    f.seek(0)
    return iter(lambda: f.read(CHUNK), b"")


class Installer:
    def __init__(
        self,
        files: BootFiles,
        boot_disk: BlockDevice,
        running_slot: int,
        spool_dir: Path | None = None,
    ) -> None:
        self.files = files
        self.boot_disk = boot_disk
        self.running_slot = running_slot
        self.spool_dir = spool_dir

    @property
    def target_slot(self) -> int:
        return 1 - self.running_slot

    def record(self) -> BootControl:
        """The record on the disk; a disk from before slots counts as "A runs, good"."""
        return read_boot_control(self.boot_disk) or BootControl.initial()

    def install(
        self,
        chunks: Iterable[bytes],
        *,
        source: str,
        before_write: Callable[[], None] = lambda: None,
        step: Callable[[str], None] = lambda _what: None,
    ) -> Installed:
        """`before_write` runs once the image is received and verified, before the boot
        disk is touched: the last moment to abandon (it raises), e.g. for a restart.
        `step` hears each stage that touches the boot disk as it begins (the trace)."""
        target = self.target_slot
        name = SLOT_NAMES[target]
        check = ImageVerifier(source=source, max_size=MAX_IMAGE)
        with tempfile.TemporaryFile(dir=self.spool_dir, prefix="ipva-update-") as spool:
            try:
                for chunk in chunks:
                    check.feed(chunk)
                    spool.write(chunk)
                info = check.finish()
            except FirmwareError as e:
                raise UpdateError(f"{e}; nothing was written") from e
            except OSError as e:  # the spool (RAM) is full, the upload broke off …
                raise UpdateError(
                    f"{source}: could not be received: {e}; nothing was written"
                ) from e
            room = self.files.free_bytes() + (self.files.size(name) or 0)
            if info.total_size > room:
                raise UpdateError(
                    f"boot disk full: the image needs {info.total_size} bytes, slot "
                    f"{slot_name(target)} can take {room}; nothing was written"
                )
            before_write()
            step(f"{info.version} build {info.build} verified: writing slot {slot_name(target)}")
            try:
                self.files.replace(name, _chunks(spool))
            except OSError as e:
                raise UpdateError(
                    f"writing slot {slot_name(target)} failed: {e}; the running firmware "
                    "still starts"
                ) from e
        step(f"checking slot {slot_name(target)} as the disk holds it")
        self._check_slot(target, info)
        step(f"switching the boot-control record to slot {slot_name(target)}")
        try:
            record = write_boot_control(self.boot_disk, self.record().with_trial(target))
        except OSError as e:
            raise UpdateError(
                f"boot-control record not written: {e}; the running firmware still starts"
            ) from e
        return Installed(target, info, record)

    def _check_slot(self, slot: int, want: FirmwareInfo) -> None:
        check = ImageVerifier(source=f"slot {slot_name(slot)}")
        try:
            for chunk in self.files.read(SLOT_NAMES[slot]):
                check.feed(chunk)
            got = check.finish()
        except (FirmwareError, BootFilesError, OSError) as e:
            raise UpdateError(
                f"slot {slot_name(slot)} reads back wrong ({e}); not activated, the running "
                "firmware still starts"
            ) from e
        if got != want:
            raise UpdateError(f"slot {slot_name(slot)} holds another image; not activated")

    def slot_info(self, slot: int) -> FirmwareInfo | None:
        """The header of what a slot holds (None: empty or not a firmware image)."""
        check = ImageVerifier()
        try:
            for chunk in self.files.read(SLOT_NAMES[slot]):
                check.feed(chunk)
                if check.info is not None:
                    return check.info
        except (FirmwareError, OSError):
            return None
        return None

    def confirm(self) -> BootControl | None:
        """The running firmware is up: a trial of this slot becomes its known-good state.
        Returns the record written, None when there was nothing to confirm."""
        record = read_boot_control(self.boot_disk)
        if record is None or record.state is not SlotState.TRIAL:
            return None
        if record.active != self.running_slot:
            return None  # the bootcode fell back; the record already says so
        return write_boot_control(self.boot_disk, record.confirmed())
