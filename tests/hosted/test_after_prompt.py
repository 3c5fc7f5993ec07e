"""The services the prompt does not need (web admin, counters, update: services/__init__.py)
start after it: their modules are not imported before the prompt, the console answers
while they load, a line that needs one of them brings them up first, and the trace still
says when each is up, under the prompt.

The loader is held at its start (`HeldRuntime`), the way a slow guest holds it in its
imports: everything else is the real runtime on real image files, with a console typed
into through a pipe.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from httpbox import _Sink

from appliance.boot import BoxRunner, Runtime
from appliance.box import Box
from appliance.hal.hosted import HostedPlatform
from appliance.service import Service
from appliance.services.http import UP_PREFIX, HttpService
from appliance.services.update.service import UpdateService

WAIT_S = 20
REPO = Path(__file__).resolve().parents[2]
# the modules of the services that start after the prompt (services/afterprompt.py)
AFTER_PROMPT_MODULES = (
    "appliance.services.afterprompt",
    "appliance.services.http",
    "appliance.services.counters",
    "appliance.services.update.service",
)


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


class TypedBox:
    """The held runtime serving its console (stdin a pipe the test types into)."""

    def __init__(self, directory: Path) -> None:
        self.console = _Sink()
        read, self._write = os.pipe()
        self.platform = HostedPlatform(
            directory,
            stdin=io.FileIO(read, "rb"),
            stdout=self.console,  # type: ignore[arg-type]
            http=("127.0.0.1", 0),
        )
        self.runtime = HeldRuntime(self.platform)
        assert self.runtime.boot(), self.console.text()
        self.serving = threading.Thread(target=self.runtime.serve_consoles, daemon=True)
        self.serving.start()

    def type(self, text: str) -> None:
        os.write(self._write, text.encode())

    def box(self) -> Box:
        box = self.runtime.box
        assert box is not None
        return box

    def end(self) -> None:
        self.runtime.gate.set()
        os.close(self._write)  # end of input: the session ends, serve_consoles returns
        self.serving.join(WAIT_S)
        self.runtime.close()


def until(what: str, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        time.sleep(0.02)


@pytest.fixture
def typed(tmp_path: Path) -> Iterator[TypedBox]:
    box = TypedBox(tmp_path / "box")
    yield box
    box.end()


def test_the_runtime_imports_no_after_prompt_service_before_the_prompt() -> None:
    """What `python -m appliance` imports before it boots (appliance/__main__.py): the
    after-prompt services' modules are not among them, so the prompt never waits for them."""
    code = (
        "import sys; import appliance.hal.platform, appliance.boot; "
        "print(' '.join(m for m in sys.argv[1:] if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *AFTER_PROMPT_MODULES],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.split() == []


def test_the_console_answers_while_the_after_prompt_services_load(typed: TypedBox) -> None:
    until("the prompt", lambda: typed.console.text().endswith("IPVA> "))
    assert typed.runtime.held.wait(WAIT_S)
    typed.type("config show\n")
    until("the answer", lambda: "IPVA> " in typed.console.text().split("config show\n", 1)[-1])
    box = typed.box()
    assert box.service(HttpService) is None and box.service(UpdateService) is None
    assert UP_PREFIX not in typed.console.text()
    typed.runtime.gate.set()  # the loader goes on: they start by themselves
    until("the update service", lambda: typed.box().service(UpdateService) is not None)
    http = typed.box().service(HttpService)
    assert http is not None and http.wait_started(WAIT_S)
    text = typed.console.text()
    # the web admin's trace line says when it is up: under the prompt, not before it
    assert text.index("IPVA> ") < text.index(UP_PREFIX)
    assert [type(s).__name__ for s in typed.box().services][-3:] == [
        "HttpService", "CountersService", "UpdateService",
    ]  # fmt: skip


def test_a_line_that_needs_an_after_prompt_service_brings_them_up(typed: TypedBox) -> None:
    until("the prompt", lambda: typed.console.text().endswith("IPVA> "))
    assert typed.runtime.held.wait(WAIT_S)
    typed.type("mod cmd UP1 info\n")
    until("the answer", lambda: typed.console.text().count("IPVA> ") >= 2)
    answer = typed.console.text().split("mod cmd UP1 info\n", 1)[1]
    assert answer.startswith("<info><up1 "), answer
    box = typed.box()
    assert box.service(UpdateService) is not None
    typed.type("help mod\n")
    until("help mod", lambda: "mod cmd HTTP0" in typed.console.text())
    typed.runtime.gate.set()
    # the held loader's job finds them up and starts nothing twice
    typed.type("help mod\n")
    until("the second help mod", lambda: typed.console.text().count("help mod\n") == 2
          and typed.console.text().endswith("IPVA> "))  # fmt: skip
    assert sum(isinstance(s, HttpService) for s in typed.box().services) == 1
    assert typed.box() is box
