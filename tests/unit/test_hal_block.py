"""Block devices: the strided read FLASHMAN's mount uses for the segment headers."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path
from typing import Any

import pytest

from appliance.hal import block
from appliance.hal.block import (
    STRIDED_CHUNK,
    FileBlockDevice,
    MemoryBlockDevice,
    strided_by_reads,
)

SEG = 0x10000
HEAD = 128


def image(path: Path, size: int, seed: int = 1) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return data


def expected(data: bytes, offset: int, stride: int, length: int, count: int) -> list[bytes]:
    return [data[offset + i * stride : offset + i * stride + length] for i in range(count)]


@pytest.fixture
def preadv_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the O_DIRECT requests made (os.preadv is only used for them)."""
    calls: list[int] = []
    real = os.preadv

    def counting(fd: int, buffers: Any, offset: int) -> int:
        calls.append(sum(len(b) for b in buffers))
        return real(fd, buffers, offset)

    monkeypatch.setattr(block.os, "preadv", counting)
    return calls


def test_headers_of_a_512_mib_flash_come_in_large_requests(
    tmp_path: Path, preadv_calls: list[int]
) -> None:
    count = 512 * 1024 * 1024 // SEG
    path = tmp_path / "flash.img"
    with open(path, "wb") as f:  # sparse, with a mark in a few headers
        f.truncate(count * SEG)
        for i in (0, 1, 15, 16, 17, 4095, count - 1):
            f.seek(i * SEG)
            f.write(i.to_bytes(4, "little") * (HEAD // 4))
    with FileBlockDevice(path, readonly=True) as dev:
        got = dev.read_strided(0, SEG, HEAD, count)
        assert got == strided_by_reads(dev.read, 0, SEG, HEAD, count)
    assert got[17] == (17).to_bytes(4, "little") * (HEAD // 4) and got[18] == bytes(HEAD)
    # O_DIRECT really served it, in requests of about 1 MiB (16 segments, to the last
    # header's end), not one request per header
    assert len(preadv_calls) == count * SEG // STRIDED_CHUNK
    assert set(preadv_calls) == {STRIDED_CHUNK - SEG + 4096}


@pytest.mark.parametrize(
    "offset, stride, length, count",
    [
        (0, SEG, HEAD, 40),  # a 40-segment flash: the last request is partial
        (4096, 8192, 4096, 300),  # items as long as a block, several requests
        (0, 3 * STRIDED_CHUNK, 100, 3),  # a stride larger than a request
        (100, SEG, HEAD, 10),  # unaligned: one read per item
        (0, 5000, HEAD, 10),  # unaligned stride
        (0, SEG, HEAD, 0),
    ],
)
def test_strided_read_equals_one_read_per_item(
    tmp_path: Path, offset: int, stride: int, length: int, count: int
) -> None:
    size = 10 * 1024 * 1024
    data = image(tmp_path / "d.img", size)
    with FileBlockDevice(tmp_path / "d.img") as dev:
        assert dev.read_strided(offset, stride, length, count) == expected(
            data, offset, stride, length, count
        )
    mem = MemoryBlockDevice(0)
    mem.data = bytearray(data)
    assert mem.read_strided(offset, stride, length, count) == expected(
        data, offset, stride, length, count
    )


def test_the_last_item_of_a_file_not_a_whole_number_of_blocks(tmp_path: Path) -> None:
    size = 40 * SEG + HEAD + 1000  # O_DIRECT's last request runs past the end
    data = image(tmp_path / "d.img", size)
    with FileBlockDevice(tmp_path / "d.img") as dev:
        assert dev.read_strided(0, SEG, HEAD, 41) == expected(data, 0, SEG, HEAD, 41)


def test_outside_the_device_is_refused(tmp_path: Path) -> None:
    image(tmp_path / "d.img", 4 * SEG)
    with FileBlockDevice(tmp_path / "d.img") as dev:
        with pytest.raises(ValueError, match="outside"):
            dev.read_strided(0, SEG, HEAD, 5)
    with pytest.raises(ValueError, match="outside"):
        MemoryBlockDevice(4 * SEG).read_strided(0, SEG, HEAD, 5)


def test_without_o_direct_it_reads_item_by_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preadv_calls: list[int]
) -> None:
    """tmpfs refuses O_DIRECT at open, some file systems at the read: the same answer."""
    data = image(tmp_path / "d.img", 64 * SEG)
    with FileBlockDevice(tmp_path / "d.img") as dev:
        real_open = os.open

        def no_direct(path: str, flags: int, *a: Any) -> int:
            if flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_open(path, flags, *a)

        monkeypatch.setattr(block.os, "open", no_direct)
        assert dev.read_strided(0, SEG, HEAD, 64) == expected(data, 0, SEG, HEAD, 64)
        monkeypatch.undo()

        def einval(fd: int, buffers: Any, offset: int) -> int:
            raise OSError(errno.EINVAL, "Invalid argument")

        monkeypatch.setattr(block.os, "preadv", einval)
        assert dev.read_strided(0, SEG, HEAD, 64) == expected(data, 0, SEG, HEAD, 64)
    assert preadv_calls == []


def test_a_read_error_is_the_disks_and_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image(tmp_path / "d.img", 64 * SEG)
    fallbacks: list[int] = []

    def eio(fd: int, buffers: Any, offset: int) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(block.os, "preadv", eio)
    with FileBlockDevice(tmp_path / "d.img") as dev:
        monkeypatch.setattr(dev, "read", lambda o, n: fallbacks.append(o) or b"")
        with pytest.raises(OSError) as e:
            dev.read_strided(0, SEG, HEAD, 64)
    assert e.value.errno == errno.EIO
    assert fallbacks == []  # not hidden by reading again item by item


def test_a_short_read_is_an_io_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image(tmp_path / "d.img", 64 * SEG)
    monkeypatch.setattr(block.os, "preadv", lambda fd, buffers, offset: 16)
    with FileBlockDevice(tmp_path / "d.img") as dev:
        with pytest.raises(OSError, match="short read") as e:
            dev.read_strided(0, SEG, HEAD, 64)
    assert e.value.errno == errno.EIO


def test_memory_devices_read_through_read() -> None:
    """Test devices built on MemoryBlockDevice (fault injection) see every item's read."""
    seen: list[tuple[int, int]] = []

    class Counting(MemoryBlockDevice):
        def read(self, offset: int, length: int) -> bytes:
            seen.append((offset, length))
            return super().read(offset, length)

    Counting(8 * SEG).read_strided(SEG, SEG, HEAD, 7)
    assert seen == [(i * SEG, HEAD) for i in range(1, 8)]
