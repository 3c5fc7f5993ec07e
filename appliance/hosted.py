"""The hosted runtime: the same boot and shell on image files in a directory on the host.

`ipva run --hosted [--dir DIR]` calls `run_hosted(DIR, stdin, stdout)`. The disks are
`boot.img`, `cf.img`, `flash.img`, `dump.img` in DIR (created blank if missing), so a second
run starts with what `config write` saved, as a `reset` does in a VM.

stdin a terminal: raw mode, the console line discipline as on the serial console; Ctrl-D on
an empty line ends. stdin not a terminal (a pipe, a file): each line is a console command,
the transcript (echo, output, boot trace) goes to stdout, end of input ends it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from appliance import boot
from appliance.hal.platform import HostedPlatform


def _isatty(stream: BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _raw_terminal(stream: BinaryIO) -> Iterator[None]:
    """Raw mode so the line discipline sees every key; always restored."""
    import termios
    import tty

    fd = stream.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_hosted(
    directory: Path,
    stdin: BinaryIO,
    stdout: BinaryIO,
    *,
    memory: int = 256 << 20,
    mount: boot.Mount | None = None,
) -> int:
    """Boot on the image files in `directory`, serve the console on stdin/stdout; exit status."""
    platform = HostedPlatform(Path(directory), memory=memory, stdin=stdin, stdout=stdout)
    if _isatty(stdin) and os.name == "posix":
        with _raw_terminal(stdin):
            return boot.run(platform, newline=b"\r\n", ctrl_d_ends=True, mount=mount)
    return boot.run(platform, newline=b"\n", mount=mount)
