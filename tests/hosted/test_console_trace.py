"""A trace line that comes while a console waits at its prompt goes under the prompt, and
the prompt with what was typed is drawn again (shell.session.PromptLine); one that comes
while a command runs is just written. The real runtime, hosted, typed into through a pipe.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from httpbox import _Sink

from appliance.boot import Runtime
from appliance.hal.hosted import HostedPlatform

WAIT_S = 20


def until(what: str, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        time.sleep(0.02)


class Served:
    def __init__(self, directory: Path) -> None:
        self.console = _Sink()
        read, self.write = os.pipe()
        platform = HostedPlatform(
            directory,
            stdin=io.FileIO(read, "rb"),
            stdout=self.console,  # type: ignore[arg-type]
        )
        self.runtime = Runtime(platform, newline=b"\n")
        assert self.runtime.boot(), self.console.text()
        self.thread = threading.Thread(target=self.runtime.serve_consoles, daemon=True)
        self.thread.start()

    def type(self, text: str) -> None:
        os.write(self.write, text.encode())

    def trace(self, text: str) -> None:
        assert self.runtime.box is not None
        self.runtime.box.trace(text)

    def text(self) -> str:
        return self.console.text()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    os.close(s.write)
    s.thread.join(WAIT_S)
    s.runtime.close()


def test_a_trace_line_at_the_prompt_goes_under_it_and_the_prompt_comes_again(
    served: Served,
) -> None:
    until("the prompt", lambda: served.text().endswith("IPVA> "))
    served.trace("first line")
    until("the redraw", lambda: served.text().endswith("0:0000:030:4 - first line\nIPVA> "))
    assert served.text().endswith("\nIPVA> \n0:0000:030:4 - first line\nIPVA> ")
    served.type("vers\x7fs")  # typed, one erased: "vers"
    until("the echo", lambda: served.text().endswith("IPVA> vers\b \bs"))
    served.trace("second line")
    until("the redraw", lambda: served.text().endswith("IPVA> vers\b \bs\n0:0000:030:4 - "
                                                       "second line\nIPVA> vers"))  # fmt: skip
    served.type("ion\n")  # the line typed before the trace line came goes on
    until("the answer", lambda: served.text().rstrip().endswith("IPVA>")
          and "\n16r1sr1" in served.text())  # fmt: skip
    served.type("abc\x15")  # Ctrl-U: the line is gone, and so from the redraw
    until("the erase", lambda: served.text().endswith("abc\b \b\b \b\b \b"))
    served.trace("third line")
    until("the redraw", lambda: served.text().endswith("third line\nIPVA> "))


def test_a_trace_line_while_a_command_runs_is_just_written(served: Served) -> None:
    until("the prompt", lambda: served.text().endswith("IPVA> "))
    box = served.runtime.box
    assert box is not None
    with served.runtime.hold():  # the command below waits for the owner thread: it "runs"
        served.type("version\n")
        until("the echo", lambda: served.text().endswith("IPVA> version\n"))
        served.trace("meanwhile")
        until("the line", lambda: "meanwhile" in served.text())
    until("the answer", lambda: served.text().endswith("IPVA> "))
    text = served.text()
    assert "IPVA> version\n0:0000:030:4 - meanwhile\n16r1sr1" in text, text
