"""Installing a firmware image into the slot that does not run, and confirming a new one.

The order is what makes an update unable to brick the box:

1. the image streams into the spool (spool.py: pieces in the temp dir, RAM in the VM; one
   copy, never two, and given back piece by piece as step 3 writes it) while
   `ImageVerifier` checks it: its signature against the bootcode's keyring as soon as the
   header is in, then length and digest; an unsigned, foreign-signed, tampered, truncated,
   oversize or corrupt image is refused here, and the boot disk has not been touched;
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

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.formats.ipvabin import (
    HEADER_SIZE,
    FirmwareError,
    FirmwareInfo,
    ImageVerifier,
    SignatureError,
    check_signature,
    parse_header,
)
from appliance.formats.signify import Keyring
from appliance.hal.block import BlockDevice
from appliance.hal.bootctl import (
    SLOT_LETTERS,
    SLOT_NAMES,
    BootControl,
    SlotState,
    read_boot_control,
    write_boot_control,
)
from appliance.hal.bootfiles import BootFiles, BootFilesError
from appliance.services.update.spool import Spool

MAX_IMAGE = 32 << 20  # far above today's ~10 MB; refuses absurd uploads before spooling them
# RAM the box keeps for itself beside a spooled image (the guest has no swap): its code's
# pages and the page cache the slot write goes through. A 128 MiB guest (~20 MiB available,
# ~10 with the image spooled) thrashed until the whole box stalled mid-update; twice that
# is kept, so it refuses and runs on. 256 MiB (the shipped size) has ~145 MiB available.
RAM_RESERVE = 24 << 20
SHIPPED_RAM_MIB = 256  # what the packages configure (firmware/settings.py)


class UpdateError(Exception):
    """The update was refused or failed; the firmware that runs and boots is unchanged."""


@dataclass(frozen=True)
class Installed:
    """A firmware written to a slot, and the boot-control record that starts it next."""

    slot: int
    info: FirmwareInfo
    record: BootControl

    def describe(self) -> str:
        return (
            f"firmware {self.info.version} build {self.info.build} written to slot "
            f"{SLOT_LETTERS[self.slot]} ({SLOT_NAMES[self.slot]}); it starts at the next reset"
        )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def slot_name(slot: int) -> str:
    return f"{SLOT_LETTERS[slot]} ({SLOT_NAMES[slot]})"


class Installer:
    def __init__(
        self,
        files: BootFiles,
        boot_disk: BlockDevice,
        running_slot: int,
        keyring: Keyring,
        spool_dir: Path | None = None,
        memory_free: Callable[[], int | None] = lambda: None,
    ) -> None:
        """`keyring`: the keys an image must be signed with (the bootcode's: what it would
        not boot is not installed). `memory_free`: what the spool can take (the VM's
        MemAvailable; None: unbounded, the hosted spool is on the host's disk)."""
        self.files = files
        self.keyring = keyring
        self.boot_disk = boot_disk
        self.running_slot = running_slot
        self.spool_dir = spool_dir
        self.memory_free = memory_free

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
        check = ImageVerifier(keyring=self.keyring, source=source, max_size=MAX_IMAGE)
        with Spool(self.spool_dir) as spool:
            try:
                sized = False
                for chunk in chunks:
                    check.feed(chunk)
                    if not sized and check.info is not None:
                        self._check_ram(check.info, source)  # as soon as the header says
                        sized = True
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
                self.files.replace(name, spool.drain())
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

    def _check_ram(self, info: FirmwareInfo, source: str) -> None:
        free = self.memory_free()
        if free is not None and info.total_size + RAM_RESERVE > free:
            raise UpdateError(
                f"{source}: not enough free memory to receive it: the image needs "
                f"{_mib(info.total_size)} MiB of RAM until it is written and the box keeps "
                f"{_mib(RAM_RESERVE)} MiB for itself, {_mib(free)} MiB are free; give the VM "
                f"more memory (the appliance ships with {SHIPPED_RAM_MIB} MiB); nothing was "
                "written"
            )

    def _check_slot(self, slot: int, want: FirmwareInfo) -> None:
        check = ImageVerifier(keyring=self.keyring, source=f"slot {slot_name(slot)}")
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

    def slot_info(self, slot: int, *, verify: bool = True) -> FirmwareInfo | None:
        """The header of what a slot holds (None: empty or not a firmware image), with its
        signer if the keyring takes its signature (the payload is not read: that is the
        bootcode's check before it starts the slot). `verify=False`: the signer by its key
        number only, no Ed25519 — for the running slot, which the bootcode checked."""
        head = b""
        try:
            for chunk in self.files.read(SLOT_NAMES[slot]):
                head += chunk
                if len(head) >= HEADER_SIZE:
                    break
            info = parse_header(head[:HEADER_SIZE], source=f"slot {slot_name(slot)}")
        except (FirmwareError, OSError):
            return None
        if not verify:
            key = self.keyring.find(bytes.fromhex(info.key_id)) if info.key_id else None
            return dataclasses.replace(info, signer=key.name) if key else info
        source = f"slot {slot_name(slot)}"
        try:
            signer = check_signature(head, info, self.keyring, source=source)
        except SignatureError as e:
            return dataclasses.replace(info, refused=str(e).removeprefix(f"{source}: "))
        return dataclasses.replace(info, signer=signer)

    def confirm(self) -> BootControl | None:
        """The running firmware is up: a trial of this slot becomes its known-good state.
        Returns the record written, None when there was nothing to confirm."""
        record = read_boot_control(self.boot_disk)
        if record is None or record.state is not SlotState.TRIAL:
            return None
        if record.active != self.running_slot:
            return None  # the bootcode fell back; the record already says so
        return write_boot_control(self.boot_disk, record.confirmed())
