"""One console session: read bytes, edit lines, run them, write the answers and the prompt.

A session outlives restarts of the box: after a `reset` it carries on with the new box, so
a console (and its reader thread) is never read by two owners at once.
"""

from __future__ import annotations

from typing import Protocol

from appliance.hal.types import Console
from appliance.shell.line import Cancel, Echo, EndOfInput, Line, LineEditor


class ConsoleHost(Protocol):
    """What a session needs from the runtime (appliance.boot.Runtime)."""

    def execute(self, line: str) -> str: ...  # never raises

    def refuse_overlong(self, line: str) -> str: ...

    def prompt(self) -> str: ...

    # carry out a requested reset/reboot before the next prompt; False: the box halted
    def settle(self) -> bool: ...


def serve_console(
    console: Console, host: ConsoleHost, *, newline: bytes = b"\r\n", ctrl_d_ends: bool = False
) -> None:
    """Serve the shell on `console` until its input ends."""
    editor = LineEditor(newline=newline, ctrl_d_ends=ctrl_d_ends)

    nl = newline.decode("ascii")

    def say(text: str) -> None:
        if text:
            console.write(text.replace("\n", nl).encode("ascii", "backslashreplace") + newline)

    console.write(host.prompt().encode("ascii", "replace"))
    while True:
        data = console.read(1)
        if not data:
            console.write(newline)  # end the transcript's last prompt line
            return
        for event in editor.feed(data):
            if isinstance(event, Echo):
                console.write(event.data)
            elif isinstance(event, EndOfInput):
                console.write(newline)
                return
            elif isinstance(event, Cancel):
                console.write(host.prompt().encode("ascii", "replace"))
            elif isinstance(event, Line):
                if event.overlong:
                    say(host.refuse_overlong(event.text))
                else:
                    say(host.execute(event.text))
                if not host.settle():  # the re-boot stopped (message traced): no prompt
                    return
                console.write(host.prompt().encode("ascii", "replace"))
