"""Log records and the Sender: a target behind a bounded queue and a thread of its own.

Each configured target gets a `Sender`: a bounded queue drained by its own thread, so a
target that is down or slow never blocks the box — `log()` only enqueues, and when the
queue is full the record is dropped and counted. A failing target keeps its oldest record
and is retried after RETRY_S, so what arrives arrives in order.

The record's text form is the syslog line (RFC 3164): `<PRI>Mmm dd hh:mm:ss HOST TAG: msg`
with PRI = facility local0..local7 (the /class) * 8 + severity 6 (informational), as the
box sends it; TCP sends the same lines LF-terminated, HTTP one record per request, LOCAL
the same line without the PRI into LOG0.n files on the CF card.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

QUEUE_SIZE = 100  # the box's memory queue: 100 entries (services-logging.wiki)
RETRY_S = 5.0  # a target that failed is tried again after this long
STOP_JOIN_S = 0.5  # at stop: how long to wait for the sender thread
SEVERITY = 6  # informational, always (the wiki)
LOCAL0 = 16  # syslog facility number of local0
TAG = "IPVA"


@dataclass(frozen=True)
class LogRecord:
    """One log record: when, from which box, the text."""

    time: float  # unix seconds
    host: str  # the box's name
    text: str

    def stamp(self) -> str:
        t = time.localtime(self.time)
        return f"{time.strftime('%b', t)} {t.tm_mday:2d} {time.strftime('%H:%M:%S', t)}"

    def syslog_line(self, facility: int) -> str:
        """RFC 3164: what SYSLOG, TCP and HTTP carry; `facility` 0..7 is local0..local7."""
        return f"<{pri(facility)}>{self.stamp()} {self.host} {TAG}: {self.text}"

    def file_line(self) -> str:
        """What LOCAL writes to LOG0.n."""
        return f"{self.stamp()} {self.host} {TAG}: {self.text}"


def pri(facility: int) -> int:
    return (LOCAL0 + facility) * 8 + SEVERITY


class Rejected(Exception):
    """The target answered and refused this record (HTTP 4xx): retrying will not help."""


class Target(Protocol):
    """One destination. send() raises OSError when the record did not get there (it is
    retried), Rejected when it never will (it is dropped and counted)."""

    name: str  # e.g. "syslog 10.0.0.5:514"

    def send(self, record: LogRecord) -> None: ...

    def close(self) -> None: ...


@dataclass
class SenderStats:
    """A sender's counts and state (sent, dropped, failures, last error, up)."""

    sent: int = 0
    dropped: int = 0  # queue full or refused by the target: the record never went out
    failures: int = 0  # send attempts that failed (the record is retried)
    last_error: str = ""
    up: bool = True


class Sender:
    """A target behind a bounded queue and a thread of its own."""

    def __init__(self, target: Target, queue_size: int = QUEUE_SIZE, retry_s: float = RETRY_S):
        self.target = target
        self.retry_s = retry_s
        self.stats = SenderStats()
        self._queue: queue.Queue[LogRecord | None] = queue.Queue(queue_size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"log-{target.name}", daemon=True)
        self._thread.start()

    def log(self, record: LogRecord) -> bool:
        """Enqueue; never blocks. False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            with self._lock:
                self.stats.dropped += 1
            return False

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is None or self._stop.is_set():
                    return
                self._deliver(record)
            finally:
                self._queue.task_done()

    def _deliver(self, record: LogRecord) -> None:
        while not self._stop.is_set():
            try:
                self.target.send(record)
            except Rejected as e:
                with self._lock:
                    self.stats.dropped += 1
                    self.stats.last_error = str(e)
                return
            except OSError as e:
                with self._lock:
                    self.stats.failures += 1
                    self.stats.last_error = str(e) or type(e).__name__
                    self.stats.up = False
                self._stop.wait(self.retry_s)
                continue
            with self._lock:
                self.stats.sent += 1
                self.stats.up = True
            return

    def drain(self, timeout: float) -> bool:
        """True once every queued record is delivered (tests; the queue may be refilled)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self, join_s: float = STOP_JOIN_S) -> None:
        """Stop the thread; one stuck in a connect is left to its timeout (it is a daemon
        and sends nothing more), so a reset is never held up by a target that is down."""
        self._stop.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=join_s)
        if not self._thread.is_alive():
            self.target.close()
