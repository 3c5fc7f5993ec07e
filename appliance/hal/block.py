"""Block devices: the four IDE disks, as seen by the runtime.

A block device is a byte-addressable, fixed-size store. In the VM it is /dev/sdX (found by
role, see hal.disks); hosted it is an image file. FLASHMAN and the crash dump only ever see
this interface, so tests can put a power-cutting device underneath.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Callable
from typing import Protocol

SECTOR = 512
# O_DIRECT's alignment (buffer, offset and length): the logical block size of every disk our
# targets give the box is 512, so 4 KiB covers them and a 4Kn disk too
DIRECT_ALIGN = 4096
# one request of a strided read: big enough that the per-request cost (under TCG about
# 0.15 ms for IDE, the same as for 1 MiB) is paid rarely, small enough for a 128 MiB guest
STRIDED_CHUNK = 1 << 20


class BlockDevice(Protocol):
    """What the runtime needs from a disk."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def read_strided(self, offset: int, stride: int, length: int, count: int) -> list[bytes]:
        """`count` reads of `length` bytes, `stride` apart from `offset` (FLASHMAN's segment
        headers): a device may serve them with fewer, larger requests."""
        ...

    def write(self, offset: int, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...  # at shutdown and before an in-process restart


def _blocks(n: int) -> int:
    return -(-n // DIRECT_ALIGN) * DIRECT_ALIGN


def strided_by_reads(
    read: Callable[[int, int], bytes], offset: int, stride: int, length: int, count: int
) -> list[bytes]:
    """read_strided() as one read() per item: what every device can do."""
    return [read(offset + i * stride, length) for i in range(count)]


class FileBlockDevice:
    """A disk backed by a file or a block special file (os.pread/pwrite, no buffering)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self._fd = os.open(self.path, os.O_RDONLY if readonly else os.O_RDWR)
        self._size = os.lseek(self._fd, 0, os.SEEK_END)
        # close() against a read or write under way in another thread: once closed, the
        # fd number may be the next boot's (hosted restart), so nobody may use it again
        self._io = threading.Lock()

    def _open_fd(self) -> int:
        if self._fd < 0:
            raise ValueError(f"{self.path} is closed (the box went down)")
        return self._fd

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self._size:
            raise ValueError(f"read {offset}+{length} outside {self.path} ({self._size} bytes)")
        with self._io:
            return os.pread(self._open_fd(), length, offset)

    def read_strided(self, offset: int, stride: int, length: int, count: int) -> list[bytes]:
        """Reads the whole span in STRIDED_CHUNK requests with O_DIRECT and picks the items
        out: a 512 MiB flash has 8192 segment headers, and one small read each (one 4 KiB
        request through the page cache) costs more under emulated IDE than reading all of it
        in large requests; O_DIRECT keeps those 512 MiB out of the guest's page cache.
        Falls back to one read per item where O_DIRECT is refused (tmpfs) or the items are
        not aligned for it."""
        if count <= 0:
            return []
        end = offset + (count - 1) * stride + length
        if offset < 0 or end > self._size:
            raise ValueError(f"read {offset}..{end} outside {self.path} ({self._size} bytes)")
        if not (offset % DIRECT_ALIGN or stride % DIRECT_ALIGN or stride < length):
            items = self._read_direct(offset, stride, length, count)
            if items is not None:
                return items
        return strided_by_reads(self.read, offset, stride, length, count)

    def _read_direct(self, offset: int, stride: int, length: int, count: int) -> list[bytes] | None:
        """The items through a descriptor of its own opened O_DIRECT; None where the file
        system refuses that (tmpfs at the open, some others at the read)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECT)
        except OSError:  # EINVAL: the file system has no O_DIRECT
            return None
        try:
            return self._read_chunks(fd, offset, stride, length, count)
        except OSError as e:
            if e.errno != errno.EINVAL:  # an I/O error is the disk's, not O_DIRECT's
                raise
            return None
        finally:
            os.close(fd)

    def _read_chunks(
        self, fd: int, offset: int, stride: int, length: int, count: int
    ) -> list[bytes]:
        per_chunk = max(1, STRIDED_CHUNK // stride)  # whole items in each request
        out: list[bytes] = []
        # an mmap is page-aligned, as O_DIRECT wants its buffer
        buf = mmap.mmap(-1, _blocks((per_chunk - 1) * stride + length))
        try:
            for first in range(0, count, per_chunk):
                n = min(per_chunk, count - first)
                at = offset + first * stride
                want = (n - 1) * stride + length
                # whole blocks (at the end of an unaligned file the read is short, but holds
                # what is wanted); `with` releases the view even if the read fails
                with memoryview(buf)[: _blocks(want)] as part:
                    got = os.preadv(fd, [part], at)
                if got < want:
                    raise OSError(errno.EIO, f"short read of {self.path} at {at}")
                out += [buf[j * stride : j * stride + length] for j in range(n)]
        finally:
            buf.close()
        return out

    def write(self, offset: int, data: bytes) -> None:
        if self.readonly:
            raise PermissionError(f"{self.path} is open read-only")
        if offset < 0 or offset + len(data) > self._size:
            raise ValueError(f"write {offset}+{len(data)} outside {self.path} ({self._size} bytes)")
        with self._io:
            os.pwrite(self._open_fd(), data, offset)

    def flush(self) -> None:
        if not self.readonly:
            with self._io:
                os.fsync(self._open_fd())

    def close(self) -> None:
        with self._io:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> FileBlockDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryBlockDevice:
    """A disk in RAM: for unit tests and as the base of fault-injecting test devices."""

    def __init__(self, size: int, fill: bytes = b"\x00") -> None:
        self.data = bytearray(fill * size)

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > len(self.data):
            raise ValueError(f"read {offset}+{length} outside device ({len(self.data)} bytes)")
        return bytes(self.data[offset : offset + length])

    def read_strided(self, offset: int, stride: int, length: int, count: int) -> list[bytes]:
        # through read(), so that the tests' devices built on this one see every item
        return strided_by_reads(self.read, offset, stride, length, count)

    def write(self, offset: int, data: bytes) -> None:
        if offset < 0 or offset + len(data) > len(self.data):
            raise ValueError(f"write {offset}+{len(data)} outside device ({len(self.data)} bytes)")
        self.data[offset : offset + len(data)] = data

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
