"""The runtime when a re-boot stops (B6): sessions end, run() says 1, no disk is left open."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import pytest

from appliance import boot
from appliance.hal.block import BlockDevice, FileBlockDevice
from appliance.hal.hosted import HostedPlatform
from appliance.hal.types import Console, DiskRole, HaltError, StreamConsole
from appliance.services import boot_services
from appliance.trace import TraceBuffer

RUN_TIMEOUT_S = 60.0  # generous: only a hang (the bug) comes near it


class QuietConsole:
    """A second console (the VGA one) nobody types on until the test says so."""

    name = "tty1"

    def __init__(self) -> None:
        self.go = threading.Event()
        self.out = io.BytesIO()
        self.answered = threading.Event()
        self._lines = [b"version\n"]

    def read(self, n: int = 1) -> bytes:
        self.go.wait()
        if self._lines:
            return self._lines.pop()
        threading.Event().wait()  # blocks for good, as a real console without input
        return b""

    def write(self, data: bytes) -> None:
        self.out.write(data)
        if boot.HALTED.encode() in self.out.getvalue():
            self.answered.set()


class SecondBootFails(HostedPlatform):
    """The first boot works; the re-boot after `reset` finds a disk missing."""

    def __init__(self, directory: Path, stdin: io.BytesIO, stdout: io.BytesIO) -> None:
        super().__init__(directory, stdin=stdin, stdout=stdout)
        self.boots = 0
        self.quiet = QuietConsole()
        self.opened: list[FileBlockDevice] = []

    def open_disks(self) -> dict[DiskRole, BlockDevice]:
        self.boots += 1
        if self.boots == 2:
            raise HaltError("disk missing: flash disk (IDE 1:0): power off and attach it")
        disks = super().open_disks()
        self.opened += [d for d in disks.values() if isinstance(d, FileBlockDevice)]
        return disks

    def consoles(self) -> list[Console]:
        return [StreamConsole("stdio", self.stdin, self.stdout), self.quiet]


def test_failed_reboot_ends_the_run_with_1_and_other_consoles_are_told(tmp_path: Path) -> None:
    out = io.BytesIO()
    platform = SecondBootFails(tmp_path, io.BytesIO(b"reset\nversion\n"), out)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(boot.run(platform, newline=b"\n")))
    runner.daemon = True
    runner.start()
    runner.join(RUN_TIMEOUT_S)
    assert result == [1], "run() must return 1 once the box halted, not wait for tty1"
    t = out.getvalue().decode()
    assert "0:0000:030:4 - disk missing: flash disk (IDE 1:0)" in t
    assert "IPVA> version" not in t  # the halted session ended: no prompt, no more commands
    assert all(d._fd == -1 for d in platform.opened)  # the first boot's disks were closed
    # a line typed on the other console afterwards gets one error line, not an exception
    platform.quiet.go.set()
    assert platform.quiet.answered.wait(RUN_TIMEOUT_S)
    assert platform.quiet.out.getvalue().endswith(boot.HALTED.encode() + b"\n")  # no prompt


def test_settle_after_halt_is_false_and_commands_are_refused(tmp_path: Path) -> None:
    platform = SecondBootFails(tmp_path, io.BytesIO(), io.BytesIO())
    runtime = boot.Runtime(platform, newline=b"\n")
    assert runtime.boot() and runtime.settle()  # nothing requested: carry on
    assert runtime.execute("reset").startswith("reset: restarting")
    assert runtime.settle() is False
    assert runtime.halted and runtime.stopped.is_set()
    assert runtime.settle() is False
    assert runtime.execute("version") == boot.HALTED
    assert runtime.refuse_overlong("x" * 2000) == boot.HALTED


def test_refuse_overlong_runs_on_the_owner_thread(tmp_path: Path) -> None:
    runtime = boot.Runtime(HostedPlatform(tmp_path, stdin=io.BytesIO(), stdout=io.BytesIO()))
    assert runtime.boot()
    seen: list[bool] = []

    class Probe:
        def refuse_overlong(self, line: str) -> str:
            seen.append(runtime.executor.in_owner())
            return "refused"

    runtime.shell = Probe()  # type: ignore[assignment]
    assert runtime.refuse_overlong("x") == "refused"
    assert seen == [True]
    runtime.close()


def test_boot_box_closes_its_disks_when_a_later_step_halts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[FileBlockDevice] = []

    class Tracking(HostedPlatform):
        def open_disks(self) -> dict[DiskRole, BlockDevice]:
            disks = super().open_disks()
            opened.extend(d for d in disks.values() if isinstance(d, FileBlockDevice))
            return disks

        def start_clock(self, policy: Any, trace: Any) -> None:  # as the strict policy
            raise HaltError("perfcounter-not enabled!!!")

    platform = Tracking(tmp_path, stdin=io.BytesIO(), stdout=io.BytesIO())
    with pytest.raises(HaltError, match="perfcounter-not enabled!!!"):
        boot.boot_box(platform, TraceBuffer(), boot_services())
    assert len(opened) == 4 and all(d._fd == -1 for d in opened)
