"""Catching crashes of the running box and writing them to the dump disk.

- an unhandled exception in any thread (`threading.excepthook`) or in the main thread
  (`sys.excepthook`): a dump of kind EXCEPTION with every thread's stack, then `on_crash`
  (the runtime restarts the box as after a trap);
- a fatal signal (SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL): Python code cannot run then, so
  `faulthandler` writes its text straight into the dump disk's fault area (a file
  descriptor positioned there; the bootcode syncs before it reboots); the next boot turns
  it into a SIGNAL dump (`collect_fault`);
- the runtime process ending without a restart (killed, exited): the bootcode runs
  `python -m appliance died RC` before it reboots, which writes a DIED
  dump unless this boot already wrote one (`record_died`);
- `reboot`: a dump of kind REBOOT (the forced watchdog trap).
The format is appliance.formats.crashdump's. A boot only arms the fault area and keeps the
trace mirror (formats/dumpdisk.py); the dump record's format is imported when a dump is
made (a crash, a fault the boot finds, `python -m appliance died`), not before the prompt,
and so is `traceback` (with linecache, tokenize, textwrap).

The trace mirror (the trace tail a signal's dump shows, since Python cannot run then) is
kept on the disk by a writer thread, not by the thread that traces: `trace_changed()` only
marks it dirty; the writer writes the current tail at once when it was idle, then at most
every MIRROR_INTERVAL_S while lines keep coming (one write for a burst of lines, not one
per line). What a signal's dump can miss is the last interval's lines; the paths that
crash on purpose (`mod cmd DUMP trap signal`) and disarm call `flush_trace()` first.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, TypeVar

from appliance.formats.dumpdisk import (
    FAULT_END,
    FAULT_TEXT,
    FaultArm,
    arm_fault_area,
    read_fault_area,
    read_fault_arm,
    read_trace_mirror,
    write_trace_mirror,
)
from appliance.hal.block import BlockDevice

if TYPE_CHECKING:
    import traceback

    from appliance.formats.crashdump import CrashDump, DumpKind, Frame, MemoryFigures, ThreadStack


@dataclass(frozen=True)
class DumpContext:
    """What a dump needs to know about the box; callables so a dump sees the state at the
    moment of the crash, not at boot."""

    version: str
    build: int
    bootcode_build: int
    hw: str
    booted_at: float  # time.monotonic() at boot
    trace_tail: Callable[[], Sequence[str]]
    saved_config: Callable[[], tuple[str, int]]  # (its text, number of objects)
    memory: Callable[[], tuple[int, int]]  # (usable, DRAM) bytes from the platform


def _proc_kib(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def memory_figures(usable: int, dram: int) -> MemoryFigures:
    from appliance.formats.crashdump import MemoryFigures  # imported at a dump: see the module doc

    return MemoryFigures(
        usable=usable,
        dram=dram,
        available=_proc_kib("/proc/meminfo", "MemAvailable"),
        rss=_proc_kib("/proc/self/status", "VmRSS"),
    )


def _frames(summary: traceback.StackSummary) -> tuple[Frame, ...]:
    from appliance.formats.crashdump import Frame  # imported at a dump: see the module doc

    return tuple(Frame(f.filename, f.lineno or 0, f.name, (f.line or "").strip()) for f in summary)


def thread_stacks(
    crashed: int | None = None, tb: TracebackType | None = None
) -> tuple[ThreadStack, ...]:
    """Every thread's Python stack; the crashed thread's is its exception's traceback (the
    frames that raised), as that thread is already unwinding in the hook."""
    import traceback

    from appliance.formats.crashdump import ThreadStack  # imported at a dump: see the module doc

    names = {t.ident: t.name for t in threading.enumerate()}
    frames: dict[int, FrameType] = dict(sys._current_frames())
    stacks = []
    for ident, frame in frames.items():
        if ident == crashed and tb is not None:
            summary = traceback.extract_tb(tb)
        else:
            summary = traceback.extract_stack(frame)
        stacks.append(
            ThreadStack(
                names.get(ident, f"thread-{ident:#x}"), ident, ident == crashed, _frames(summary)
            )
        )
    if crashed is not None and crashed not in frames and tb is not None:
        stacks.append(
            ThreadStack(names.get(crashed, "?"), crashed, True, _frames(traceback.extract_tb(tb)))
        )
    return tuple(sorted(stacks, key=lambda s: (not s.crashed, s.name)))


T = TypeVar("T")

MIRROR_INTERVAL_S = 0.1  # the writer's pace under a burst of trace lines


def _ask(fn: Callable[[], T], default: T) -> T:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a crash report that crashes would hide the first crash
        return default


def collect(
    ctx: DumpContext,
    kind: DumpKind,
    reason: str,
    *,
    exc: BaseException | None = None,
    crashed: int | None = None,
    fault_text: str = "",
) -> CrashDump:
    """A dump of the box as it is now; each source is asked defensively (_ask)."""
    import hashlib  # here: it loads OpenSSL's libcrypto, not needed before a crash
    import traceback

    from appliance.formats.crashdump import CrashDump  # imported at a dump: see the module doc

    text, objects = _ask(ctx.saved_config, ("", 0))
    usable, dram = _ask(ctx.memory, (0, 0))
    tb = exc.__traceback__ if exc is not None else None
    return CrashDump(
        kind=kind,
        reason=reason,
        time=int(time.time()),
        uptime_ms=int((time.monotonic() - ctx.booted_at) * 1000),
        version=ctx.version,
        build=ctx.build,
        bootcode_build=ctx.bootcode_build,
        hw=ctx.hw,
        config_digest=hashlib.sha256(str(text).encode()).hexdigest(),
        config_objects=int(objects),
        memory=memory_figures(int(usable), int(dram)),
        trace=tuple(_ask(ctx.trace_tail, ())),
        threads=thread_stacks(crashed, tb),
        exception="".join(traceback.format_exception(exc)) if exc is not None else "",
        fault_text=fault_text,
    )


def _exc_reason(where: str, exc: BaseException) -> str:
    return f"unhandled exception in {where}: {type(exc).__name__}: {exc}"


class CrashWatch:
    """Arms the hooks for one boot of the box; `on_crash(dump)` runs after a dump of an
    unhandled exception is on the disk (the runtime restarts the box there)."""

    def __init__(
        self,
        dev: BlockDevice,
        ctx: DumpContext,
        *,
        device_path: str | None,
        on_crash: Callable[[CrashDump], None],
        trace: Callable[[str], None],
    ) -> None:
        self.dev = dev
        self.ctx = ctx
        self.device_path = device_path
        self.on_crash = on_crash
        self.trace = trace
        self._fault_fd: int | None = None
        self._fault_was_on = False
        self._saved_hooks: tuple[object, object] | None = None
        self._lock = threading.Lock()  # one dump at a time; a second crash waits its turn
        self.last: CrashDump | None = None
        self._mirror_dirty = False
        self._mirror_wake = threading.Condition()
        self._mirror_thread: threading.Thread | None = None
        self._mirror_stop = False
        self.mirror_writes = 0  # trace-mirror writes this run (the bench counts them)

    # -- the boot side ---------------------------------------------------------------------
    def collect_fault(self) -> CrashDump | None:
        """A fatal signal of the previous boot left faulthandler's text: make it a dump."""
        found = read_fault_area(self.dev)
        if found is None:
            return None
        arm, text = found
        from appliance.formats.crashdump import CrashDump, DumpKind  # a dump: see the module doc

        first = text.strip().splitlines()[0] if text.strip() else "fatal signal"
        dump = CrashDump(
            kind=DumpKind.SIGNAL,
            reason=first,
            time=arm.boot_time,  # when it happened is not known; the boot it happened in is
            uptime_ms=0,
            version=arm.version,
            build=arm.build,
            bootcode_build=arm.bootcode_build,
            hw=self.ctx.hw,  # the same box
            trace=read_trace_mirror(self.dev),  # the crashed run's, mirrored as it traced
            fault_text=text,
        )
        self.write(dump)
        return dump

    def arm(self) -> None:
        """Install the exception hooks and faulthandler for this boot."""
        if self.dev.size >= FAULT_END:  # a small (test) disk has no fault area
            arm = FaultArm(
                int(time.time()), self.ctx.version, self.ctx.build, self.ctx.bootcode_build
            )
            arm_fault_area(self.dev, arm)
        if self.device_path is not None and self.dev.size >= FAULT_END:
            try:
                # not O_SYNC: other threads run on while faulthandler walks their stacks,
                # so it must be quick; the bootcode syncs before it reboots
                fd = os.open(self.device_path, os.O_WRONLY)
                os.lseek(fd, FAULT_TEXT, os.SEEK_SET)
                self._fault_was_on = faulthandler.is_enabled()
                faulthandler.enable(file=fd, all_threads=True)
                self._fault_fd = fd
            except OSError as e:
                self.trace(f"crash dump: fatal signals not caught ({e})")
        self._saved_hooks = (threading.excepthook, sys.excepthook)
        threading.excepthook = self._thread_hook
        sys.excepthook = self._main_hook
        if self.dev.size >= FAULT_END:
            self._mirror_stop = False
            self._mirror_thread = threading.Thread(
                target=self._mirror_loop, name="dump-trace-mirror", daemon=True
            )
            self._mirror_thread.start()

    def disarm(self) -> None:
        if self._mirror_thread is not None:
            with self._mirror_wake:
                self._mirror_stop = True
                self._mirror_wake.notify()
            self._mirror_thread.join(5)
            self._mirror_thread = None
            self.flush_trace()  # what the writer had not written yet
        if self._saved_hooks is not None:
            threading.excepthook, sys.excepthook = self._saved_hooks  # type: ignore[assignment]
            self._saved_hooks = None
        if self._fault_fd is not None:
            faulthandler.disable()
            os.close(self._fault_fd)
            self._fault_fd = None
            if self._fault_was_on:  # hand back what was there (a test runner's, say)
                faulthandler.enable(file=sys.stderr, all_threads=True)

    # -- crashes ---------------------------------------------------------------------------
    def write(self, dump: CrashDump) -> bool:
        from appliance.formats.crashdump import write_dump  # imported at a dump: see the module doc

        try:
            write_dump(self.dev, dump)
        except (OSError, ValueError) as e:
            self.trace(f"crash dump not written: {e}")
            return False
        self.last = dump
        return True

    def trace_changed(self) -> None:
        """A trace line was added (the hot path: no I/O here, the writer writes it)."""
        with self._mirror_wake:
            if not self._mirror_dirty:
                self._mirror_dirty = True
                self._mirror_wake.notify()

    def flush_trace(self) -> None:
        """Write the trace tail now if a line is not on the disk yet (before a crash on
        purpose, at disarm); when it returns, every line traced before is on the disk."""
        self._write_mirror()

    def _write_mirror(self) -> None:
        # the dirty flag is taken under the write lock, so a flush never returns while the
        # writer thread has taken the flag but not written yet (lock order: _lock, then wake)
        with self._lock:
            with self._mirror_wake:
                dirty, self._mirror_dirty = self._mirror_dirty, False
            if not dirty or self.dev.size < FAULT_END or self._saved_hooks is None:
                return
            try:
                write_trace_mirror(self.dev, _ask(self.ctx.trace_tail, ()))
                self.mirror_writes += 1
            except (OSError, ValueError):
                pass  # the mirror is a help for signal dumps, never a reason to fail

    def _mirror_loop(self) -> None:
        while True:
            with self._mirror_wake:
                while not self._mirror_dirty and not self._mirror_stop:
                    self._mirror_wake.wait()
                if self._mirror_stop:
                    return
            self._write_mirror()
            with self._mirror_wake:  # lines in the meantime wait for the next write
                self._mirror_wake.wait_for(lambda: self._mirror_stop, MIRROR_INTERVAL_S)

    def crash(
        self,
        kind: DumpKind,
        reason: str,
        *,
        exc: BaseException | None = None,
        crashed: int | None = None,
    ) -> CrashDump:
        """Write a dump of the box now (reboot, an exception); returns it."""
        with self._lock:
            dump = collect(self.ctx, kind, reason, exc=exc, crashed=crashed)
            self.write(dump)
            return dump

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        where = f"thread {args.thread.name}" if args.thread is not None else "a thread"
        ident = args.thread.ident if args.thread is not None else None
        from appliance.formats.crashdump import DumpKind  # imported at a dump: see the module doc

        dump = self.crash(
            DumpKind.EXCEPTION,
            _exc_reason(where, args.exc_value),
            exc=args.exc_value,
            crashed=ident,
        )
        self.trace(dump.reason)
        self.on_crash(dump)

    def _main_hook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            return
        from appliance.formats.crashdump import DumpKind  # imported at a dump: see the module doc

        dump = self.crash(
            DumpKind.EXCEPTION,
            _exc_reason("the main thread", exc),
            exc=exc,
            crashed=threading.main_thread().ident,
        )
        self.trace(dump.reason)
        self.on_crash(dump)


def died_reason(rc: int) -> str:
    if rc > 128:  # the shell's 128+N for a process killed by signal N
        try:
            name = signal.Signals(rc - 128).name
        except ValueError:
            name = f"signal {rc - 128}"
        return f"runtime died: killed by {name}"
    return f"runtime died: exit status {rc}"


def record_died(dev: BlockDevice, rc: int) -> CrashDump | None:
    """After the runtime process ended (bootcode): write a DIED dump, unless the fault area
    holds a fatal signal's text (the next boot collects that, it says more) or a dump was
    written during the boot that ended (an exception dump, a reboot)."""
    from appliance.formats.crashdump import Condition, CrashDump, DumpKind, read_dump, write_dump

    if read_fault_area(dev) is not None:
        return None
    arm = read_fault_arm(dev)
    reading = read_dump(dev)
    if (
        reading.condition is Condition.VALID
        and reading.dump is not None
        and arm is not None
        and reading.dump.time >= arm.boot_time
    ):
        return None
    dump = CrashDump(
        kind=DumpKind.DIED,
        reason=died_reason(rc),
        time=int(time.time()),
        uptime_ms=0,
        version=arm.version if arm else "",
        build=arm.build if arm else 0,
        bootcode_build=arm.bootcode_build if arm else 0,
    )
    write_dump(dev, dump)
    return dump


def main(argv: Sequence[str]) -> int:
    """`python -m appliance died RC` (the bootcode, in the guest)."""
    if len(argv) != 2 or argv[0] != "died" or not argv[1].lstrip("-").isdigit():
        print("usage: python -m appliance died RC", file=sys.stderr)
        return 2
    from appliance.hal.platform import DiskRole, detect_platform

    platform = detect_platform()
    disks = platform.open_disks()
    dev = disks[DiskRole.DUMP]
    dump = record_died(dev, int(argv[1]))
    if dump is not None:
        print(f"crash dump: {dump.reason}")
    elif read_fault_area(dev) is not None:
        print("crash dump: a fatal signal's stacks are on the dump disk; the next boot reports it")
    else:
        print("crash dump: already written by the runtime")
    return 0
