"""One console session: read bytes, edit lines, run them, write the answers and the prompt.

A session outlives restarts of the box: after a `reset` it carries on with the new box, so
a console (and its reader thread) is never read by two owners at once.

The trace reaches every console as it is written (Runtime.mirror), also while a session
waits at its prompt (the web admin comes up after the prompt, log targets, the update
poller): such a line goes on a line of its own under the prompt, and the prompt with what
was typed so far is drawn again below it (`PromptLine`), so the prompt stays the last
thing on the screen, as network gear's synchronous logging does.
"""

from __future__ import annotations

import threading
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


class PromptLine:
    """One console's output, from the session and from the trace, one write at a time.

    While the session waits for input the console's last line is the prompt and what was
    typed (`shown`); a trace line then goes under it and the line is drawn again. While a
    command runs (or before the first prompt) a trace line is just written."""

    def __init__(self, console: Console, newline: bytes = b"\r\n") -> None:
        self.console = console
        self.newline = newline
        self._lock = threading.Lock()
        self._shown: bytes | None = None  # the prompt line as on screen; None: no prompt

    def write(self, data: bytes, shown: bytes | None = None) -> None:
        """Session output; `shown`: the prompt line on screen after it (None: none, a
        command runs or the session has ended)."""
        with self._lock:
            self.console.write(data)
            self._shown = shown

    def trace(self, line: bytes) -> None:
        """One trace line (without its line end)."""
        with self._lock:
            if self._shown is None:
                self.console.write(line + self.newline)
            else:  # one write: a reader never sees the prompt half drawn
                self.console.write(self.newline + line + self.newline + self._shown)


def serve_console(
    console: Console,
    host: ConsoleHost,
    *,
    newline: bytes = b"\r\n",
    ctrl_d_ends: bool = False,
    screen: PromptLine | None = None,
) -> None:
    """Serve the shell on `console` until its input ends; `screen` is the console's
    PromptLine the trace is mirrored to (a private one if None)."""
    editor = LineEditor(newline=newline, ctrl_d_ends=ctrl_d_ends)
    out = screen or PromptLine(console, newline)

    nl = newline.decode("ascii")

    def say(text: str) -> None:
        if text:
            out.write(text.replace("\n", nl).encode("utf-8", "backslashreplace") + newline)

    def prompt() -> None:
        shown = host.prompt().encode("ascii", "replace")
        out.write(shown, shown)

    prompt()
    try:
        while True:
            data = console.read(1)
            if not data:
                out.write(newline)  # end the transcript's last prompt line
                return
            for event in editor.feed(data):
                if isinstance(event, Echo):
                    # a line end echoed: the line is done, its command runs next
                    done = event.data.endswith(newline)
                    line = host.prompt().encode("ascii", "replace") + editor.shown()
                    out.write(event.data, None if done else line)
                elif isinstance(event, EndOfInput):
                    out.write(newline)
                    return
                elif isinstance(event, Cancel):
                    prompt()
                elif isinstance(event, Line):
                    if event.overlong:
                        say(host.refuse_overlong(event.text))
                    else:
                        say(host.execute(event.text))
                    if not host.settle():  # the re-boot stopped (message traced): no prompt
                        return
                    prompt()
    finally:
        out.write(b"")  # no prompt any more: later trace lines are just written
