"""The serial console (COM1 / ttyS0): a pyserial `socket://` port drained by a reader thread.

Everything received goes, unchanged, to the full console log file (if any) and to the `on_data`
subscribers (e.g. a terminal); a text copy with carriage returns removed is kept in memory
for matching. Waiting callers block on a condition that the reader notifies.
"""

from __future__ import annotations

import codecs
import fcntl
import select
import struct
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import serial

READ_POLL = 0.2  # how often the reader thread looks at its stop flag


def _bytes_buffered(fd: int) -> int:
    # exactly what the socket holds, so pyserial never reads into an EOF and drops data
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


class ConsoleReader:
    """Connects to `url` (e.g. "socket://127.0.0.1:4321") and drains it on a thread."""

    def __init__(self, url: str, log_path: Path | None = None) -> None:
        self.url = url
        self.log_path = log_path
        self.on_data: list[Callable[[bytes], None]] = []
        self._port: serial.SerialBase | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._text = ""  # all output so far, "\r" removed
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.closed = False  # the remote end hung up (QEMU exited)

    def connect(self, timeout: float, **options: object) -> None:
        """Connect, retrying while QEMU is still creating its listening socket; `options`
        go to pyserial (baudrate for a local device)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                # rfc2217:// has no write timeout (pyserial: "not supported")
                limit = {} if self.url.startswith("rfc2217://") else {"write_timeout": 10}
                self._port = serial.serial_for_url(self.url, timeout=0, **limit, **options)
                break
            except serial.SerialException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._thread = threading.Thread(target=self._drain, name="ipva-console", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self._port is not None
        log = self.log_path.open("ab") if self.log_path is not None else None
        try:
            read = self._reader()
            while not self._stop.is_set():
                try:
                    data = read()
                except (OSError, ValueError, serial.SerialException):
                    break
                if data is None:  # the peer closed
                    break
                if not data:
                    continue
                if log is not None:
                    log.write(data)
                    log.flush()
                self._feed(data)
        finally:
            if log is not None:
                log.close()
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _reader(self) -> Callable[[], bytes | None]:
        """One read step: b"" nothing yet, None end of input."""
        port = self._port
        assert port is not None
        try:
            fd = port.fileno()
        except (OSError, AttributeError):  # rfc2217:// has no descriptor: poll its buffer
            port.timeout = READ_POLL
            return lambda: port.read(max(1, port.in_waiting))

        def from_fd() -> bytes | None:
            ready, _, _ = select.select([fd], [], [], READ_POLL)
            if not ready:
                return b""
            count = _bytes_buffered(fd)
            if count == 0:  # readable with nothing buffered: the peer closed
                return None
            return bytes(port.read(count))

        return from_fd

    def _feed(self, data: bytes) -> None:
        text = self._decoder.decode(data).replace("\r", "")
        with self._cond:
            self._text += text
            self._cond.notify_all()
        for sink in list(self.on_data):
            sink(data)

    @property
    def text(self) -> str:
        with self._cond:
            return self._text

    def wait_for_more(self, known_length: int, timeout: float) -> bool:
        """Block until the text is longer than `known_length`, the port closes or timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: len(self._text) > known_length or self.closed, timeout
            )

    def write(self, data: bytes) -> None:
        if self._port is None:
            raise serial.SerialException("console not connected")
        self._port.write(data)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._port is not None:
            self._port.close()
