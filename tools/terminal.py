"""The local terminal as a console: raw mode, keys to the box, Ctrl-] leaves.

Shared by `ipva run` (the VM it started) and `ipva console` (any serial console); what
the box prints reaches the terminal through the caller's console callback.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import tty
from collections.abc import Callable

ESCAPE = b"\x1d"  # Ctrl-], as telnet and virsh console use


def pump_keys(send: Callable[[bytes], None], alive: Callable[[], bool]) -> None:
    """Type the terminal's keys into `send` until Ctrl-], end of input or not `alive()`."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        while alive():
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            chunk = os.read(fd, 1024)
            if not chunk:
                break
            head, escape, _ = chunk.partition(ESCAPE)
            if head:
                send(head)
            if escape:
                break
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def to_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
