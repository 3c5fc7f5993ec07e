"""The boot: detect the platform, run it. The same sequence in the VM and hosted.

`boot_box(platform, trace, services)` is flat: every service probes the hardware (CPU,
memory, NICs: appliance/services/__init__.py has the ordered list), the platform opens the
disks and says where it found them, the box is made, then every service starts in order
(flash, identity line, crash report, saved config, clock, addresses). `run()` boots, then
serves the shell on every console of the platform (one thread each) until all consoles
reach end of input. `reset`/`reboot` call `platform.restart(kind)`: the VM reboots for real;
hosted it returns and the runtime restarts in-process (closes the disks, boots again from
them, keeps serving the same consoles).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from appliance.box import Box, close_disks
from appliance.events import Event, RestartRequested, acting
from appliance.hal.platform import Platform, detect_platform
from appliance.hal.types import DiskRole, HaltError
from appliance.service import BoxRestarting, Service
from appliance.services import Mount, boot_services, mount_real_flash
from appliance.services.trace import TraceBuffer
from appliance.shell.interpreter import Shell
from appliance.shell.session import PromptLine, serve_console
from appliance.version import PRODUCT, read_stamp

HALTED = "error: the box has stopped, see the message above; nothing was done"


def boot_box(platform: Platform, buffer: TraceBuffer, services: Sequence[Service]) -> Box:
    """Probe, open the disks, make the box, start the services; a HaltError (missing disk,
    NIC unavailable!, strict perfcounter …) ends this boot with nothing left open."""
    for service in services:
        service.probe(platform, buffer)
    disks = platform.open_disks()
    box: Box | None = None
    try:
        for line in platform.disk_lines():
            buffer(line)
        # FLASHDIR is sized from the box's usable RAM (hal.memory: capped at 3 GiB)
        ram = platform.memory_info().usable
        box = Box(
            platform,
            disks,
            None,
            buffer,
            flash_device=disks[DiskRole.FLASH],
            ram_bytes=ram,
            services=services,
        )
        for service in services:
            service.start(box)
    except BaseException:
        if box is not None:
            box.close()  # stops what started, closes the disks
        else:
            close_disks(disks)
        raise
    return box


# --- the runtime -----------------------------------------------------------------------


class ServiceRunner:
    """The runtime as its services' CommandRunner: a line runs as typed on a console, but
    a service thread never waits through a restart (locked() raises BoxRestarting), so no
    caller has to remember to guard its lines."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def execute(self, line: str) -> str:
        with self._runtime.locked():
            return self._runtime.execute(line)

    def idle_for(self) -> float:
        return self._runtime.idle_for()

    def locked(self) -> AbstractContextManager[None]:
        return self._runtime.locked()


class Runtime:
    """Owns the current box; console sessions talk to it (see shell.session.ConsoleHost).

    `_lock` is the one lock that makes consoles take turns: a command, an overlong-line
    refusal and a restart each hold it, so no console sees a half-restarted box."""

    def __init__(
        self, platform: Platform, *, newline: bytes | None = None, mount: Mount | None = None
    ) -> None:
        self.platform = platform
        self.consoles = platform.consoles()
        self.newline = newline if newline is not None else platform.newline
        # each console's output: the sessions' and the trace's, the prompt kept last
        self.screens = [PromptLine(console, self.newline) for console in self.consoles]
        self.mount = mount or mount_real_flash
        self.box: Box | None = None
        self.shell: Shell | None = None
        self._lock = threading.RLock()  # one command or restart at a time
        # set while a restart or close stops the services: service threads then get
        # BoxRestarting from locked() instead of waiting for the lock (see locked())
        self._restarting = threading.Event()
        self.runner = ServiceRunner(self)  # what the services run their console lines on
        # the in-process re-boot failed (HaltError): the box is stopped, sessions end
        self.halted = False
        # set when the box halted or every console reached end of input: run() returns
        self.stopped = threading.Event()
        self._serving = 0
        self._last_line = time.monotonic()  # idle_for(): the update's ireset waits for it

    def mirror(self, line: str) -> None:
        """A trace line to every console, as the box shows its trace (under a prompt that
        waits for input, which is drawn again: shell.session.PromptLine)."""
        data = line.encode("utf-8", "backslashreplace")  # the consoles show UTF-8 (…)
        for screen in self.screens:
            screen.trace(data)

    def boot(self) -> bool:
        trace = TraceBuffer(self.mirror)  # a new buffer each boot, as the box's RAM
        try:
            self.box = boot_box(self.platform, trace, boot_services(self.mount, runner=self.runner))
        except HaltError as e:  # missing disk, NIC unavailable!, perfcounter (strict) …
            if not e.shown:
                trace(str(e))
            return False
        self.shell = Shell(self.box)
        self.box.events.subscribe(self._on_event)
        return True

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The one lock, for service threads (the HTTP admin, the update scripts). While a
        restart holds it, raises BoxRestarting rather than wait: the restart joins those
        threads, so waiting would hang both. Consoles wait (execute): nothing joins them."""
        while not self._lock.acquire(timeout=0.05):
            if self._restarting.is_set():
                raise BoxRestarting("the box is restarting")
        try:
            yield
        finally:
            self._lock.release()

    def _on_event(self, event: Event) -> None:
        """A reset/reboot requested from elsewhere than a console line (the web UI …) is
        carried out too: a thread waits for the lock (the command that asked finishes
        first) and settles. A console's own request is settled by whichever comes first."""
        if isinstance(event, RestartRequested):
            threading.Thread(target=self.settle, name="restart", daemon=True).start()

    def idle_for(self) -> float:
        return time.monotonic() - self._last_line

    def execute(self, line: str) -> str:
        self._last_line = time.monotonic()
        with self._lock:
            if self.shell is None:  # halted: a line typed on another console meanwhile
                return HALTED
            return self.shell.execute(line)

    def refuse_overlong(self, line: str) -> str:
        with self._lock:
            if self.shell is None:
                return HALTED
            return self.shell.refuse_overlong(line)

    def prompt(self) -> str:
        return self.shell.prompt if self.shell else f"{PRODUCT}> "

    def settle(self) -> bool:
        """Carry out a requested reset/reboot; False once the box has halted (its re-boot
        stopped with a HaltError, already traced): the session then ends."""
        with self._lock:
            if self.halted:
                return False
            if self.box is None or self.box.restart_request is None:
                return True
            # the services stop first (the web admin finishes its answer to a /!reset),
            # then the VM restarts for real and does not come back here; hosted returns
            kind = self.box.restart_request
            self._restarting.set()
            try:
                self.box.close()
                self.box, self.shell = None, None
                self.platform.restart(kind)
                if not self.boot():
                    self.halted = True
                    self.stopped.set()
                    return False
                return True
            finally:
                self._restarting.clear()

    def close(self) -> None:
        """Close the disks; waits for a command still running on another console, and a
        line typed there later gets HALTED rather than a closed box."""
        with self._lock:
            self._restarting.set()  # the web admin's threads end instead of waiting
            if self.box is not None:
                self.box.close()
            self.box, self.shell = None, None

    def serve_consoles(self, *, ctrl_d_ends: bool = False) -> None:
        """Serve the shell on every console, one thread each; return when all of them
        reached end of input or the box halted. Not join(): after a halt the other
        consoles may sit in read() for good (their threads are daemons)."""
        threads = [
            threading.Thread(
                target=self._serve,
                args=(screen, ctrl_d_ends),
                name=f"console-{screen.console.name}",
                daemon=True,  # a console blocked in read must not keep the process alive
            )
            for screen in self.screens
        ]
        self._serving = len(threads)
        if not threads:
            return
        for t in threads:
            t.start()
        self.stopped.wait()

    def _serve(self, screen: PromptLine, ctrl_d_ends: bool) -> None:
        console = screen.console
        try:
            with acting(f"console {console.name}"):  # who typed a line, for the log
                serve_console(
                    console, self, newline=self.newline, ctrl_d_ends=ctrl_d_ends, screen=screen
                )
        finally:  # count it off; the last console to end stops the run
            with self._lock:
                self._serving -= 1
                if self._serving == 0:
                    self.stopped.set()


def run(
    platform: Platform,
    *,
    newline: bytes | None = None,
    ctrl_d_ends: bool | None = None,
    mount: Mount | None = None,
) -> int:
    """Boot and serve every console until all of them reach end of input; exit status.
    newline/ctrl_d_ends: the platform's console discipline unless given."""
    runtime = Runtime(platform, newline=newline, mount=mount)
    ends = platform.ctrl_d_ends if ctrl_d_ends is None else ctrl_d_ends
    with platform.attached():  # hosted on a terminal: raw mode, restored on the way out
        if not runtime.boot():
            platform.halt()  # the VM stops with the message on screen, no reboot loop
            return 1
        runtime.serve_consoles(ctrl_d_ends=ends)
        runtime.close()
    if runtime.halted:
        platform.halt()  # as after a failed first boot: stop with the message shown
        return 1
    return 0


FAIL_AT_START_RC = 3


def main(platform: Platform | None = None) -> int:
    """Entry point in the guest (`IPVA_PLATFORM=vm`) and for `python -m appliance`;
    `platform` as detected there (its clock measured while this module was imported)."""
    stamp = read_stamp()
    if stamp.fail_at_start:
        # test firmware: die before anything is opened, so it never confirms itself and
        # the bootcode has to bring the old firmware back (tests/vm/test_update_vm.py)
        print(f"IPVA {stamp.version}: built with --fail-at-start: exiting before the box is up",
              file=sys.stderr, flush=True)  # fmt: skip
        return FAIL_AT_START_RC
    return run(platform or detect_platform())


if __name__ == "__main__":
    sys.exit(main())
