"""Console line discipline: bytes in, echo and complete lines out.

The same for the serial console, the VGA console and the hosted terminal: CR, LF or CRLF
end a line; backspace/DEL erase; Ctrl-U erases the line; Ctrl-C cancels it; up/down (ANSI
`ESC [ A` / `ESC [ B`, or `ESC O A/B`) walk the history. Bytes that are not text are kept
(echoed as `?`) so the shell can name the offending word instead of silently dropping it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

MAX_LINE = 1024
HISTORY = 50
_MAX_ESCAPE = 16  # an escape sequence longer than this is garbage: drop it

CR, LF, BS, DEL, CTRL_C, CTRL_D, CTRL_U, ESC, TAB = 13, 10, 8, 127, 3, 4, 21, 27, 9


@dataclass(frozen=True)
class Echo:
    """Bytes to echo to the console."""

    data: bytes


@dataclass(frozen=True)
class Line:
    """A complete line, as typed."""

    text: str  # undecodable bytes kept as surrogates (surrogateescape)
    overlong: bool = False  # the line was cut at MAX_LINE characters


@dataclass(frozen=True)
class Cancel:
    """Ctrl-C: the line was dropped."""


@dataclass(frozen=True)
class EndOfInput:
    """Ctrl-D on an empty line, where the console allows it (hosted terminal)."""


Event = Echo | Line | Cancel | EndOfInput


def _shown(c: int) -> int:
    """How a typed byte is echoed: text as it is, anything else as `?`."""
    return c if 0x20 <= c < 0x7F or c == TAB else ord("?")


class LineEditor:
    def __init__(
        self,
        *,
        newline: bytes = b"\r\n",
        max_line: int = MAX_LINE,
        ctrl_d_ends: bool = False,
    ) -> None:
        self.newline = newline
        self.max_line = max_line
        self.ctrl_d_ends = ctrl_d_ends
        self.buf = bytearray()
        self.overlong = False
        self.history: list[bytes] = []
        self._hist_pos: int | None = None  # None: editing a fresh line
        self._draft = b""
        self._after_cr = False
        self._escape: bytearray | None = None

    def feed(self, data: bytes) -> Iterator[Event]:
        for b in data:
            yield from self._byte(b)

    def _byte(self, b: int) -> Iterator[Event]:
        after_cr, self._after_cr = self._after_cr, False
        if self._escape is not None:
            yield from self._escape_byte(b)
            return
        if b == LF and after_cr:
            return  # CRLF is one line end
        if b in (CR, LF):
            self._after_cr = b == CR
            yield Echo(self.newline)
            yield self._finish()
        elif b in (BS, DEL):
            if self.buf:
                del self.buf[-1]
                yield Echo(b"\b \b")
        elif b == CTRL_U:
            erase = b"\b \b" * len(self.buf)
            self._clear()  # first: what shown() says is on screen after the echo
            yield Echo(erase)
        elif b == CTRL_C:
            self._clear()
            yield Echo(b"^C" + self.newline)
            yield Cancel()
        elif b == CTRL_D and self.ctrl_d_ends and not self.buf:
            yield EndOfInput()
        elif b == ESC:
            self._escape = bytearray()
        else:
            yield from self._insert(b)

    def shown(self) -> bytes:
        """The line being typed as its echo shows it (a redraw under a trace line)."""
        return bytes(_shown(c) for c in self.buf)

    def _insert(self, b: int) -> Iterator[Event]:
        if len(self.buf) >= self.max_line:
            self.overlong = True  # keep reading to the line end, then refuse the line
            return
        self.buf.append(b)
        yield Echo(bytes([_shown(b)]))

    def _escape_byte(self, b: int) -> Iterator[Event]:
        assert self._escape is not None
        seq = self._escape
        if not seq:
            if b in b"[O":
                seq.append(b)
                return
            self._escape = None  # ESC + anything else: ignore the ESC, keep the byte
            yield from self._byte(b)
            return
        seq.append(b)
        if 0x40 <= b <= 0x7E:  # final byte of CSI / SS3
            self._escape = None
            if b == ord("A"):
                yield from self._history(-1)
            elif b == ord("B"):
                yield from self._history(+1)
        elif len(seq) > _MAX_ESCAPE or not 0x20 <= b <= 0x3F:
            self._escape = None

    def _history(self, step: int) -> Iterator[Event]:
        if not self.history:
            return
        if self._hist_pos is None:
            if step > 0:
                return
            self._draft = bytes(self.buf)
            pos = len(self.history) - 1
        else:
            pos = self._hist_pos + step
        if pos < 0:
            return
        if pos >= len(self.history):
            self._hist_pos, text = None, self._draft
        else:
            self._hist_pos, text = pos, self.history[pos]
        erase = b"\b \b" * len(self.buf)
        self.buf = bytearray(text)
        self.overlong = False
        shown = bytes(c if 0x20 <= c < 0x7F else ord("?") for c in text)
        yield Echo(erase + shown)

    def _finish(self) -> Line:
        raw = bytes(self.buf)
        line = Line(raw.decode("ascii", "surrogateescape"), self.overlong)
        if raw.strip() and not self.overlong and (not self.history or self.history[-1] != raw):
            self.history.append(raw)
            del self.history[:-HISTORY]
        self._clear()
        return line

    def _clear(self) -> None:
        self.buf.clear()
        self.overlong = False
        self._hist_pos = None
        self._draft = b""
