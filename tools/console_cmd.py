"""`ipva console URL`: attach to a box's serial console (pyserial), for support staff.

  ipva console socket://host:port     QEMU `-serial tcp:…,server`, a Proxmox `serial0: socket`
                                      relay (socat), VMware's network serial port
  ipva console rfc2217://host:port    a terminal server speaking RFC 2217
  ipva console /dev/ttyUSB0           a local serial device (--baud, 115200 8N1 by default)
  ipva console --vm                   the box `ipva run --dist DIST` started (its relay)

Interactive on a terminal (raw mode, Ctrl-] leaves). `--send FILE` types FILE's commands
instead, one per line (blank lines and `#` comments skipped): it waits for the prompt before
each and after the last, prints the transcript and exits 1 if the box answered `error:`.
`--log FILE` appends everything received, unchanged.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TextIO

import click
import serial

from hypervisors.qemu.console import ConsoleReader
from hypervisors.qemu.relay import state_file
from hypervisors.qemu.timeouts import BOOT_TIMEOUT
from tools.terminal import pump_keys, to_stdout

PROMPT = re.compile(r"\n[^\n]*> $")  # the box's prompt ("IPVA> ", "name> ") waiting for input
ERROR = re.compile(r"^error: ", re.MULTILINE)


class ConsoleTimeout(click.ClickException):
    exit_code = 2


def _url(url: str | None, vm: bool, dist: Path) -> str:
    if vm == (url is not None):
        raise click.UsageError("give a URL (socket://host:port, rfc2217://…, a device) or --vm")
    if url is not None:
        return url
    recorded = state_file(dist)
    try:
        return recorded.read_text().strip()
    except FileNotFoundError:
        raise click.ClickException(
            f"no box started by `ipva run --dist {dist}` is running: start one with ipva run"
        ) from None


def _connect(url: str, baud: int, log: Path | None) -> ConsoleReader:
    reader = ConsoleReader(url, log)
    try:
        reader.connect(0, baudrate=baud)  # one try: a refused console is an answer
    except (serial.SerialException, OSError, ValueError, NotImplementedError) as exc:
        raise click.ClickException(f"cannot open {url}: {exc}") from exc
    return reader


@click.command("console")
@click.argument("url", required=False)
@click.option("--vm", is_flag=True, help="The box `ipva run` started.")
@click.option(
    "--dist",
    type=click.Path(path_type=Path),
    default=Path("dist"),
    show_default=True,
    help="Where `ipva run` ran (for --vm).",
)
@click.option("--baud", type=int, default=115200, show_default=True, help="Local devices only.")
@click.option(
    "--log", "log", type=click.Path(dir_okay=False, path_type=Path), help="Append output here."
)
@click.option(
    "--send",
    "script",
    type=click.File("r"),
    help="Type these commands (one per line), print the transcript.",
)
@click.option(
    "--timeout",
    type=float,
    default=BOOT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each prompt (--send; a reset's boot included).",
)
def console(
    url: str | None,
    vm: bool,
    dist: Path,
    baud: int,
    log: Path | None,
    script: TextIO | None,
    timeout: float,
) -> None:
    """Attach to a box's serial console."""
    reader = _connect(_url(url, vm, dist), baud, log)
    try:
        if script is not None:
            failed = send_script(reader, script, timeout, sys.stdout)
            sys.exit(1 if failed else 0)
        interact(reader)
    finally:
        reader.close()


SETTLE = 0.3  # quiet seconds after a prompt: a prompt asked for twice arrives twice


def _wait_prompt(reader: ConsoleReader, since: int, timeout: float, what: str) -> None:
    """Until the text after `since` ends in a prompt and nothing more arrives."""
    deadline = time.monotonic() + timeout
    while True:
        text = reader.text
        if PROMPT.search(text, since) and not reader.wait_for_more(len(text), SETTLE):
            return
        if reader.closed:
            raise click.ClickException(f"the console closed while waiting for {what}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise ConsoleTimeout(f"no prompt {timeout:g}s after {what}")
        reader.wait_for_more(len(text), min(left, 1.0))


def send_script(reader: ConsoleReader, script: TextIO, timeout: float, out: TextIO) -> bool:
    """Type each command at a prompt; print the transcript; True if any answer was an error."""
    start = len(reader.text)
    reader.write(b"\r")  # the box printed its prompt before we came: ask for a fresh one
    failed = False
    try:
        _wait_prompt(reader, start, timeout, "connecting")
        for raw in script:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            since = len(reader.text)
            reader.write(line.encode() + b"\r")
            _wait_prompt(reader, since, timeout, repr(line))
            if ERROR.search(reader.text, since):
                failed = True
    finally:
        out.write(reader.text[start:])
        out.write("\n")
        out.flush()
    return failed


def interact(reader: ConsoleReader) -> None:
    if not sys.stdin.isatty():
        raise click.UsageError("stdin is not a terminal; use --send FILE for scripts")
    reader.on_data.append(to_stdout)
    click.echo(f"[ipva console: {reader.url}; Ctrl-] leaves]\r", err=True)
    pump_keys(reader.write, lambda: not reader.closed)
    click.echo("\n[ipva console: closed]" if reader.closed else "\n[ipva console: left]", err=True)
