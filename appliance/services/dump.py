"""The crash-dump service (DUMP): the dump disk (IDE 1:1) at boot and while the box runs.

At start: a fatal signal of the previous run (faulthandler's text in the fault area)
becomes a dump; a dump not yet reported is shown once in the boot trace
(`restart after a crash: <reason> (firmware <version>)`), announced as a Crashed event
(the logging service sends it) and marked reported; a torn or corrupt one is named as
such. Then it arms appliance.services.crashwatch for this run: an unhandled exception in
any thread writes a dump and restarts the box as after a trap; `reboot` writes a dump
(kind reboot) before the box restarts.

    mod cmd DUMP show         the dump as /crash_dump.txt shows it
    mod cmd DUMP clear        erase it
    mod cmd DUMP trap thread  raise an exception in a new service thread (support staff
    mod cmd DUMP trap signal  check the dump path end to end: the box restarts with a dump)

Kernel panics are not caught (DumpKind.PANIC stays unused), and why: Debian bookworm's
kernel (linux-image-6.1.0-*-amd64, its /boot/config-*) has CONFIG_PSTORE=y,
CONFIG_PSTORE_BLK=m, CONFIG_PSTORE_ZONE=m, CONFIG_PSTORE_RAM=m (ramoops),
CONFIG_PSTORE_BLK_MAX_REASON=2 (panic and oops), CONFIG_PANIC_TIMEOUT=0 (we boot with
panic=10), and lacks CONFIG_PSTORE_CONSOLE, _PMSG, _FTRACE and CONFIG_MTD_PSTORE. But
pstore/blk in 6.1 drives an ordinary disk only in its `best_effort` mode
(`pstore_blk.blkdev=/dev/sdX1 best_effort=y`): that registers a read and a write through
the normal block I/O path and no panic_write ("attached … (no dedicated panic_write!)"),
and no in-tree ATA/SCSI driver offers one; in a panic pstore/zone's psz_zone_write() then
finds no write op and only marks the zone dirty, so a panic (`echo c >
/proc/sysrq-trigger` calls panic()) never reaches the disk — only an oops the kernel
survives would. pstore/blk also takes a whole block device (no offset), so it would need a
partition of its own on the dump disk, whose sector 0 is the crash record. The way that
would work is ramoops (pstore/ram): a RAM region reserved on the kernel command line
(`memmap=1M$<addr>` plus ramoops.mem_address/mem_size), written synchronously at panic and
read from /sys/fs/pstore after the reboot; it depends on the hypervisor keeping guest RAM
over the warm reset panic=10 does (QEMU does; VMware and Hyper-V are not checked), so it
is left for an issue of its own.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.events import Crashed, Event, RestartRequested, Traced
from appliance.formats.dumpdisk import TRACE_TAIL, may_hold_dump
from appliance.hal.block import BlockDevice, FileBlockDevice
from appliance.hal.types import DiskRole, RestartKind
from appliance.modcmd import Command, ModCmdError
from appliance.service import BaseService
from appliance.services.crashwatch import CrashWatch, DumpContext

if TYPE_CHECKING:
    from appliance.box import Box
    from appliance.formats.crashdump import CrashDump

REBOOT_REASON = "watchdog trap (reboot command)"
NO_DUMP_DISK = "DUMP: no crash dump disk on this platform"


class TrapError(RuntimeError):
    """Raised on purpose by `mod cmd DUMP trap thread`."""


def dump_context(box: Box) -> DumpContext:
    def memory() -> tuple[int, int]:
        info = box.platform.memory_info()
        return info.usable, info.total

    return DumpContext(
        version=box.version,
        build=box.build,
        bootcode_build=box.bootcode_build,
        hw=box.hw,
        booted_at=box.booted_at,
        trace_tail=lambda: box.trace.lines(TRACE_TAIL),
        saved_config=lambda: ("\n".join(box.saved.lines()), len(box.saved.objects)),
        memory=memory,
    )


class CrashDumpService(BaseService):
    name = "crash-dump"

    def __init__(self) -> None:
        self.dev: BlockDevice | None = None
        self.watch: CrashWatch | None = None
        self._box: Box | None = None
        self._crashed = False  # this run wrote an exception dump; the restart keeps it
        self._unsubscribe: list[Callable[[], None]] = []

    def start(self, box: Box) -> None:
        dev = box.disks.get(DiskRole.DUMP)
        if dev is None:
            return
        self.dev, self._box = dev, box
        path = str(dev.path) if isinstance(dev, FileBlockDevice) else None
        self.watch = CrashWatch(
            dev, dump_context(box), device_path=path, on_crash=self._restart, trace=box.trace
        )
        try:
            self.watch.collect_fault()
            self._report(box, dev)
        except (OSError, ValueError) as e:  # an unreadable dump disk must not stop the boot
            box.trace(f"crash dump: {e}")
        try:
            self.watch.arm()
            self.watch.trace_changed()  # the boot's lines so far
        except (OSError, ValueError) as e:
            box.trace(f"crash dump: not armed: {e}")
        self._unsubscribe.append(box.events.subscribe(self._on_event))

    def _report(self, box: Box, dev: BlockDevice) -> None:
        if not may_hold_dump(dev):  # the usual boot: the dump's format is not even loaded
            return
        # imported here, when there is a dump, as in crashwatch (not before the prompt)
        from appliance.formats.crashdump import Condition, mark_reported, read_dump

        reading = read_dump(dev)
        if reading.condition is Condition.VALID and reading.dump is not None:
            if reading.dump.reported:
                return
            d = reading.dump
            box.trace(f"restart after a crash: {d.reason} (firmware {d.version})")
            box.events.emit(Crashed(d.reason))
            mark_reported(dev, reading)
        elif reading.condition in (Condition.TORN, Condition.CORRUPT):
            box.trace(
                f"crash dump: {reading.condition.value}: {reading.problem} (mod cmd DUMP show)"
            )

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Traced) and self.watch is not None:
            self.watch.trace_changed()
        if isinstance(event, RestartRequested) and event.kind is RestartKind.REBOOT:
            if self.watch is not None and not self._crashed:
                from appliance.formats.crashdump import DumpKind  # a dump: see _report

                self.watch.crash(DumpKind.REBOOT, REBOOT_REASON)

    def _restart(self, dump: CrashDump) -> None:
        """After an exception dump: restart as after a trap. The request goes the way of a
        `reboot` (the runtime carries it out), without overwriting the exception's dump."""
        if self._box is not None:
            self._crashed = True
            # the crash hook runs in the thread that crashed: the request is a job
            self._box.owner.post(self._box.request_reboot)

    def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        if self.watch is not None:
            self.watch.disarm()

    # -- mod cmd DUMP -----------------------------------------------------------------------
    def _dev(self) -> BlockDevice:
        if self.dev is None:
            raise ModCmdError(NO_DUMP_DISK)
        return self.dev

    def show(self, box: Box, args: list[str]) -> str:
        from appliance.formats.crashdump import format_dump, read_dump  # see _report

        return format_dump(read_dump(self._dev())).rstrip("\n")

    def clear(self, box: Box, args: list[str]) -> str:
        from appliance.formats.crashdump import clear_dump  # see _report

        try:
            clear_dump(self._dev())
        except (OSError, ValueError) as e:
            raise ModCmdError(f"DUMP clear failed: {e}") from e
        return "crash dump cleared"

    def trap(self, box: Box, args: list[str]) -> str:
        self._dev()
        if args == ["thread"]:

            def trapped_service() -> None:
                raise TrapError("mod cmd DUMP trap thread")

            threading.Thread(target=trapped_service, name="dump-trap", daemon=True).start()
            return "exception raised in thread dump-trap: the box writes a dump and restarts"
        if args == ["signal"]:
            if self.watch is not None:
                self.watch.flush_trace()  # the lines up to now, as a real fault would find
            os.kill(os.getpid(), signal.SIGSEGV)  # faulthandler writes; the bootcode reboots
            return "SIGSEGV sent"
        raise ModCmdError("mod cmd DUMP trap thread|signal (the box restarts with a dump)")

    def commands(self) -> list[Command]:
        return [
            Command("DUMP", "show", "the last crash dump (as /crash_dump.txt)", self.show),
            Command("DUMP", "clear", "erase the crash dump", self.clear),
            Command(
                "DUMP", "trap", "thread|signal: crash on purpose, to check the dump path", self.trap
            ),
        ]
