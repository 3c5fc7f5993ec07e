"""The received image, held once while it is verified: pieces in the temp dir that are given
back as the slot write takes them.

In the VM the temp dir is the initramfs's RAM (a 128 MiB guest has ~80 MiB for everything
after Debian's kernel). One file the size of the image would stay whole in RAM until the slot
write ended, beside the page cache the write itself fills; pieces deleted as soon as they are
on their way to the disk let the RAM the image took flow back while the disk's pages take it,
so the peak is the image plus one piece, not twice the image (the 128 MiB box otherwise
thrashed and stalled mid-update).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from appliance.hal.bootfiles import CHUNK

PIECE = CHUNK  # what hal.bootfiles writes and syncs at a time: a piece goes as it is written


class Spool:
    def __init__(self, directory: Path | None = None, piece: int = PIECE) -> None:
        import tempfile  # an update only (with shutil, lzma …: not on the boot's path)

        self._dir = tempfile.TemporaryDirectory(dir=directory, prefix="ipva-update-")
        self._piece = piece
        self._pieces: list[Path] = []
        self._file: BinaryIO | None = None
        self._filled = 0
        self.size = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._file is None or self._filled == self._piece:
                self._next_piece()
            assert self._file is not None
            n = min(len(view), self._piece - self._filled)
            self._file.write(view[:n])
            self._filled += n
            self.size += n
            view = view[n:]

    def _next_piece(self) -> None:
        self._close_piece()
        path = Path(self._dir.name) / f"{len(self._pieces):05d}"
        self._file = open(path, "wb")  # noqa: SIM115 - closed by _close_piece
        self._pieces.append(path)
        self._filled = 0

    def _close_piece(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def drain(self) -> Iterator[bytes]:
        """The image in order, a piece at a time; each piece's file is gone once it is read,
        so the spool can be drained once (a failed slot write needs the image again)."""
        self._close_piece()
        while self._pieces:
            path = self._pieces.pop(0)
            data = path.read_bytes()
            path.unlink()
            yield data

    def close(self) -> None:
        self._close_piece()
        self._pieces.clear()
        self._dir.cleanup()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
