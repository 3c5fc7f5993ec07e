"""A bounded queue of entries and the one thread that takes them (the forwarder's, the
mailer's). Its owner starts it and stops it: `stop()` ends the thread and joins it,
bounded, and says whether it ended; nothing is taken or sent after that.

`put()` never blocks: a full queue drops the entry and counts it (`full_drops`), so a
destination that is down or slow never slows the box.
"""

from __future__ import annotations

import abc
import queue
import threading
import time

from appliance.services.alarms.entry import Entry


class QueueWorker(abc.ABC):
    def __init__(self, name: str, size: int, join_s: float) -> None:
        self.join_s = join_s
        self.full_drops = 0
        self._queue: queue.Queue[Entry | None] = queue.Queue(size)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @abc.abstractmethod
    def _run(self) -> None:
        """The thread: take entries with `_take()` until it gives None (stopped)."""

    def start(self) -> None:
        self._thread.start()

    def put(self, entry: Entry) -> bool:
        if self._stop.is_set():
            return False
        try:
            self._queue.put_nowait(entry)
            return True
        except queue.Full:
            with self._lock:
                self.full_drops += 1
            return False

    def _take(self, block: bool = True) -> Entry | None:
        """The next entry, to be marked `_done()` once handled; None once stopped (or,
        not blocking, when none is queued)."""
        if self._stop.is_set():
            return None
        try:
            entry = self._queue.get(block)
        except queue.Empty:
            return None
        if entry is None or self._stop.is_set():
            self._queue.task_done()
            return None
        return entry

    def _done(self, count: int = 1) -> None:
        for _ in range(count):
            self._queue.task_done()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def drain(self, timeout: float) -> bool:
        """True once every queued entry is handled (tests, and a short wait at the box's
        stop)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def stop(self) -> bool:
        self._stop.set()
        try:
            self._queue.put_nowait(None)  # wakes a thread waiting for an entry
        except queue.Full:
            pass  # it is not waiting: it sees _stop before it takes the next one
        if self._thread.is_alive():
            self._thread.join(self.join_s)
        return not self._thread.is_alive()
