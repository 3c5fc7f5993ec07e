"""A full flash does not hold up the boot: the runtime is up (its prompt next) with
FLASHDIR0 still unread, which a thread of the flash service reads meanwhile; a FLASHDIR0
command or a `config write` before it is done waits for it, and a reset waits for it too.

The FLASHDIR0 read is held by the test (`HeldFlash`: reads on the `flash-ldap` thread wait
for a gate), the way a full flash holds it under emulation; the rest is the real runtime on
real image files.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from httpbox import _Sink

from appliance.boot import Runtime
from appliance.flash import mount_flash
from appliance.flash.format import OWNER_LDAP
from appliance.hal.block import BlockDevice, FileBlockDevice, strided_by_reads
from appliance.hal.hosted import HostedPlatform
from appliance.hal.types import DiskRole
from appliance.services.flash import FlashService

ITEMS = 3000
WAIT_S = 20


class HeldDevice:
    """The flash disk, whose reads on the flash-ldap thread wait for `gate`."""

    def __init__(self, dev: BlockDevice, gate: threading.Event, held: threading.Event) -> None:
        self._dev, self._gate, self._held = dev, gate, held

    @property
    def size(self) -> int:
        return self._dev.size

    def read(self, offset: int, length: int) -> bytes:
        if threading.current_thread().name == "flash-ldap":
            self._held.set()
            assert self._gate.wait(WAIT_S), "the test never opened the gate"
        return self._dev.read(offset, length)

    def read_strided(self, offset: int, stride: int, length: int, count: int) -> list[bytes]:
        return strided_by_reads(self.read, offset, stride, length, count)

    def write(self, offset: int, data: bytes) -> None:
        self._dev.write(offset, data)

    def flush(self) -> None:
        self._dev.flush()

    def close(self) -> None:
        self._dev.close()


@dataclass
class HeldFlash(HostedPlatform):
    gate: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)

    def open_disks(self) -> dict[DiskRole, BlockDevice]:
        disks = super().open_disks()
        disks[DiskRole.FLASH] = HeldDevice(disks[DiskRole.FLASH], self.gate, self.held)  # type: ignore[assignment]
        return disks


def full_flash(directory: Path) -> None:
    """A box with a saved config (SYS0 /name FULLBOX) and ITEMS FLASHDIR0 items, several
    segments of them."""
    first = Runtime(HostedPlatform(directory, stdin=io.BytesIO(b""), stdout=_Sink()))  # type: ignore[arg-type]
    assert first.boot()
    first.execute("config change SYS0 /name FULLBOX")
    assert "error" not in first.execute("config write")
    first.close()
    with FileBlockDevice(directory / "flash.img") as dev:
        fl = mount_flash(dev, ram_bytes=256 << 20, trace=lambda _s: None)
        for start in range(0, ITEMS, 500):
            batch = range(start, start + 500)
            fl.flashman.commit(
                OWNER_LDAP, [(i.to_bytes(4, "big"), b"(cn=user%d)" % i) for i in batch]
            )
        assert len(fl.flashman.owners[OWNER_LDAP].segs) > 1


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Runtime, HeldFlash]]:
    full_flash(tmp_path / "box")
    platform = HeldFlash(tmp_path / "box", stdin=io.BytesIO(b""), stdout=_Sink())  # type: ignore[arg-type]
    runtime = Runtime(platform, newline=b"\n")
    assert runtime.boot()
    yield runtime, platform
    platform.gate.set()
    runtime.close()


def test_the_boot_does_not_wait_for_flashdir(box: tuple[Runtime, HeldFlash]) -> None:
    runtime, platform = box
    assert runtime.box is not None and runtime.box.flash is not None
    assert platform.held.wait(WAIT_S)  # booted, and FLASHDIR0 is still being read
    assert not runtime.box.flash.flashman.mounted
    assert "FULLBOX" in runtime.prompt()  # the saved config is loaded already
    answer: list[str] = []
    reader = threading.Thread(target=lambda: answer.append(runtime.execute(
        "mod cmd FLASHDIR0 show 2999")))  # fmt: skip
    reader.start()
    reader.join(0.5)
    assert reader.is_alive(), f"FLASHDIR0 answered before it was read: {answer}"
    platform.gate.set()
    reader.join(WAIT_S)
    assert answer == ["mod cmd FLASHDIR0 add-item 2999 (cn=user2999)"]
    assert runtime.box.flash.flashman.mounted


def test_a_config_write_waits_for_flashdir_and_loses_nothing(
    box: tuple[Runtime, HeldFlash],
) -> None:
    runtime, platform = box
    assert platform.held.wait(WAIT_S)
    threading.Timer(0.3, platform.gate.set).start()
    runtime.execute("config change SYS0 /name AFTER")
    assert "error" not in runtime.execute("config write")
    assert platform.gate.is_set()  # it waited for the FLASHDIR0 read
    box_ = runtime.box
    assert box_ is not None and box_.flash is not None
    assert len(box_.flash.flashdir) == ITEMS


def test_a_reset_waits_for_the_flashdir_read(box: tuple[Runtime, HeldFlash]) -> None:
    runtime, platform = box
    assert platform.held.wait(WAIT_S)
    old = runtime.box
    assert old is not None
    service = old.service(FlashService)
    assert service is not None
    threading.Timer(0.3, platform.gate.set).start()
    runtime.execute("reset")
    assert runtime.settle()
    assert platform.gate.is_set()  # the close waited for the FLASHDIR0 read
    assert old.flash is not None and old.flash.flashman.mounted  # read to the end first
    assert runtime.box is not old and runtime.box is not None
    assert runtime.execute("mod cmd FLASHDIR0 show 7") == "mod cmd FLASHDIR0 add-item 7 (cn=user7)"


def test_an_alarm_of_the_boot_waits_for_flashdir_in_ram_not_on_the_console(
    box: tuple[Runtime, HeldFlash],
) -> None:
    """The boot raises an alarm that the flash keeps (CF0 not mounted): while FLASHDIR0 is
    still read, the console answers at once, and the alarm is written when the read ends
    (events.FlashReady), so it survives the next reset."""
    runtime, platform = box
    assert platform.held.wait(WAIT_S)
    box_ = runtime.box
    assert box_ is not None and box_.flash is not None
    assert not box_.flash.flashman.mounted
    assert "FULLBOX" in runtime.execute("config show")  # the console does not wait

    def kept() -> set[str]:
        return runtime.executor.call(
            lambda: {k for k in box_.flash.vars.keys() if k.startswith("EVENT:")}  # type: ignore[union-attr]
        )

    before = kept()  # the first boot's (its flash was blank: written at once)
    time.sleep(0.3)
    assert kept() == before, "written while FLASHDIR0 was still read"
    platform.gate.set()
    deadline = time.monotonic() + WAIT_S
    while not kept() - before:
        assert time.monotonic() < deadline, "the alarm never reached the flash"
        time.sleep(0.05)
    (new,) = kept() - before
    assert "CF0 not mounted" in (box_.flash.vars.get(new) or b"").decode()
