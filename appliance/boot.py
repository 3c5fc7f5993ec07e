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

from appliance.box import Box
from appliance.hal import memory
from appliance.hal.block import BlockDevice
from appliance.hal.platform import DiskRole, HaltError, Platform, detect_platform
from appliance.services.crashdump import read_crash_record, write_crash_record
from appliance.shell.interpreter import Shell
from appliance.shell.session import serve_console
from appliance.version import PRODUCT

# mount function: (flash disk, ram bytes, trace) -> Flash; tests may pass their own
Mount = Callable[[BlockDevice, int, Callable[[str], None]], Any]

TRACE_BOOT = 30  # module tag of the boot trace lines (`0:0000:030:4 - …`)
TRACE_FLASH = 81  # as FLASHDIR's lines on the box (`0:0000:081:4 - start flashdir …`)


def format_trace(text: str, tag: int = TRACE_BOOT) -> str:
    return f"0:0000:{tag:03d}:4 - {text}"


def mount_real_flash(dev: BlockDevice, ram_bytes: int, trace: Callable[[str], None]) -> Any:
    from appliance.flash import mount_flash

    return mount_flash(dev, ram_bytes=ram_bytes, trace=trace)


# --- the steps -------------------------------------------------------------------------


def trace_platform(platform: Platform, trace: Callable[[str], None]) -> None:
    """CPU brand, `mem(…)`, DRAM, the 3 GiB cap and vCPU warnings; too little RAM stops."""
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
    disks: dict[DiskRole, BlockDevice], platform: Platform, trace: Callable[..., None], mount: Mount
) -> Any | None:
    """The flash, or None: the box still boots (factory config, `config write` refused)."""
    try:
        # FLASHDIR is sized from the box's usable RAM (hal.memory: capped at 3 GiB)
        return mount(
            disks[DiskRole.FLASH], platform.memory_info().usable, lambda s: trace(s, TRACE_FLASH)
        )
    except ImportError as e:
        trace(f"flash: FLASHMAN could not be loaded ({e}); config write is off")
    except Exception as e:  # FlashError, WrongDiskError …: say it, boot on without flash
        trace(f"flash: {e}; config write is off until the flash disk is fixed")
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

    trace_platform(platform, trace)
    network = find_nics(platform, trace)
    disks = platform.open_disks()
    trace_disks(platform, trace)
    flash = mount_flash_disk(disks, platform, trace, mount)
    box = Box(platform, disks, flash, trace)
    trace(f"{PRODUCT} {box.version_line()}")
    report_crash(box)
    load_config(box)
    start_timekeeping(box)
    start_network(box, network)
    return box


# --- the runtime -----------------------------------------------------------------------


class Runtime:
    """Owns the current box; console sessions talk to it (see shell.session.ConsoleHost)."""

    def __init__(self, platform: Platform, *, newline: bytes = b"\r\n", mount: Mount | None = None):
        self.platform = platform
        self.consoles = platform.consoles()
        self.newline = newline
        self.mount = mount or mount_real_flash
        self.box: Box | None = None
        self.shell: Shell | None = None
        self._lock = threading.RLock()  # one command or restart at a time

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

    def execute(self, line: str) -> str:
        with self._lock:
            assert self.shell is not None
            return self.shell.execute(line)

    def refuse_overlong(self, line: str) -> str:
        assert self.shell is not None
        return self.shell.refuse_overlong(line)

    def prompt(self) -> str:
        return self.shell.prompt if self.shell else f"{PRODUCT}> "

    def settle(self) -> None:
        with self._lock:
            if self.box is None or self.box.restart_request is None:
                return
            kind = self.box.restart_request
            restart = getattr(self.platform, "restart", None)
            if restart is not None:
                restart(kind)  # the VM restarts for real and does not come back here
            self.box.close()
            self.box, self.shell = None, None
            if not self.boot():
                raise SystemExit(1)


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
    threads = [
        threading.Thread(
            target=serve_console,
            args=(console, runtime),
            kwargs={"newline": newline, "ctrl_d_ends": ctrl_d_ends},
            name=f"console-{console.name}",
            daemon=True,  # a console blocked in read must not keep the process alive
        )
        for console in runtime.consoles
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if runtime.box is not None:
        runtime.box.close()
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
