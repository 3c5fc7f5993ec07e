"""The compact flash card's file system (IDE 0:1): mount, unmount, format, and its files.

The FAT itself is not ours: in the VM it is the kernel's vfat (busybox `mount`, `umount`,
`mkdosfs` on the disk's device node); hosted, where nothing can be mounted without root,
pyfatfs reads and writes the image file and dosfstools' `mkfs.fat` formats it. A platform
hands out the backend for its CF disk (Platform.compact_flash); appliance.services.cf is
the CF0 module on top.

`CfVolume` is what the rest of the box sees of a mounted card: a few path operations,
relative to the card's root, with "/" separators.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import construct as cs

from appliance.hal.block import BlockDevice

LABEL = "IPVACF"
VM_MOUNT_POINT = Path("/cf")

# The FAT boot sector fields CF0 info reports (the BIOS parameter block); enough to tell
# the file system's size from the disk's, nothing of the FAT itself.
FatBootSector = cs.Struct(
    "jump" / cs.Bytes(3),
    "oem" / cs.Bytes(8),
    "bytes_per_sector" / cs.Int16ul,
    "sectors_per_cluster" / cs.Int8ul,
    "reserved_sectors" / cs.Int16ul,
    "fats" / cs.Int8ul,
    "root_entries" / cs.Int16ul,
    "total_sectors_16" / cs.Int16ul,
    "media" / cs.Int8ul,
    "sectors_per_fat_16" / cs.Int16ul,
    "sectors_per_track" / cs.Int16ul,
    "heads" / cs.Int16ul,
    "hidden_sectors" / cs.Int32ul,
    "total_sectors_32" / cs.Int32ul,
)


@dataclass(frozen=True)
class FatGeometry:
    """A CF card's FAT file system: the bytes it covers, its cluster size, its kind."""

    bytes: int  # what the file system covers
    cluster: int
    kind: str  # FAT12 / FAT16 / FAT32


def read_geometry(dev: BlockDevice) -> FatGeometry | None:
    """The FAT's size, or None when the disk holds no FAT file system."""
    sector = dev.read(0, 512)
    if sector[510:512] != b"\x55\xaa":
        return None
    if sector[82:87] == b"FAT32":
        kind = "FAT32"
    elif sector[54:59] in (b"FAT12", b"FAT16"):
        kind = sector[54:59].decode()
    else:
        return None
    b = FatBootSector.parse(sector)
    total = b.total_sectors_16 or b.total_sectors_32
    if b.bytes_per_sector not in (512, 1024, 2048, 4096) or not total:
        return None
    return FatGeometry(total * b.bytes_per_sector, b.sectors_per_cluster * b.bytes_per_sector, kind)


class CfError(Exception):
    """A CF operation failed; the message says why and what to do."""


class CfVolume(Protocol):
    """A mounted card's files (paths relative to its root, "/"-separated)."""

    def size(self, path: str) -> int | None: ...  # None: no such file

    def isdir(self, path: str) -> bool: ...  # the root "/" is one

    def append(self, path: str, data: bytes) -> None: ...  # durable when it returns

    def read(self, path: str) -> bytes: ...

    def replace(self, src: str, dst: str) -> None: ...  # dst may exist

    def remove(self, path: str) -> None: ...  # missing is fine

    def makedirs(self, path: str) -> None: ...

    def listdir(self, path: str) -> list[str]: ...

    def usage(self) -> tuple[int, int]: ...  # (total bytes, free bytes)


class DirVolume:
    """The card mounted by the kernel (VM): plain files under the mount point."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _p(self, path: str) -> Path:
        return self.root / path.strip("/")

    def size(self, path: str) -> int | None:
        try:
            return self._p(path).stat().st_size
        except FileNotFoundError:
            return None

    def isdir(self, path: str) -> bool:
        return self._p(path).is_dir()

    def append(self, path: str, data: bytes) -> None:
        with self._p(path).open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read(self, path: str) -> bytes:
        return self._p(path).read_bytes()

    def replace(self, src: str, dst: str) -> None:
        os.replace(self._p(src), self._p(dst))
        os.sync()  # a rename is directory metadata, which fsync of the files does not cover

    def remove(self, path: str) -> None:
        self._p(path).unlink(missing_ok=True)

    def makedirs(self, path: str) -> None:
        self._p(path).mkdir(parents=True, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return sorted(p.name for p in self._p(path).iterdir())

    def usage(self) -> tuple[int, int]:
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


class FatImageVolume:
    """The card's image file read and written by pyfatfs (hosted). One lock: pyfatfs is
    not thread-safe, and the log sender and a console command may use it at once."""

    def __init__(self, image: Path) -> None:
        from pyfatfs.PyFatFS import PyFatFS  # hosted only; the guest has the kernel's vfat

        self._fs = PyFatFS(str(image))
        self._lock = threading.Lock()

    def size(self, path: str) -> int | None:
        with self._lock:
            return int(self._fs.getsize(path)) if self._fs.exists(path) else None

    def isdir(self, path: str) -> bool:
        with self._lock:
            return bool(self._fs.isdir(path))

    def append(self, path: str, data: bytes) -> None:
        with self._lock, self._fs.openbin(path, "a") as f:
            f.write(data)

    def read(self, path: str) -> bytes:
        with self._lock:
            return bytes(self._fs.readbytes(path))

    def replace(self, src: str, dst: str) -> None:
        with self._lock:
            self._fs.move(src, dst, overwrite=True)

    def remove(self, path: str) -> None:
        with self._lock:
            if self._fs.exists(path):
                self._fs.remove(path)

    def makedirs(self, path: str) -> None:
        with self._lock:
            self._fs.makedirs(path, recreate=True)

    def listdir(self, path: str) -> list[str]:
        with self._lock:
            return sorted(self._fs.listdir(path))

    def usage(self) -> tuple[int, int]:
        with self._lock:
            fat = self._fs.fs
            bpb = fat.bpb_header
            total = (bpb["BPB_TotSec16"] or bpb["BPB_TotSec32"]) * bpb["BPB_BytsPerSec"]
            used = sum(1 for entry in fat.fat[2:] if entry != 0) * fat.bytes_per_cluster
            return total, max(0, total - used)

    def close(self) -> None:
        with self._lock:
            self._fs.close()


class CfBackend(Protocol):
    """How a platform mounts and formats the card."""

    def mount(self) -> CfVolume: ...

    def unmount(self, volume: CfVolume) -> None: ...

    def format(self) -> None: ...  # whole disk, label IPVACF; the card is not mounted


def _run(argv: list[str], what: str) -> None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise CfError(f"{what}: {argv[0]} not found") from e
    if out.returncode != 0:
        raise CfError(f"{what} failed: {(out.stderr or out.stdout).strip() or out.returncode}")


class VmCfBackend:
    """busybox mount/umount/mkdosfs on the CF disk's device node."""

    def __init__(self, device: str, mount_point: Path = VM_MOUNT_POINT) -> None:
        self.device = device
        self.mount_point = mount_point

    def mount(self) -> CfVolume:
        self.mount_point.mkdir(parents=True, exist_ok=True)
        opts = "rw,noatime,codepage=437,iocharset=ascii,shortname=mixed"
        _run(["mount", "-t", "vfat", "-o", opts, self.device, str(self.mount_point)], "mount")
        return DirVolume(self.mount_point)

    def unmount(self, volume: CfVolume) -> None:
        _run(["umount", str(self.mount_point)], "umount")

    def format(self) -> None:
        _run(["mkdosfs", "-n", LABEL, self.device], "mkdosfs")


class HostedCfBackend:
    """pyfatfs on the image file; dosfstools' mkfs.fat formats it."""

    def __init__(self, image: Path) -> None:
        self.image = image

    def mount(self) -> CfVolume:
        try:
            return FatImageVolume(self.image)
        except Exception as e:  # pyfatfs raises its own family and ValueError on junk
            raise CfError(f"mount failed: {e}") from e

    def unmount(self, volume: CfVolume) -> None:
        if isinstance(volume, FatImageVolume):
            volume.close()

    def format(self) -> None:
        _run(["mkfs.fat", "-n", LABEL, str(self.image)], "mkfs.fat")
