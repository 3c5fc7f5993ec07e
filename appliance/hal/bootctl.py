"""The boot-control record: which firmware slot the bootcode starts, and which one is good.

The boot disk carries two firmware slots, `IPVA.BIN` (slot A) and `IPVA2.BIN` (slot B), on its
FAT partition. Which one starts is decided by this record, kept in two
copies in raw sectors between the MBR and the partition (LBA 8 and 9: outside the FAT, so
no file-system write ever touches it, and nothing else lives there — SYSLINUX installs into
the partition's own boot sector).

Power-loss safety (the littlefs rule: never overwrite the only good copy). Every update of
the record writes the *other* copy — the one with the older sequence number — with
`seq + 1`, in one sector, then flushes. A power cut while that sector is written leaves it
torn (bad CRC) or old; the copy that was newest before stays intact. Readers take the valid
copy with the highest sequence number. So after a cut the record is exactly the old one or
exactly the new one; `tests/unit/test_bootctl.py` cuts power at every write to prove it.

The bootcode (busybox sh, `firmware/bootcode/bootctl.sh`) reads and writes the same layout
with dd, od, crc32 (zlib CRC-32) and xxd, so fields sit at fixed offsets, little endian:

    offset size field
    0      8    magic        b"IPVABCTL"
    8      2    format       1
    10     4    seq          sequence number; the valid copy with the highest wins
    14     1    active       slot the bootcode starts: 0 = A (IPVA.BIN), 1 = B (IPVA2.BIN)
    15     1    state        0 confirmed (active is known good), 1 trial (not yet confirmed)
    16     1    tries        starts left for a trial slot before the bootcode gives up on it
    17     1    good         the slot known to start, 0xFF none yet
    18     1    failed       the slot whose last trial failed, 0xFF none
    19     1    reserved     0
    20     488  zero
    508    4    crc32        zlib CRC-32 of bytes 0..507

The slots themselves are files on the FAT, so where their data lies is the file system's
business: the runtime writes a new firmware through it (into the slot that does not run)
and only then flips this record, so a cut during the file write leaves the record pointing
at the old, intact slot.

The decision the bootcode makes is `decide()` here, mirrored line by line in bootctl.sh, and
the two are tested against each other on every state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import construct as cs

from appliance.formats.crc import crc32_trailed
from appliance.hal.block import SECTOR, BlockDevice

BOOTCTL_MAGIC = b"IPVABCTL"
BOOTCTL_LBAS = (8, 9)  # the two copies, in the gap between the MBR and the partition
SLOT_NAMES = ("IPVA.BIN", "IPVA2.BIN")
SLOT_LETTERS = ("A", "B")
NO_SLOT = 0xFF
TRIAL_TRIES = 2  # starts a new firmware gets to confirm itself (a power cut costs one)


class SlotState(enum.IntEnum):
    CONFIRMED = 0
    TRIAL = 1


BootControlBody = cs.Struct(
    "magic" / cs.Const(BOOTCTL_MAGIC),
    "format" / cs.Const(1, cs.Int16ul),
    "seq" / cs.Int32ul,
    "active" / cs.Int8ul,
    "state" / cs.Int8ul,
    "tries" / cs.Int8ul,
    "good" / cs.Int8ul,
    "failed" / cs.Int8ul,
    "reserved" / cs.Const(0, cs.Int8ul),
)
BODY_SIZE = SECTOR - 4
BootControlSector = crc32_trailed(cs.Padded(BODY_SIZE, BootControlBody))
assert BootControlSector.sizeof() == SECTOR


class BootControlError(Exception):
    """The boot-control record cannot be read or written; the message says why."""


@dataclass(frozen=True)
class BootControl:
    """The boot-control record: the active slot, its state and tries, the good and failed slots."""

    seq: int
    active: int
    state: SlotState
    tries: int
    good: int
    failed: int

    @classmethod
    def initial(cls) -> BootControl:
        """What the builder writes: slot A runs and is known good; B is empty."""
        return cls(1, 0, SlotState.CONFIRMED, 0, 0, NO_SLOT)

    def with_trial(self, slot: int, tries: int = TRIAL_TRIES) -> BootControl:
        """A new firmware is complete and verified in `slot`: start it next, on trial."""
        good = self.active if self.state is SlotState.CONFIRMED else self.good
        return replace(self, active=slot, state=SlotState.TRIAL, tries=tries, good=good,
                       failed=NO_SLOT)  # fmt: skip

    def confirmed(self) -> BootControl:
        """The running trial firmware is up: it becomes the known-good slot."""
        return replace(self, state=SlotState.CONFIRMED, tries=0, good=self.active)


def encode(record: BootControl) -> bytes:
    body = {
        "seq": record.seq,
        "active": record.active,
        "state": int(record.state),
        "tries": record.tries,
        "good": record.good,
        "failed": record.failed,
    }
    return BootControlSector.build({"body": {"value": body}})


def decode(sector: bytes) -> BootControl | None:
    """The record in one sector, or None: blank, foreign, torn or damaged."""
    if len(sector) != SECTOR or sector[: len(BOOTCTL_MAGIC)] != BOOTCTL_MAGIC:
        return None
    try:
        parsed = BootControlSector.parse(sector)
    except cs.ConstructError:  # CRC mismatch, unknown format
        return None
    b = parsed.body.value
    if b.active > 1 or b.state > 1 or b.good not in (0, 1, NO_SLOT):
        return None
    return BootControl(b.seq, b.active, SlotState(b.state), b.tries, b.good, b.failed)


def read_copies(dev: BlockDevice) -> tuple[BootControl | None, BootControl | None]:
    return tuple(decode(dev.read(lba * SECTOR, SECTOR)) for lba in BOOTCTL_LBAS)  # type: ignore[return-value]


def read_boot_control(dev: BlockDevice) -> BootControl | None:
    """The newest valid copy, or None when neither copy is valid (an old boot disk)."""
    valid = [c for c in read_copies(dev) if c is not None]
    return max(valid, key=lambda c: c.seq) if valid else None


def write_boot_control(dev: BlockDevice, record: BootControl) -> BootControl:
    """Store `record` as the next state: seq + 1 into the older copy, then flush.

    Returns what was written (with its sequence number)."""
    copies = read_copies(dev)
    newest = max((c.seq for c in copies if c is not None), default=0)
    target = 0
    if copies[0] is not None and (copies[1] is None or copies[0].seq > copies[1].seq):
        target = 1  # copy 0 is the newest: overwrite copy 1
    written = replace(record, seq=newest + 1)
    dev.write(BOOTCTL_LBAS[target] * SECTOR, encode(written))
    dev.flush()
    return written


# --- the bootcode's decision ---------------------------------------------------------------


class Action(enum.StrEnum):
    START = "start"  # start `slot` as the record says
    TRY = "try"  # start the trial `slot`, one try fewer
    GIVE_UP = "give-up"  # the trial slot used all its tries: back to the good slot


@dataclass(frozen=True)
class Decision:
    """Which slot the bootcode starts, and the record it writes first."""

    action: Action
    slot: int  # the slot to start
    record: BootControl | None  # what to write before starting it, None: nothing


def decide(record: BootControl | None) -> Decision:
    """Which slot the bootcode starts, and what it writes first (the sh twin: bootctl.sh).

    No record (a disk from before slots): slot A, nothing written. A trial slot with tries
    left: one try fewer is written *before* it starts, so a firmware that hangs or dies
    before it confirms runs out of tries. A trial slot with none left: the good slot runs,
    and the record says which one failed."""
    if record is None:
        return Decision(Action.START, 0, None)
    if record.state is SlotState.TRIAL:
        if record.tries > 0:
            return Decision(Action.TRY, record.active, replace(record, tries=record.tries - 1))
        back = record.good if record.good != NO_SLOT else 1 - record.active
        given_up = replace(record, active=back, state=SlotState.CONFIRMED, tries=0,
                           good=back, failed=record.active)  # fmt: skip
        return Decision(Action.GIVE_UP, back, given_up)
    return Decision(Action.START, record.active, None)


def fall_back(record: BootControl | None, bad: int) -> BootControl | None:
    """The slot the bootcode chose failed its check (checksum, truncated): the record that
    makes the other slot the running, good one; None if there is no record to update."""
    if record is None:
        return None
    other = 1 - bad
    return replace(record, active=other, state=SlotState.CONFIRMED, tries=0, good=other,
                   failed=bad)  # fmt: skip
