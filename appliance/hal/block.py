"""Block devices: the four IDE disks, as seen by the runtime.

A block device is a byte-addressable, fixed-size store. In the VM it is /dev/sdX (found by
role, see hal.disks); hosted it is an image file. FLASHMAN and the crash dump only ever see
this interface, so tests can put a power-cutting device underneath.
"""

from __future__ import annotations

import os
from typing import Protocol

SECTOR = 512


class BlockDevice(Protocol):
    """What the runtime needs from a disk."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...  # at shutdown and before an in-process restart


class FileBlockDevice:
    """A disk backed by a file or a block special file (os.pread/pwrite, no buffering)."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self._fd = os.open(self.path, os.O_RDONLY if readonly else os.O_RDWR)
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or offset + length > self._size:
            raise ValueError(f"read {offset}+{length} outside {self.path} ({self._size} bytes)")
        return os.pread(self._fd, length, offset)

    def write(self, offset: int, data: bytes) -> None:
        if self.readonly:
            raise PermissionError(f"{self.path} is open read-only")
        if offset < 0 or offset + len(data) > self._size:
            raise ValueError(f"write {offset}+{len(data)} outside {self.path} ({self._size} bytes)")
        os.pwrite(self._fd, data, offset)

    def flush(self) -> None:
        if not self.readonly:
            os.fsync(self._fd)

    def close(self) -> None:
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

    def write(self, offset: int, data: bytes) -> None:
        if offset < 0 or offset + len(data) > len(self.data):
            raise ValueError(f"write {offset}+{len(data)} outside device ({len(self.data)} bytes)")
        self.data[offset : offset + len(data)] = data

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
