"""The services the prompt does not need (web admin, counters, update: services/__init__.py)
start after it: their modules are not imported before the prompt, the console answers
while they load, a line that needs one of them brings them up first, and the trace still
says when each is up, under the prompt.

The loader is held at its start (`HeldRuntime`), the way a slow guest holds it in its
imports: everything else is the real runtime on real image files, with a console typed
into through a pipe (test_http_start.TypedBox, whose web admin start is held as well).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_http_start import WAIT_S, TypedBox, until  # noqa: I001  (same directory)

from appliance.boot import BoxRunner, Runtime
from appliance.box import Box
from appliance.formats.crashdump import Condition, CrashDump, DumpKind, read_dump, write_dump
from appliance.hal.block import FileBlockDevice
from appliance.hal.hosted import HostedPlatform
from appliance.hal.vm import VmPlatform
from appliance.service import Service
from appliance.services.http import UP_PREFIX, HttpService
from appliance.services.update.service import UpdateService

REPO = Path(__file__).resolve().parents[2]
# the modules of the services that start after the prompt (services/afterprompt.py)
AFTER_PROMPT_MODULES = (
    "appliance.services.afterprompt",
    "appliance.services.http",
    "appliance.services.counters",
    "appliance.services.update.service",
)

# what the prompt's imports and a boot's steps to the prompt leave out (issue 27: each costs
# the cold boot's prompt its import under emulation); imported when a line or an event
# needs it: a dump read or written (crashdump), an update final typed (update.script), CPU
# aes / cpu-info (hal.aes, and with it hmac), an XML answer of `mod cmd` (html), a forward
# server or MAIL0 /to configured (forward, mail), VMware's perf-counter probe (ctypes)
LAZY_MODULES = (
    "appliance.formats.crashdump",
    "appliance.services.update.script",
    "appliance.hal.aes",
    "hmac",
    "html",
    "appliance.services.alarms.forward",
    "appliance.services.alarms.mail",
    "ctypes",
)
# A hosted box booted in a fresh interpreter up to its prompt, the services after the prompt
# never loaded (as a VM's boot is at its prompt): argv[1] the box's directory, then the
# modules to look for; prints those it loaded, then the boot's trace.
BOOT_TO_PROMPT = """
import io, sys
from pathlib import Path
from appliance.boot import Runtime
from appliance.hal.hosted import HostedPlatform

class AtThePrompt(Runtime):
    def _load_late(self, box, before, runner):
        pass

out = io.BytesIO()
runtime = AtThePrompt(HostedPlatform(Path(sys.argv[1]), stdin=io.BytesIO(), stdout=out),
                      newline=b"\\n", after_prompt=True)
assert runtime.boot()
print(" ".join(m for m in sys.argv[2:] if m in sys.modules))
runtime.close()
print(out.getvalue().decode())
"""


class HeldRuntime(Runtime):
    """The runtime, its after-prompt loader held before its imports until `gate` is set."""

    def __init__(self, platform: HostedPlatform) -> None:
        super().__init__(platform, newline=b"\n", after_prompt=True)
        self.gate = threading.Event()
        self.held = threading.Event()

    def _load_late(self, box: Box, before: list[Service], runner: BoxRunner) -> None:
        self.held.set()
        self.gate.wait()
        super()._load_late(box, before, runner)


def held(typed: TypedBox) -> HeldRuntime:
    assert isinstance(typed.runtime, HeldRuntime)
    return typed.runtime


def box_of(typed: TypedBox) -> Box:
    box = typed.runtime.box
    assert box is not None
    return box


@pytest.fixture
def typed(tmp_path: Path) -> Iterator[TypedBox]:
    box = TypedBox(tmp_path / "box", HeldRuntime)
    yield box
    held(box).gate.set()
    box.end()


def in_fresh_interpreter(code: str, *args: str) -> str:
    """What `code` prints, run with `args` by a new interpreter in the repository."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


LOADED = "print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"  # of the modules named


def test_the_runtime_imports_no_after_prompt_service_before_the_prompt() -> None:
    """What `python -m appliance` imports before it boots (appliance/__main__.py): the
    after-prompt services' modules are not among them, so the prompt never waits for them."""
    code = "import sys; import appliance.hal.platform, appliance.boot; " + LOADED
    assert in_fresh_interpreter(code, *AFTER_PROMPT_MODULES).split() == []


def test_the_prompts_imports_leave_out_what_only_later_lines_need() -> None:
    """What the VM's `python -m appliance` imports before it boots (its platform, hal.vm,
    and the runtime): none of LAZY_MODULES."""
    code = "import sys; import appliance.hal.platform, appliance.hal.vm, appliance.boot; " + LOADED
    assert in_fresh_interpreter(code, *LAZY_MODULES).split() == []


def test_the_config_imports_no_hashlib_of_its_own() -> None:
    """The config's Digest secrets, sealing and backup digest import hashlib and hmac (OpenSSL's
    libcrypto) when used. (The host's construct, which the flash's format needs, still
    imports hashlib at its top; the payload's copy does not: firmware/payload_edits.py.)"""
    code = "import sys, appliance.config; " + LOADED
    assert in_fresh_interpreter(code, "hashlib", "hmac").split() == []


def boot_to_prompt(directory: Path) -> tuple[list[str], str]:
    """BOOT_TO_PROMPT in a fresh interpreter: the LAZY_MODULES it loaded, and its trace."""
    out = in_fresh_interpreter(BOOT_TO_PROMPT, str(directory), *LAZY_MODULES)
    loaded, trace = out.split("\n", 1)
    return loaded.split(), trace


def test_a_boot_to_the_prompt_loads_none_of_them_a_dump_to_report_loads_its_format(
    tmp_path: Path,
) -> None:
    """The boot's steps (a new box: blank dump disk, factory config) load none of
    LAZY_MODULES either; a dump on the dump disk is read and reported as before, with its
    format loaded for it."""
    loaded, trace = boot_to_prompt(tmp_path)
    assert loaded == [], trace
    assert "restart after a crash" not in trace
    dump = CrashDump(DumpKind.EXCEPTION, "unhandled exception in thread x: E: y", 1_700_000_000,
                     5000, "16r1sr1", 1601001, 1601001)  # fmt: skip
    with FileBlockDevice(tmp_path / "dump.img") as dev:
        write_dump(dev, dump)
    loaded, trace = boot_to_prompt(tmp_path)
    assert loaded == ["appliance.formats.crashdump"], trace
    assert f"restart after a crash: {dump.reason} (firmware 16r1sr1)" in trace
    with FileBlockDevice(tmp_path / "dump.img") as dev:
        reading = read_dump(dev)
    assert reading.condition is Condition.VALID and reading.dump is not None
    assert reading.dump.reported
    assert "restart after a crash" not in boot_to_prompt(tmp_path)[1]  # shown once


def test_the_vm_starts_them_after_the_prompt_hosted_starts_every_service_at_boot(
    tmp_path: Path,
) -> None:
    """run() asks the platform: the VM, whose imports take seconds under emulation, draws
    the prompt first; hosted, a script typed at once gets the same transcript every run."""
    assert VmPlatform().prompt_first is True
    assert HostedPlatform(tmp_path).prompt_first is False


def test_the_console_answers_while_the_after_prompt_services_load(typed: TypedBox) -> None:
    until("the prompt", lambda: typed.console.text().endswith("IPVA> "))
    assert held(typed).held.wait(WAIT_S)
    typed.type("config show\n")
    until("the answer", lambda: "IPVA> " in typed.console.text().split("config show\n", 1)[-1])
    box = box_of(typed)
    assert box.service(HttpService) is None and box.service(UpdateService) is None
    assert UP_PREFIX not in typed.console.text()
    held(typed).gate.set()  # the loader goes on: they start by themselves
    typed.platform.gate.set()  # and the web admin's start with them
    until("the update service", lambda: box_of(typed).service(UpdateService) is not None)
    http = box_of(typed).service(HttpService)
    assert http is not None and http.wait_started(WAIT_S)
    text = typed.console.text()
    # the web admin's trace line says when it is up: under the prompt, not before it
    assert text.index("IPVA> ") < text.index(UP_PREFIX)
    assert [type(s).__name__ for s in box_of(typed).services][-3:] == [
        "HttpService", "CountersService", "UpdateService",
    ]  # fmt: skip


def test_a_line_that_needs_an_after_prompt_service_brings_them_up(typed: TypedBox) -> None:
    until("the prompt", lambda: typed.console.text().endswith("IPVA> "))
    assert held(typed).held.wait(WAIT_S)
    typed.type("mod cmd UP1 info\n")
    until("the answer", lambda: typed.console.text().count("IPVA> ") >= 2)
    answer = typed.console.text().split("mod cmd UP1 info\n", 1)[1]
    assert answer.startswith("<info><up1 "), answer
    box = box_of(typed)
    assert box.service(UpdateService) is not None
    typed.type("help mod\n")
    until("help mod", lambda: "mod cmd HTTP0" in typed.console.text())
    held(typed).gate.set()
    # the held loader's job finds them up and starts nothing twice
    typed.type("help mod\n")
    until("the second help mod", lambda: typed.console.text().count("help mod\n") == 2
          and typed.console.text().endswith("IPVA> "))  # fmt: skip
    assert sum(isinstance(s, HttpService) for s in box_of(typed).services) == 1
    assert box_of(typed) is box


GC_THROUGH_THE_BOOT = """
import gc, io, sys, threading
gc.disable()  # as the guest's __main__ does before the boot's imports
from pathlib import Path
from appliance.boot import Runtime
from appliance.hal.hosted import HostedPlatform

class Held(Runtime):
    gate = threading.Event()
    def _load_late(self, box, before, runner):
        self.gate.wait()
        super()._load_late(box, before, runner)

late = sys.argv[2] == "after-prompt"
runtime = Held(HostedPlatform(Path(sys.argv[1]), stdin=io.BytesIO(), stdout=io.BytesIO()),
               newline=b"\\n", after_prompt=late)
assert runtime.boot()
at_prompt = gc.isenabled()
Held.gate.set()
if late:
    runtime._late_loader.join()
    runtime.executor.call(lambda: None)  # the loader's start job has run
print(at_prompt, gc.isenabled())
runtime.close()
"""


@pytest.mark.parametrize(
    ("how", "want"), [("after-prompt", "False True"), ("all-at-boot", "True True")]
)
def test_the_cyclic_gc_held_off_by_main_comes_back_once_every_service_is_up(
    tmp_path: Path, how: str, want: str
) -> None:
    """appliance/__main__.py turns the cyclic GC off before the boot's imports (they make
    tens of thousands of long-lived objects, and its collections cost a cold boot ~0.1 s
    under TCG); the runtime turns it back on once the services after the prompt are up
    (in the VM), or at the end of the boot (hosted, every service at boot)."""
    out = in_fresh_interpreter(GC_THROUGH_THE_BOOT, str(tmp_path / "box"), how)
    assert out.split()[-2:] == want.split()


def test_main_turns_the_gc_off_before_it_imports_the_runtime() -> None:
    main = (REPO / "appliance/__main__.py").read_text()
    assert main.index("gc.disable()") < main.index("from appliance.hal.platform import")
