"""The boot sequence, the same in the VM and hosted, and the runtime that restarts it.

`boot_box()` is a flat list of steps: trace the CPU and memory, open the disks, mount the
flash, report a crash record, load the saved config, bring up the network (if the platform
has one). `run()` boots, then serves the shell on every console of the platform (one thread
each) until all consoles reach end of input. `reset`/`reboot` call `platform.restart(kind)`
if the platform has it (the VM reboots for real), else restart in-process: close the disks,
boot again from them, keep serving the same consoles.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable
from typing import Any

from appliance.box import Box, close_disks
from appliance.hal import memory
from appliance.hal.block import BlockDevice
from appliance.hal.platform import Console, DiskRole, HaltError, Platform, detect_platform
from appliance.services.crashdump import read_crash_record, write_crash_record
from appliance.shell.interpreter import Shell
from appliance.shell.session import serve_console
from appliance.version import PRODUCT

# mount function: (flash disk, ram bytes, trace) -> Flash; tests may pass their own
Mount = Callable[[BlockDevice, int, Callable[[str], None]], Any]

TRACE_BOOT = 30  # module tag of the boot trace lines (`0:0000:030:4 - …`)
TRACE_FLASH = 81  # as FLASHDIR's lines on the box (`0:0000:081:4 - start flashdir …`)
HALTED = "error: the box has stopped, see the message above; nothing was done"


def format_trace(text: str, tag: int = TRACE_BOOT) -> str:
    return f"0:0000:{tag:03d}:4 - {text}"


def mount_real_flash(dev: BlockDevice, ram_bytes: int, trace: Callable[[str], None]) -> Any:
    from appliance.flash import mount_flash

    return mount_flash(dev, ram_bytes=ram_bytes, trace=trace)


# --- the steps -------------------------------------------------------------------------


def trace_platform(platform: Platform, trace: Callable[[str], None]) -> memory.MemoryInfo:
    """CPU brand, `mem(…)`, DRAM, the 3 GiB cap and vCPU warnings; too little RAM stops.

    Returns the memory figures: the flash is sized from the same numbers the trace shows."""
    trace(platform.cpu_brand())
    info = platform.memory_info()
    for line in memory.trace_lines(info):
        trace(line)
    memory.check_enough(info)
    cpu = getattr(platform, "cpu", None)
    if cpu is not None:
        from appliance.hal.cpu import trace_lines

        for line in trace_lines(cpu()):
            trace(line)
    return info


def find_nics(platform: Platform, trace: Callable[..., None]) -> Any | None:
    """ETH0/ETH1 by PCI id on platforms with NICs (the VM); `NIC unavailable!` stops."""
    if not hasattr(platform, "ports"):
        return None
    from appliance.services.network import Network

    network = Network(platform)  # type: ignore[arg-type]
    network.find(trace)
    return network


def trace_disks(platform: Platform, trace: Callable[..., None]) -> None:
    for line in getattr(platform, "disk_lines", list)():
        trace(line)


def mount_flash_disk(
    dev: BlockDevice, ram_bytes: int, trace: Callable[..., None], mount: Mount
) -> Any | None:
    """The flash, or None: the box still boots (factory config, `config write` refused)
    and keeps the device, so `mod cmd FLASHMAN0 reset all` can format it."""
    try:
        return mount(dev, ram_bytes, lambda s: trace(s, TRACE_FLASH))
    except ImportError as e:
        trace(f"flash: FLASHMAN could not be loaded ({e}); config write is off", TRACE_FLASH)
    except Exception as e:  # FlashError, WrongDiskError …: say it, boot on without flash
        trace(f"flash: {e}; config write is off until the flash disk is fixed", TRACE_FLASH)
    return None


def report_crash(box: Box) -> None:
    """A `reboot` (or a crash) left a record on the dump disk: show it once, keep it."""
    dump = box.disks.get(DiskRole.DUMP)
    record = read_crash_record(dump) if dump is not None else None
    if record is None or record.reported:
        return
    box.trace(f"restart after a crash: {record.reason} (firmware {record.version})")
    write_crash_record(dump, dataclasses.replace(record, reported=True))


def load_config(box: Box) -> None:
    box.load_saved()
    n = len(box.saved.objects)
    box.trace(f"config: {n} saved object{'s' if n != 1 else ''} loaded")


def start_timekeeping(box: Box) -> None:
    """The VM keeps time from the platform's perf counter (hal.timekeeping); the policy
    for a missing one is TIME0 /perfcounter. Hosted runs on the host's clock."""
    cpu = getattr(box.platform, "cpu", None)
    if cpu is None:
        return
    from appliance.hal.timekeeping import Policy
    from appliance.hal.timekeeping import start_timekeeping as start

    policy = Policy(str(box.active.value("TIME0", "perfcounter")))
    box.timekeeping = start(policy, cpu().flags, box.trace)  # type: ignore[attr-defined]


def start_network(box: Box, network: Any | None) -> None:
    """Platforms with a NIC (the VM) configure it from the active config; hosted has none."""
    box.network = network  # type: ignore[attr-defined]  # for mod cmd ETH0/ETH1
    if network is not None:
        network.configure(box)


def boot_box(platform: Platform, trace: Callable[..., None], mount: Mount) -> Box:
    from appliance.services import hardware as _hardware  # noqa: F401 - registers mod cmds

    info = trace_platform(platform, trace)
    network = find_nics(platform, trace)
    disks = platform.open_disks()
    try:
        trace_disks(platform, trace)
        # FLASHDIR is sized from the box's usable RAM (hal.memory: capped at 3 GiB)
        ram = info.usable
        flash = mount_flash_disk(disks[DiskRole.FLASH], ram, trace, mount)
        box = Box(platform, disks, flash, trace, flash_device=disks[DiskRole.FLASH], ram_bytes=ram)
        trace(f"{PRODUCT} {box.version_line()}")
        report_crash(box)
        load_config(box)
        start_timekeeping(box)
        start_network(box, network)
    except BaseException:  # a HaltError (strict perfcounter …) ends this boot: free the disks
        close_disks(disks)
        raise
    return box


# --- the runtime -----------------------------------------------------------------------


class Runtime:
    """Owns the current box; console sessions talk to it (see shell.session.ConsoleHost).

    `_lock` is the one lock that makes consoles take turns: a command, an overlong-line
    refusal and a restart each hold it, so no console sees a half-restarted box."""

    def __init__(self, platform: Platform, *, newline: bytes = b"\r\n", mount: Mount | None = None):
        self.platform = platform
        self.consoles = platform.consoles()
        self.newline = newline
        self.mount = mount or mount_real_flash
        self.box: Box | None = None
        self.shell: Shell | None = None
        self._lock = threading.RLock()  # one command or restart at a time
        # the in-process re-boot failed (HaltError): the box is stopped, sessions end
        self.halted = False
        # set when the box halted or every console reached end of input: run() returns
        self.stopped = threading.Event()
        self._serving = 0

    def trace(self, text: str, tag: int = TRACE_BOOT) -> None:
        data = (format_trace(text, tag)).encode("ascii", "backslashreplace") + self.newline
        for console in self.consoles:
            console.write(data)

    def boot(self) -> bool:
        try:
            self.box = boot_box(self.platform, self.trace, self.mount)
        except HaltError as e:  # missing disk, NIC unavailable!, perfcounter (strict) …
            if not e.shown:
                self.trace(str(e))
            return False
        self.shell = Shell(self.box)
        return True

    def locked(self) -> threading.RLock:
        """The one lock, for callers besides the consoles (the HTTP admin)."""
        return self._lock

    def execute(self, line: str) -> str:
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
            kind = self.box.restart_request
            restart = getattr(self.platform, "restart", None)
            if restart is not None:
                restart(kind)  # the VM restarts for real and does not come back here
            self.box.close()
            self.box, self.shell = None, None
            if not self.boot():
                self.halted = True
                self.stopped.set()
                return False
            return True

    def close(self) -> None:
        """Close the disks; waits for a command still running on another console, and a
        line typed there later gets HALTED rather than a closed box."""
        with self._lock:
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
                args=(console, ctrl_d_ends),
                name=f"console-{console.name}",
                daemon=True,  # a console blocked in read must not keep the process alive
            )
            for console in self.consoles
        ]
        self._serving = len(threads)
        if not threads:
            return
        for t in threads:
            t.start()
        self.stopped.wait()

    def _serve(self, console: Console, ctrl_d_ends: bool) -> None:
        try:
            serve_console(console, self, newline=self.newline, ctrl_d_ends=ctrl_d_ends)
        finally:  # count it off; the last console to end stops the run
            with self._lock:
                self._serving -= 1
                if self._serving == 0:
                    self.stopped.set()


def run(
    platform: Platform,
    *,
    newline: bytes = b"\r\n",
    ctrl_d_ends: bool = False,
    mount: Mount | None = None,
) -> int:
    """Boot and serve every console until all of them reach end of input; exit status."""
    runtime = Runtime(platform, newline=newline, mount=mount)
    if not runtime.boot():
        halt = getattr(platform, "halt", None)
        if halt is not None:  # the VM stops with the message on screen, no reboot loop
            halt()
        return 1
    runtime.serve_consoles(ctrl_d_ends=ctrl_d_ends)
    runtime.close()
    if runtime.halted:
        halt = getattr(platform, "halt", None)
        if halt is not None:  # as after a failed first boot: stop with the message shown
            halt()
        return 1
    return 0


def main() -> int:
    """Entry point in the guest (`IPVA_PLATFORM=vm`) and for `python -m appliance`."""
    platform = detect_platform()
    if platform.name == "hosted":  # terminal handling (raw mode, transcript) lives there
        from appliance.hosted import run_hosted

        directory = platform.directory  # type: ignore[attr-defined]
        return run_hosted(directory, sys.stdin.buffer, sys.stdout.buffer)
    return run(platform)


if __name__ == "__main__":
    sys.exit(main())
