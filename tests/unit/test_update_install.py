"""Installing firmware into the other slot of a real boot disk (FAT written by mtools):
what is refused leaves the disk byte-identical; what is accepted flips the record last."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from appliance.formats.signify import Keyring
from appliance.hal.block import FileBlockDevice
from appliance.hal.bootctl import Action, SlotState, decide, read_boot_control
from appliance.hal.bootfiles import ImageBootFiles
from appliance.services.update.install import Installer, UpdateError
from firmware import ipvabin
from images.bootdisk import make_boot_disk
from tests.signing import TEST_KEY

RING = Keyring((TEST_KEY.public("test"),))


def image(version: str = "16r1sr2", build: int = 1601002, size: int = 300_000) -> bytes:
    payload = hashlib.sha256(version.encode()).digest() * (size // 32)
    return ipvabin.pack(payload, version, build, TEST_KEY)


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    fw = tmp_path / "IPVA.BIN"
    fw.write_bytes(image("16r1sr1", 1601001))
    return make_boot_disk(tmp_path / "boot.img", {"IPVA.BIN": fw}, 1700000000, 32)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def installer(boot: Path, running: int = 0) -> tuple[Installer, FileBlockDevice]:
    dev = FileBlockDevice(boot)
    spool = boot.parent / "spool"
    spool.mkdir(exist_ok=True)
    return Installer(ImageBootFiles(boot), dev, running, RING, spool), dev


def chunked(data: bytes, n: int = 65536) -> Iterator[bytes]:
    for i in range(0, len(data), n):
        yield data[i : i + n]


def test_install_writes_the_other_slot_then_flips_to_a_trial(boot: Path) -> None:
    new = image()
    inst, dev = installer(boot)
    done = inst.install(chunked(new), source="upload")
    assert done.slot == 1 and done.info.version == "16r1sr2"
    files = ImageBootFiles(boot)
    assert b"".join(files.read("IPVA2.BIN")) == new
    assert files.size("IPVA2.BIN") == len(new)
    assert ipvabin.parse_header(b"".join(files.read("IPVA.BIN"))[:4096]).version == "16r1sr1"
    record = read_boot_control(dev)
    assert record is not None
    assert (record.active, record.state, record.good) == (1, SlotState.TRIAL, 0)
    assert decide(record).action is Action.TRY and decide(record).slot == 1
    assert inst.slot_info(1) == done.info
    assert "16r1sr2 build 1601002 written to slot B (IPVA2.BIN)" in done.describe()


def test_the_new_firmware_confirms_itself_once_up(boot: Path) -> None:
    inst, dev = installer(boot)
    inst.install(chunked(image()), source="upload")
    assert installer(boot, running=0)[0].confirm() is None  # the bootcode fell back: no
    confirmed = installer(boot, running=1)[0].confirm()
    assert confirmed is not None and (confirmed.active, confirmed.good) == (1, 1)
    assert installer(boot, running=1)[0].confirm() is None  # nothing left to confirm
    # the next update goes into slot A, with B as the fallback
    again = installer(boot, running=1)[0].install(chunked(image("16r1sr1", 1601001)), source="x")
    assert (again.slot, again.record.good) == (0, 1)


def _corrupt(data: bytes) -> bytes:
    b = bytearray(data)
    b[-10] ^= 0xFF
    return bytes(b)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"<html>not firmware</html>" * 200, "not an IPVA firmware image"),
        (image()[:-1000], "truncated"),
        (_corrupt(image()), "checksum wrong! Loading failed for image=IPVA    BIN"),
        (image() + b"junk", "trailing data"),
        (b"", "too short for a header"),
    ],
    ids=["foreign", "truncated", "corrupt", "trailing", "empty"],
)
def test_bad_images_leave_the_boot_disk_byte_identical(
    boot: Path, payload: bytes, message: str
) -> None:
    before = digest(boot)
    inst, _dev = installer(boot)
    with pytest.raises(UpdateError, match=message) as err:
        inst.install(chunked(payload, 777), source="upload")
    assert "nothing was written" in str(err.value)
    assert digest(boot) == before


def test_an_image_that_does_not_fit_is_refused_before_writing(tmp_path: Path) -> None:
    fw = tmp_path / "IPVA.BIN"
    fw.write_bytes(image("16r1sr1", 1601001, size=14_000_000))
    boot = make_boot_disk(tmp_path / "boot.img", {"IPVA.BIN": fw}, 1700000000, 32)
    before = digest(boot)
    inst, _dev = installer(boot)
    with pytest.raises(UpdateError, match="boot disk full: the image needs .* nothing was written"):
        inst.install(chunked(image(size=21_000_000)), source="upload")
    assert digest(boot) == before


def test_a_broken_off_upload_writes_nothing(boot: Path) -> None:
    def broken() -> Iterable[bytes]:
        yield image()[:50_000]
        raise ConnectionResetError("client went away")

    before = digest(boot)
    inst, _dev = installer(boot)
    with pytest.raises(UpdateError, match="could not be received: client went away"):
        inst.install(broken(), source="upload")
    assert digest(boot) == before


class FlakyFiles(ImageBootFiles):
    """A disk that stores one byte wrong: the read-back check must catch it."""

    def replace(self, name: str, chunks: Iterable[bytes]) -> None:
        super().replace(name, [_corrupt(b"".join(chunks))])


def test_a_slot_that_reads_back_wrong_is_not_activated(boot: Path) -> None:
    dev = FileBlockDevice(boot)
    before = read_boot_control(dev)
    inst = Installer(FlakyFiles(boot), dev, 0, RING, boot.parent)
    with pytest.raises(UpdateError, match="slot B .IPVA2.BIN. reads back wrong"):
        inst.install(chunked(image()), source="upload")
    assert read_boot_control(dev) == before


def test_an_image_the_ram_cannot_hold_beside_the_box_is_refused_at_its_header(
    boot: Path,
) -> None:
    from appliance.services.update.install import RAM_RESERVE

    new = image(size=1_000_000)
    before = boot.read_bytes()
    fed: list[int] = []

    def chunks() -> Iterator[bytes]:
        for piece in chunked(new):
            fed.append(len(piece))
            yield piece

    inst, _dev = installer(boot)
    inst.memory_free = lambda: RAM_RESERVE + len(new) - 1
    with pytest.raises(UpdateError) as e:
        inst.install(chunks(), source="upload")
    assert str(e.value).startswith("upload: not enough free memory to receive it: the image ")
    assert "give the VM more memory (the appliance ships with 256 MiB); nothing was written" in (
        str(e.value)
    )
    assert len(fed) == 1  # decided on the header, not after the whole image
    assert boot.read_bytes() == before
    inst.memory_free = lambda: RAM_RESERVE + len(new)  # just enough
    assert inst.install(chunked(new), source="upload").slot == 1


def test_the_shipped_ram_in_the_message_is_the_packages_default() -> None:
    from appliance.services.update.install import SHIPPED_RAM_MIB
    from firmware.settings import BuildSettings

    assert BuildSettings().ram_mib == SHIPPED_RAM_MIB
