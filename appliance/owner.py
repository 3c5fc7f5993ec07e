"""One owner for the running box: every change to its state is a job on one thread, in order.

The model is an event loop (Twisted's reactor, OpenWrt's procd/ubus), not threads taking
turns on a lock:

- The runtime owns one `LoopExecutor` for its whole life (the consoles outlive restarts): a
  queue and one thread, `box-owner`, that runs the jobs one at a time. The boot, every
  console line, every restart, the web admin's `/!` lines and forms, the update server's
  script lines and the services' own state changes (update state, the certificate, an
  address the DHCP client got) are such jobs.
- Each boot gets a `BoxOwner`: the handle through which that box's services reach it,
  `box.owner.call(fn)` (run `fn` on the owner thread, wait for its result) or
  `box.owner.post(fn)` (do not wait). When the box goes down the owner is closed first:
  its jobs still queued, and every later call, fail with `BoxRestarting`, so the restart
  can stop and join the services' threads without waiting for them to be served.
- Long work (a download, a slot write, a DHCP lease, key generation, a TLS handshake) runs
  in the service's own thread and hands its result back as a job.
- A call made on the owner thread itself runs at once: the caller is the owner already.
- The box's mutators check that they run on the owner (`BoxOwner.check()`): a service
  thread that changes the box directly is a programming error, raised where it happens.
- A job that fails with an exception its caller does not take (a posted job) goes to
  `threading.excepthook`: in the box that is the crash watch (a crash dump), not silence.

A box made without a runtime (a unit test) has an `InlineExecutor`: its jobs run in the
caller's thread, one at a time; the thread that made it counts as the owner.
"""

from __future__ import annotations

import abc
import contextvars
import queue
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

STOP_JOIN_S = 10.0  # how long stop() waits for the job under way


class BoxRestarting(Exception):
    """The box this call was for is going down (reset, reboot, end): nothing was done."""


class NotOwner(RuntimeError):
    """Box state was touched from a thread that is not its owner: a programming error."""


@dataclass
class _Job:
    """A queued job: the function, its future and the owner it runs for."""

    fn: Callable[[], object]
    future: Future[object]
    owner: BoxOwner | None  # None: the runtime's own (a console line, a restart)


class Executor(abc.ABC):
    """Runs jobs one at a time; `in_owner()`: the calling thread is running one."""

    @abc.abstractmethod
    def submit(self, fn: Callable[[], T], owner: BoxOwner | None = None) -> Future[T]: ...

    @abc.abstractmethod
    def in_owner(self) -> bool: ...

    def call(self, fn: Callable[[], T], owner: BoxOwner | None = None) -> T:
        """Run `fn` as a job and return its result (its exception is raised here)."""
        if self.in_owner():
            return fn()
        return self.submit(fn, owner).result()


class LoopExecutor(Executor):
    """A queue and the one thread that runs its jobs. `after_job` runs on that thread after
    every job (the runtime carries out a restart a job asked for there)."""

    def __init__(
        self, name: str = "box-owner", after_job: Callable[[], None] = lambda: None
    ) -> None:
        self.name = name
        self.after_job = after_job
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.jobs = 0  # jobs run (the bench counts them)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def in_owner(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[[], T], owner: BoxOwner | None = None) -> Future[T]:
        future: Future[T] = Future()
        if self._stopped.is_set():
            future.set_exception(BoxRestarting("the box has stopped"))
            return future
        # the caller's context goes with the job, as asyncio's callbacks take theirs: who
        # typed a line (appliance.events.acting) is the console's, not the owner thread's
        context = contextvars.copy_context()
        job = _Job(lambda: context.run(fn), future, owner)  # type: ignore[arg-type]
        if owner is not None and not owner.admit(job):
            future.set_exception(BoxRestarting("the box is restarting"))
            return future
        self._queue.put(job)
        return future

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.owner is not None and not job.owner.release(job):
                continue  # its box went down while it waited: its caller has BoxRestarting
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                result = job.fn()
            except BaseException as e:
                job.future.set_exception(e)
            else:
                job.future.set_result(result)
            self.jobs += 1
            try:
                self.after_job()
            except BaseException:
                _report(sys.exc_info())

    def stop(self, timeout: float = STOP_JOIN_S) -> bool:
        """End the thread once the job under way is done; later submits fail. True once it
        has ended (checked: False says it is still running)."""
        self._stopped.set()
        self._queue.put(None)
        if self._thread is None or self.in_owner():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


class InlineExecutor(Executor):
    """A box without a runtime (unit tests): jobs run in the caller's thread, one at a time;
    the thread that made it, and a thread running a job, are the owner."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._maker = threading.get_ident()
        self._running: int | None = None

    def in_owner(self) -> bool:
        me = threading.get_ident()
        return me == self._maker or me == self._running

    def submit(self, fn: Callable[[], T], owner: BoxOwner | None = None) -> Future[T]:
        future: Future[T] = Future()
        if owner is not None and owner.closed:
            future.set_exception(BoxRestarting("the box has stopped"))
            return future
        with self._lock:
            outer, self._running = self._running, threading.get_ident()
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)
            finally:
                self._running = outer
        return future


class BoxOwner:
    """One boot's handle on the executor: its services' way to the box (see the module's
    docstring). `close()` (on the owner thread, when the box goes down) fails the jobs of
    this box still queued and every later call with BoxRestarting."""

    def __init__(self, executor: Executor | None = None) -> None:
        self.executor = executor if executor is not None else InlineExecutor()
        self._lock = threading.Lock()  # guards only the queued jobs and the closed flag
        self._queued: dict[int, _Job] = {}
        self.closed = False

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the owner thread and return its result; BoxRestarting when this box
        is going down (nothing of `fn` ran then)."""
        if self.executor.in_owner():
            if self.closed:
                raise BoxRestarting("the box is going down")
            return fn()
        return self.executor.submit(fn, self).result()

    def post(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the owner thread, not waiting; its failure goes to the crash hook."""
        future = self.executor.submit(fn, self)
        future.add_done_callback(_report_failure)

    def in_owner(self) -> bool:
        return self.executor.in_owner()

    def check(self, what: str) -> None:
        """Raise NotOwner unless the calling thread is the owner (the box's mutators)."""
        if not self.executor.in_owner():
            raise NotOwner(
                f"{what} called from thread {threading.current_thread().name}, which does not "
                "own the box: use box.owner.call()"
            )

    # the executor's side -----------------------------------------------------------------
    def admit(self, job: _Job) -> bool:
        with self._lock:
            if self.closed:
                return False
            self._queued[id(job)] = job
            return True

    def release(self, job: _Job) -> bool:
        """The job is up next: False if this box went down meanwhile (its caller was told)."""
        with self._lock:
            self._queued.pop(id(job), None)
            return not self.closed

    def close(self) -> None:
        """The box goes down: no job of it runs any more. The futures of the queued ones
        fail now, so their callers (the threads the stop is about to join) wake up; the
        executor skips those jobs when it reaches them."""
        with self._lock:
            self.closed = True
            queued, self._queued = list(self._queued.values()), {}
        for job in queued:
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(BoxRestarting("the box is restarting"))


def _report_failure(future: Future[object]) -> None:
    e = future.exception()
    if e is not None and not isinstance(e, BoxRestarting):
        _report((type(e), e, e.__traceback__))


def _report(exc_info: tuple[object, object, object]) -> None:
    """An exception nobody waits for: to threading.excepthook (the crash watch in the box)."""
    exc_type, exc, tb = exc_info
    threading.excepthook(threading.ExceptHookArgs([exc_type, exc, tb, threading.current_thread()]))


def join_checked(thread: threading.Thread | None, timeout: float) -> str | None:
    """Join a thread a service owns; the sentence for the trace if it did not end in time."""
    if thread is None or thread is threading.current_thread():
        return None
    thread.join(timeout)
    if thread.is_alive():
        return f"thread {thread.name} did not stop within {timeout:g} s"
    return None
