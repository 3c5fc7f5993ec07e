"""The web admin starts off the boot's path: the prompt comes first, the web admin's lines
follow under it (the prompt drawn again), and a reset, a close or an HTTP0 activate while
it starts are clean.

The start is held where it first asks the platform where to listen (`HeldPlatform`), the
way a slow guest holds it in its imports: everything else is the real runtime on real
image files, with a console typed into through a pipe.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from httpbox import _Sink, request

from appliance.boot import Runtime
from appliance.hal.hosted import HostedPlatform
from appliance.services.http import UP_PREFIX, HttpService

WAIT_S = 20
UP_LINE = re.compile(r"0:0000:051:4 - HTTP0: web admin on [^\n]*\n")


@dataclass
class HeldPlatform(HostedPlatform):
    """Hosted, with the web admin's start held at its first step until `gate` is set."""

    gate: threading.Event = field(default_factory=threading.Event)
    held: threading.Event = field(default_factory=threading.Event)  # the start is waiting

    def http_listen(self, port: int, https: bool) -> tuple[str, int] | None:
        if threading.current_thread().name == "http-start":
            self.held.set()
            self.gate.wait()
        return super().http_listen(port, https)


class TypedBox:
    """The runtime serving its console (stdin a pipe the test types into) in a thread."""

    def __init__(
        self,
        directory: Path,
        runtime: Callable[[HostedPlatform], Runtime] = lambda p: Runtime(p, newline=b"\n"),
    ) -> None:
        self.console = _Sink()
        read, self._write = os.pipe()
        self.platform = HeldPlatform(
            directory,
            stdin=io.FileIO(read, "rb"),
            stdout=self.console,  # type: ignore[arg-type]
            http=("127.0.0.1", 0),
            https=("127.0.0.1", 0),
        )
        self.runtime = runtime(self.platform)
        assert self.runtime.boot(), self.console.text()
        self.serving = threading.Thread(target=self.runtime.serve_consoles, daemon=True)
        self.serving.start()

    def type(self, text: str) -> None:
        os.write(self._write, text.encode())

    def service(self) -> HttpService:
        box = self.runtime.box
        assert box is not None
        service = box.service(HttpService)
        assert service is not None
        return service

    def end(self) -> None:
        self.platform.gate.set()
        os.close(self._write)  # end of input: the session ends, serve_consoles returns
        self.serving.join(WAIT_S)
        self.runtime.close()


def until(what: str, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        time.sleep(0.02)


def web_threads() -> list[threading.Thread]:
    """The listeners' serving threads (Listener names them http-<port>)."""
    return [t for t in threading.enumerate() if re.fullmatch(r"http-\d+", t.name)]


@pytest.fixture
def typed(tmp_path: Path) -> Iterator[TypedBox]:
    box = TypedBox(tmp_path / "box")
    yield box
    box.end()


def test_the_prompt_comes_first_and_the_web_admin_lines_go_under_it(typed: TypedBox) -> None:
    until("the prompt", lambda: typed.console.text().endswith("IPVA> "))
    assert typed.platform.held.wait(WAIT_S)
    assert "HTTP0:" not in typed.console.text()  # held: the prompt did not wait for it
    typed.type("version\n")  # the console works meanwhile
    until("the version", lambda: re.search(r"version\n16r1sr1.*\nIPVA> $", typed.console.text(),
                                           re.S))  # fmt: skip
    typed.type("vers")  # half typed when the web admin's lines come
    until("the echo", lambda: typed.console.text().endswith("IPVA> vers"))
    typed.platform.gate.set()
    assert typed.service().wait_started(WAIT_S)
    until("the redrawn prompt", lambda: typed.console.text().endswith("IPVA> vers"))
    text = typed.console.text()
    lines = text[text.index("IPVA> vers\n") :].split("\n")
    # each line under the prompt it came to, then the prompt and the typed text again
    assert lines[0::2] == ["IPVA> vers"] * 4, lines
    cert, warning, up = lines[1::2]
    assert cert.startswith("0:0000:051:4 - HTTPS: new self-signed certificate made")
    assert "HTTP0: the admin password is the factory default" in warning  # then "up"
    assert up.startswith("0:0000:051:4 - " + UP_PREFIX), lines
    assert "(https, TLS 1.2/1.3)" in up and "(http)" in up
    assert request(typed.service().urls()["http"], "GET", "/general/info").status == 200
    typed.type("ion\n")  # the typed text was kept: the line is `version`
    until("the second version", lambda: typed.console.text().count("\n16r1sr1") == 2)


def test_a_reset_while_the_web_admin_starts_leaves_nothing_bound(typed: TypedBox) -> None:
    assert typed.platform.held.wait(WAIT_S)
    old = typed.service()
    assert web_threads() == []
    typed.type("reset\n")
    # the reset stops the service; its start, held at its current step, gives up after it
    threading.Timer(0.5, typed.platform.gate.set).start()
    until("the new box", lambda: typed.runtime.box is not None
          and typed.runtime.box.service(HttpService) is not old)  # fmt: skip
    assert typed.service().wait_started(WAIT_S)
    assert old.wait_started(0) and old.listeners is None
    text = typed.console.text()
    assert len(UP_LINE.findall(text)) == 1, text  # the new box's only
    assert text.index("reset: restarting") < UP_LINE.search(text).start()  # type: ignore[union-attr]
    until("two listeners, the new box's", lambda: len(web_threads()) == 2)
    assert request(typed.service().urls()["http"], "GET", "/general/info").status == 200


def test_a_close_while_the_web_admin_starts_neither_hangs_nor_binds(tmp_path: Path) -> None:
    box = TypedBox(tmp_path / "box")
    assert box.platform.held.wait(WAIT_S)
    service = box.service()
    threading.Timer(0.5, box.platform.gate.set).start()
    closing = threading.Thread(target=box.runtime.close)
    closing.start()
    closing.join(WAIT_S)
    assert not closing.is_alive(), "the close hung behind the web admin's start"
    assert service.wait_started(0) and service.listeners is None
    assert web_threads() == [] and "web admin on" not in box.console.text()
    box.end()


def test_an_http0_activate_while_it_starts_is_applied_once_it_is_up(typed: TypedBox) -> None:
    assert typed.platform.held.wait(WAIT_S)
    typed.type("config change HTTP0 /port 0\nconfig activate\n")
    until("the activate", lambda: "activated: HTTP0 /port" in typed.console.text())
    typed.platform.gate.set()
    service = typed.service()
    assert service.wait_started(WAIT_S)
    until("plain HTTP off", lambda: set(service.urls()) == {"https"})
    ups = UP_LINE.findall(typed.console.text())
    assert len(ups) == 2 and "(http)" in ups[0] and "(http)" not in ups[1], ups
    until("one listener", lambda: len(web_threads()) == 1)
