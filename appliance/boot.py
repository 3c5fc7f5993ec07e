"""The boot: detect the platform, run it. The same sequence in the VM and hosted.

`boot_box(platform, trace, services)` is flat: every service probes the hardware (CPU,
memory, NICs: appliance/services/__init__.py has the ordered list), the platform opens the
disks and says where it found them, the box is made, then every service starts in order
(flash, identity line, crash report, saved config, clock, addresses). `run()` boots, then
serves the shell on every console of the platform (one thread each) until all consoles
reach end of input; in the VM (`platform.prompt_first`) its boots start the services the
prompt does not need (web admin, counters, update) after the prompt, their modules
imported meanwhile on a thread (services/__init__.py): a cold boot's prompt does not wait
for those imports.
`reset`/`reboot` call `platform.restart(kind)`: the VM reboots for real; hosted it returns
and the runtime restarts in-process (closes the disks, boots again from them, keeps
serving the same consoles).
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from appliance.box import Box, close_disks
from appliance.events import acting
from appliance.hal.platform import Platform, detect_platform
from appliance.hal.types import DiskRole, HaltError, RestartKind
from appliance.owner import STOP_JOIN_S, BoxOwner, BoxRestarting, LoopExecutor
from appliance.service import Service
from appliance.services import Mount, after_prompt_services, mount_real_flash, prompt_services
from appliance.shell.interpreter import Shell
from appliance.shell.session import PromptLine, serve_console
from appliance.trace import TraceBuffer
from appliance.version import PRODUCT, read_stamp

HALTED = "error: the box has stopped, see the message above; nothing was done"


def boot_box(
    platform: Platform,
    buffer: TraceBuffer,
    services: Sequence[Service],
    owner: BoxOwner | None = None,
) -> Box:
    """Probe, open the disks, make the box, start the services; a HaltError (missing disk,
    NIC unavailable!, strict perfcounter …) ends this boot with nothing left open. Runs
    on the owner's thread (`owner`: the runtime's; None: the calling thread's)."""
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
            owner=owner,
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


class BoxRunner:
    """The runtime as one box's CommandRunner: a line runs as typed on a console, as a job
    of that box's owner, so once the box goes down a service thread gets BoxRestarting
    instead of waiting through the restart (the restart joins it)."""

    def __init__(self, runtime: Runtime, owner: BoxOwner) -> None:
        self._runtime = runtime
        self._owner = owner

    def execute(self, line: str) -> str:
        self._runtime.touch()
        return self._owner.call(lambda: self._runtime.run_line(line))

    def idle_for(self) -> float:
        return self._runtime.idle_for()


class Runtime:
    """Owns the current box and the one thread that runs every job on it (appliance/
    owner.py): the boot, each console line, each restart, and what the services hand over.
    Console sessions talk to it (shell.session.ConsoleHost); a line typed on a console
    waits through a restart and runs on the new box.

    A restart is carried out on the owner thread right after the job that asked for it
    (`reset` typed, `/!reset`, an update's final), so the next job already sees the new
    box. A reset abandons a firmware download under way (nothing is written), but waits
    while an install writes its slot, record and state (box.protected): the install's end
    is a job too, and the reset follows it. A reboot does not wait: it is a forced trap
    (the slot write is still finished by the update service's stop)."""

    def __init__(
        self,
        platform: Platform,
        *,
        newline: bytes | None = None,
        mount: Mount | None = None,
        after_prompt: bool = False,
    ) -> None:
        """`after_prompt`: the services that need not be up for the prompt (services/
        __init__.py) start after it, their modules imported on a thread meanwhile (run():
        a cold boot's prompt sooner); else each boot() starts every service."""
        self.platform = platform
        self.consoles = platform.consoles()
        self.newline = newline if newline is not None else platform.newline
        # each console's output: the sessions' and the trace's, the prompt kept last
        self.screens = [PromptLine(console, self.newline) for console in self.consoles]
        self.mount = mount or mount_real_flash
        self.box: Box | None = None
        self.shell: Shell | None = None
        self.executor = LoopExecutor(after_job=self._after_job)
        self.executor.start()
        # the in-process re-boot failed (HaltError): the box is stopped, sessions end
        self.halted = False
        # set when the box halted or every console reached end of input: run() returns
        self.stopped = threading.Event()
        self._serving = 0
        self._serving_lock = threading.Lock()  # the count of consoles still served
        self._last_line = time.monotonic()  # idle_for(): the update's ireset waits for it
        self._waiting_said: str | None = None  # the deferred reset's trace line, said once
        self.after_prompt = after_prompt
        # this boot's services that start after the prompt: None until they have (or are
        # being) started on the current box; the thread importing their modules
        self._late: list[Service] | None = None
        self._late_loader: threading.Thread | None = None

    def mirror(self, line: str) -> None:
        """A trace line to every console, as the box shows its trace (under a prompt that
        waits for input, which is drawn again: shell.session.PromptLine)."""
        data = line.encode("utf-8", "backslashreplace")  # the consoles show UTF-8 (…)
        for screen in self.screens:
            screen.trace(data)

    def boot(self) -> bool:
        """Boot the box (a job on the owner thread); False: it halted (message traced)."""
        return self.executor.call(self._boot)

    def _boot(self) -> bool:
        trace = TraceBuffer(self.mirror)  # a new buffer each boot, as the box's RAM
        owner = BoxOwner(self.executor)
        runner = BoxRunner(self, owner)
        services = prompt_services(self.mount)
        self._late = None
        try:
            self.box = boot_box(self.platform, trace, services, owner)
        except HaltError as e:  # missing disk, NIC unavailable!, perfcounter (strict) …
            if not e.shown:
                trace(str(e))
            return False
        box = self.box
        self.shell = Shell(box, services_up=lambda: self._start_late(box, services, runner))
        if not self.after_prompt:
            try:
                self._start_late(box, services, runner)
            except BaseException:  # as boot_box: nothing left open
                box.close()
                self.box, self.shell = None, None
                raise
            return True
        # the modules of the services after the prompt are imported on a thread (the
        # console is served meanwhile), then they start as a job of this box; a console
        # line that needs one of them starts them itself (Shell.services_up)
        self._late_loader = threading.Thread(
            target=self._load_late,
            args=(box, services, runner),
            name="after-prompt-imports",
            daemon=True,  # it only imports: nothing to clean up if the process ends
        )
        self._late_loader.start()
        return True

    def _load_late(self, box: Box, before: list[Service], runner: BoxRunner) -> None:
        # the import is the slow part: off the owner thread, so lines typed meanwhile run
        import appliance.services.afterprompt  # noqa: F401

        box.owner.post(lambda: self._start_late(box, before, runner))

    def _start_late(self, box: Box, before: list[Service], runner: BoxRunner) -> None:
        """On the owner thread: start the services after the prompt on `box`, once (the
        loader's job, a console line that needs them, or the boot itself)."""
        if box is not self.box or self._late is not None:
            return  # a box restarted meanwhile, or started already
        self._late = after_prompt_services(before, runner)
        try:
            box.start_services(self._late)
        finally:
            # every service is up (or failed): the cyclic GC back on, if the guest's
            # __main__ held it off for the boot's imports (it leaves it on elsewhere)
            if not gc.isenabled():
                gc.enable()

    def _after_job(self) -> None:
        """On the owner thread after every job: carry out a restart it asked for."""
        box = self.box
        if box is None or box.restart_request is None:
            return
        if box.restart_request is RestartKind.RESET and box.protected:
            if self._waiting_said != box.exclusive:
                self._waiting_said = box.exclusive
                box.trace(f"reset: waits for the {box.exclusive} under way to finish")
            return
        self._restart(box, box.restart_request)

    def _restart(self, box: Box, kind: RestartKind) -> None:
        # the services stop first (the web admin finishes its answer to a /!reset), then
        # the VM restarts for real and does not come back here; hosted returns
        self._waiting_said = None
        box.close()
        self.box, self.shell = None, None
        self.platform.restart(kind)
        if not self._boot():
            self.halted = True
            self.stopped.set()

    def touch(self) -> None:
        """A line from a console, the web admin or a script: the box is not idle."""
        self._last_line = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self._last_line

    def run_line(self, line: str) -> str:
        """On the owner thread: one line through the current box's shell."""
        if self.shell is None:  # halted: a line typed on another console meanwhile
            return HALTED
        return self.shell.execute(line)

    def _call(self, fn: Callable[[], str]) -> str:
        try:
            return self.executor.call(fn)
        except BoxRestarting:  # the runtime has closed: the box is gone for good
            return HALTED

    def execute(self, line: str) -> str:
        """A console line (never raises): a job, waiting through a restart if one runs."""
        self.touch()
        return self._call(lambda: self.run_line(line))

    def refuse_overlong(self, line: str) -> str:
        return self._call(lambda: self.shell.refuse_overlong(line) if self.shell else HALTED)

    def prompt(self) -> str:
        shell = self.shell
        return shell.prompt if shell else f"{PRODUCT}> "

    def settle(self) -> bool:
        """Before the next prompt: False once the box has halted (its re-boot stopped
        with a HaltError, already traced): the session then ends. A restart asked for by
        the line before is done by now (it ran right after that line, on the owner)."""
        try:
            return self.executor.call(lambda: not self.halted)
        except BoxRestarting:
            return False

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the owner thread busy for the block (tests: a command typed meanwhile
        waits, as behind a long one)."""
        entered, release = threading.Event(), threading.Event()

        def job() -> None:
            entered.set()
            release.wait()

        done = self.executor.submit(job)
        entered.wait()
        try:
            yield
        finally:
            release.set()
            done.result()

    def close(self) -> None:
        """Stop the box (services, then disks) and the owner thread; a command still
        running finishes first, a line typed later gets HALTED."""

        def close_box() -> None:
            if self.box is not None:
                self.box.close()
            self.box, self.shell = None, None

        try:
            self.executor.call(close_box)
        except BoxRestarting:
            pass  # closed before
        if self._late_loader is not None:  # its job, if still to come, is refused now
            self._late_loader.join(STOP_JOIN_S)
        if not self.executor.stop():
            print("ipva: the box's owner thread did not stop", file=sys.stderr)

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
            with self._serving_lock:
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
    runtime = Runtime(platform, newline=newline, mount=mount, after_prompt=platform.prompt_first)
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
