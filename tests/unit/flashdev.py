"""A flash disk that loses power: the emulated device under the FLASHMAN reliability tests.

Reads see every write at once (like the page cache); what survives the power cut is the
`durable` image. Writes become durable at `flush()`, or — depending on the mode — when the
power fails at write number `cut_at` (0-based; that write is the one being made):

- "clean":   every earlier write reached the disk, the cut write did not;
- "torn":    every earlier write reached the disk, the cut write only a prefix of its
             512-byte sectors (possibly none);
- "reorder": of the writes since the last flush (including the cut one) a random subset
             reached the disk, in random order — a disk cache that reorders.
"""

from __future__ import annotations

import random
import threading

from appliance.hal.block import SECTOR, MemoryBlockDevice, strided_by_reads


class PowerCut(Exception):
    """The power failed; nothing more reaches the disk."""


MODES = ("clean", "torn", "reorder")


class CutDevice:
    def __init__(
        self, image: bytes, cut_at: int | None = None, mode: str = "clean", seed: int = 0
    ) -> None:
        assert mode in MODES
        self.volatile = bytearray(image)
        self.durable = bytearray(image)
        self.pending: list[tuple[int, bytes]] = []
        self.cut_at = cut_at
        self.mode = mode
        self.rng = random.Random(seed)
        self.count = 0
        self.dead = False

    @property
    def size(self) -> int:
        return len(self.volatile)

    def read(self, offset: int, length: int) -> bytes:
        if self.dead:
            raise PowerCut()
        if offset < 0 or offset + length > len(self.volatile):
            raise ValueError(f"read {offset}+{length} outside device")
        return bytes(self.volatile[offset : offset + length])

    def read_strided(self, offset: int, stride: int, length: int, count: int) -> list[bytes]:
        return strided_by_reads(self.read, offset, stride, length, count)

    def write(self, offset: int, data: bytes) -> None:
        if self.dead:
            raise PowerCut()
        if offset < 0 or offset + len(data) > len(self.volatile):
            raise ValueError(f"write {offset}+{len(data)} outside device")
        n = self.count
        self.count += 1
        if self.cut_at is not None and n == self.cut_at:
            self._cut(offset, bytes(data))
            raise PowerCut()
        self.volatile[offset : offset + len(data)] = data
        self.pending.append((offset, bytes(data)))

    def close(self) -> None:
        pass

    def flush(self) -> None:
        if self.dead:
            raise PowerCut()
        for off, data in self.pending:
            self.durable[off : off + len(data)] = data
        self.pending.clear()

    def _torn(self, offset: int, data: bytes) -> bytes:
        first = offset // SECTOR
        last = (offset + len(data) - 1) // SECTOR
        keep = self.rng.randrange(last - first + 1)  # 0 .. all but one sector
        return data[: max(0, (first + keep) * SECTOR - offset)]

    def _cut(self, offset: int, data: bytes) -> None:
        self.dead = True
        if self.mode == "reorder":
            writes = [*self.pending, (offset, data)]
            chosen = [w for w in writes if self.rng.random() < 0.5]
            self.rng.shuffle(chosen)
        else:
            chosen = list(self.pending)
            if self.mode == "torn":
                chosen.append((offset, self._torn(offset, data)))
        for off, d in chosen:
            self.durable[off : off + len(d)] = d
        self.pending.clear()

    def survivor(self) -> MemoryBlockDevice:
        """What is on the disk after the cut, as a fresh device."""
        dev = MemoryBlockDevice(0)
        dev.data = bytearray(self.durable)
        return dev


class GateDevice(CutDevice):
    """A flash disk that can hold one writer inside a commit: after `arm()`, the next write
    stops its thread before it lands until `release()`, so a test can send a second writer
    into the same commit window. Every write is logged with its thread's name; power never
    fails here, but `survivor()` is the disk as a power cut at that moment would leave it."""

    def __init__(self, image: bytes) -> None:
        super().__init__(image)
        self.writes: list[tuple[str, int, int]] = []  # (thread name, offset, length)
        self.paused = threading.Event()  # a writer is held at the gate
        self._armed = False
        self._release = threading.Event()
        self._log_lock = threading.Lock()

    def arm(self) -> None:
        self._armed = True

    def release(self) -> None:
        self._release.set()

    def write(self, offset: int, data: bytes) -> None:
        with self._log_lock:
            held, self._armed = self._armed, False
        if held:
            self.paused.set()
            assert self._release.wait(30), "the gate was never released"
        with self._log_lock:
            self.writes.append((threading.current_thread().name, offset, len(data)))
            super().write(offset, data)

    def flush(self) -> None:
        with self._log_lock:
            super().flush()


def memdev(image: bytes | bytearray) -> MemoryBlockDevice:
    dev = MemoryBlockDevice(0)
    dev.data = bytearray(image)
    return dev


# ---- helpers shared by the flash tests ------------------------------------------------

SEG = 0x10000
BIG_RAM = 3 * 1024 * 1024 * 1024  # RAM never limits FLASHDIR in these tests


def mount(dev, trace=None):  # type: ignore[no-untyped-def]
    from appliance.flash import mount_flash

    return mount_flash(dev, ram_bytes=BIG_RAM, trace=trace or (lambda _line: None))


def state(flash) -> tuple[dict[str, bytes], dict[int, str]]:  # type: ignore[no-untyped-def]
    return dict(flash.vars.items()), dict(flash.flashdir.items())


def blank_image(segments: int = 16) -> bytes:
    return bytes(segments * SEG)


def formatted_image(segments: int = 16) -> bytes:
    dev = memdev(blank_image(segments))
    mount(dev)
    return bytes(dev.data)
