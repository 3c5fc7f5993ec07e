"""`AdminBox` on the running box: what the HTTP admin may see and do, from the runtime.

The runtime replaces its Box at every in-process `reset` (hosted); this adapter always
talks to the current one, and every call that reads or changes the box holds the runtime's
lock, as a console command does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from appliance.box import Box, BoxError, PartialRestoreError
from appliance.config import Config, RestoreError, activate
from appliance.hal.memory import MiB
from appliance.hal.platform import DiskRole
from appliance.services.crashdump import read_crash_record
from appliance.services.http.host import Account, Address, BoxStatus, RestoreRefused, Vars

TRACE_TAG = 30  # the boot trace's module tag, until the trace service declares one for HTTP


class Runner(Protocol):
    """The part of appliance.boot.Runtime the adapter uses."""

    @property
    def box(self) -> Box | None: ...

    def execute(self, line: str) -> str: ...

    def settle(self) -> bool: ...

    def locked(self) -> AbstractContextManager[object]: ...

    def trace(self, text: str, tag: int = ...) -> None: ...


class RuntimeAdmin:
    def __init__(self, runtime: Runner, trace_text: Callable[[], str] = lambda: "") -> None:
        self.runtime = runtime
        self._trace_text = trace_text

    def _box(self) -> Box:
        box = self.runtime.box
        if box is None:
            raise BoxError("the box is restarting")
        return box

    # -- reading ------------------------------------------------------------------------
    def status(self) -> BoxStatus:
        with self.runtime.locked():
            box = self._box()
            pending = activate(box.saved, box.active).pending
            flash = (
                box.flash.flashman.info()
                if box.flash is not None
                else "no flash: the flash disk (IDE 1:0) is not mounted, see the boot trace"
            )
            return BoxStatus(
                version=box.version_line(),
                name=box.name,
                hw=box.hw,
                uptime_s=int(time.monotonic() - box.booted_at),
                dram_mb=box.ram_bytes // MiB,
                addresses=tuple(_addresses(box)),
                flash=flash,
                reset_required=tuple(pending),
                unwritten=box.unwritten(),
                factory_password=not box.active.value("ADMIN0", "pwd"),
            )

    def running(self) -> Config:
        with self.runtime.locked():
            return self._box().running

    def account(self) -> Account:
        with self.runtime.locked():
            active = self._box().active
            return Account(str(active.value("ADMIN0", "user")), str(active.value("ADMIN0", "pwd")))

    def backup_text(self) -> str:
        with self.runtime.locked():
            return self._box().backup_text()

    def trace_text(self) -> str:
        return self._trace_text()

    def crash_dump_text(self) -> str:
        with self.runtime.locked():
            dump = self._box().disks.get(DiskRole.DUMP)
            record = read_crash_record(dump) if dump is not None else None
        if record is None:
            return "no crash record: the box has not crashed since the dump disk was cleared"
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.time))
        return (
            f"crash at {when}, uptime {record.uptime_ms / 1000:.1f} s\n"
            f"firmware {record.version} build {record.build}\n"
            f"reason: {record.reason}\n"
        )

    def vars(self) -> Vars | None:
        box = self.runtime.box
        return box.flash.vars if box is not None and box.flash is not None else None

    # -- acting -------------------------------------------------------------------------
    def execute(self, line: str) -> str:
        return self.runtime.execute(line)

    def restart_requested(self) -> bool:
        box = self.runtime.box
        return box is not None and box.restart_request is not None

    def settle(self) -> None:
        self.runtime.settle()

    def restore_text(self, text: str) -> str:
        with self.runtime.locked():
            try:
                self._box().restore_text(text)
            except RestoreError as e:
                raise RestoreRefused(str(e), e.line) from e
            except PartialRestoreError as e:
                raise RestoreRefused(str(e), e.line, partial=True) from e
            except BoxError as e:
                raise RestoreRefused(str(e)) from e
        return "config restored: it is the saved configuration now; reset to run it"

    def trace(self, text: str) -> None:
        self.runtime.trace(text, TRACE_TAG)


def _addresses(box: Box) -> list[Address]:
    """ETH0/ETH1 as the kernel has them (VM); hosted: none, there is no NIC."""
    network = getattr(box, "network", None)  # set by boot.start_network on today's Box
    if network is None:
        return []
    from appliance.hal.nics import read_ipv4, read_link_state

    out = []
    for port in network.ports:
        ip = read_ipv4(port.ifname)
        out.append(
            Address(
                port.name,
                f"{ip[0]}/{ip[1]}" if ip else "",
                network.modes.get(port.name, "off"),
                read_link_state(port.ifname).mac,
            )
        )
    return out
