"""Files on the boot disk's FAT partition (the firmware slots), as the update writes them.

In the VM the bootcode has the partition mounted read-only at /boot (firmware/bootcode/init);
a write remounts it read-write for just that long, goes through the kernel's vfat driver and
is fsynced before the partition is read-only again. Hosted, the boot disk is `boot.img` in
the hosted directory and mtools writes into it, as the builder does. Either way FAT itself is
not ours: the kernel or mtools keeps it. Reading back for the check after a write drops the
cached pages first, so what is checked is what the disk holds; neither a write nor a read
leaves the file in the page cache (a 128 MiB guest has no room for it beside the runtime).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

BOOT_PARTITION_SECTOR = 2048  # the FAT partition's first sector (images/bootdisk.py lays it)
CHUNK = 1 << 20


class BootFilesError(OSError):
    """A boot-partition file operation failed; the message says which and why."""


class BootFiles(Protocol):
    def size(self, name: str) -> int | None:
        """The file's size, None if there is no such file."""

    def read(self, name: str) -> Iterator[bytes]:
        """The file's bytes as the disk holds them, in chunks."""

    def replace(self, name: str, chunks: Iterable[bytes]) -> None:
        """Write the file anew; on return it is on the disk (flushed)."""

    def remove(self, name: str) -> None: ...

    def free_bytes(self) -> int: ...


def _run(argv: list[str], what: str, data: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(argv, input=data, capture_output=True, check=False)
    except FileNotFoundError as e:
        raise BootFilesError(f"{what}: {argv[0]} not found") from e
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise BootFilesError(f"{what}: {err}")
    return done.stdout


class MountedBootFiles:
    """The VM: the partition the bootcode mounted (read-only) at `mountpoint`."""

    def __init__(self, mountpoint: Path = Path("/boot")) -> None:
        self.mountpoint = mountpoint

    @contextlib.contextmanager
    def _writable(self) -> Iterator[None]:
        _run(["mount", "-o", "remount,rw", str(self.mountpoint)], "boot partition")
        try:
            yield
        finally:
            os.sync()
            _run(["mount", "-o", "remount,ro", str(self.mountpoint)], "boot partition")

    def size(self, name: str) -> int | None:
        try:
            return (self.mountpoint / name).stat().st_size
        except FileNotFoundError:
            return None

    def read(self, name: str) -> Iterator[bytes]:
        with open(self.mountpoint / name, "rb") as f:
            fd = f.fileno()
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # read the disk
            for chunk in iter(lambda: f.read(CHUNK), b""):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # and keep no copy
                yield chunk

    def replace(self, name: str, chunks: Iterable[bytes]) -> None:
        path = self.mountpoint / name
        with self._writable():
            with open(path, "wb") as f:
                fd = f.fileno()
                for chunk in chunks:
                    f.write(chunk)
                    # each piece on the disk and out of the page cache before the next: a
                    # small guest's RAM holds the spool already (services/update/spool.py)
                    f.flush()
                    os.fdatasync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.fsync(fd)

    def remove(self, name: str) -> None:
        with self._writable():
            (self.mountpoint / name).unlink(missing_ok=True)

    def free_bytes(self) -> int:
        st = os.statvfs(self.mountpoint)
        return st.f_bavail * st.f_frsize


class ImageBootFiles:
    """Hosted: the FAT partition inside a boot disk image, through mtools."""

    def __init__(self, image: Path, *, offset: int = BOOT_PARTITION_SECTOR * 512) -> None:
        self.image = image
        self.target = f"{image}@@{offset}"

    def _m(self, tool: str, *args: str, data: bytes | None = None) -> bytes:
        return _run([tool, "-i", self.target, *args], f"{tool} on {self.image.name}", data)

    def size(self, name: str) -> int | None:
        try:
            listing = self._m("mdir", f"::{name}").decode(errors="replace")
        except BootFilesError:  # mdir: File "::NAME" not found
            return None
        m = re.search(r"1 file\s+([\d ]+) bytes", listing)
        return int(m[1].replace(" ", "")) if m else None

    def read(self, name: str) -> Iterator[bytes]:
        data = self._m("mtype", f"::{name}")
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]

    def replace(self, name: str, chunks: Iterable[bytes]) -> None:
        import tempfile  # an update only (with shutil, lzma …: not on the boot's path)

        with tempfile.NamedTemporaryFile(dir=self.image.parent, prefix=f".{name}.") as spool:
            for chunk in chunks:
                spool.write(chunk)
            spool.flush()
            self._m("mcopy", "-o", spool.name, f"::{name}")
        with open(self.image, "rb+") as f:
            os.fsync(f.fileno())

    def remove(self, name: str) -> None:
        if self.size(name) is not None:
            self._m("mdel", f"::{name}")

    def free_bytes(self) -> int:
        out = self._m("mdir", "::").decode(errors="replace")
        m = re.search(r"([\d ]+) bytes free", out)
        if m is None:
            raise BootFilesError(f"mdir on {self.image.name}: no free-space line in {out!r}")
        return int(m[1].replace(" ", ""))
