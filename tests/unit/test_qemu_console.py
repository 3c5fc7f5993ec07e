"""The serial console reader (pyserial socket://) and Machine's console matching."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from hypervisors.qemu.console import ConsoleReader
from hypervisors.qemu.errors import GuestHalted, MachineDied, WaitTimeout
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import get_profile


def test_reader_drains_to_log_text_and_sinks_and_loses_nothing_at_close(
    tmp_path: Path,
) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received: list[bytes] = []

    def qemu_side() -> None:
        conn, _ = server.accept()
        # pyserial's socket:// open() discards what is already buffered; QEMU is paused (-S)
        # until we are connected, so only talk after the reader has written
        received.append(conn.recv(100))
        conn.sendall(b"SYSLINUX\r\nboot: \xc3\xa4")
        received.append(conn.recv(100))
        conn.sendall(b"\r\nlast words\r\n")
        conn.close()  # right after the data: the reader must still get it

    thread = threading.Thread(target=qemu_side, daemon=True)
    thread.start()
    reader = ConsoleReader(f"socket://127.0.0.1:{port}", tmp_path / "console.log")
    sunk: list[bytes] = []
    reader.on_data.append(sunk.append)
    reader.connect(timeout=5)
    reader.write(b"go")
    deadline = time.monotonic() + 5
    while "boot: " not in reader.text and time.monotonic() < deadline:
        reader.wait_for_more(len(reader.text), 0.2)
    reader.write(b"x\r")
    deadline = time.monotonic() + 5
    while not reader.closed and time.monotonic() < deadline:
        reader.wait_for_more(len(reader.text), 0.2)
    reader.close()
    thread.join(5)
    assert received == [b"go", b"x\r"]
    assert reader.closed
    assert reader.text == "SYSLINUX\nboot: ä\nlast words\n"
    raw = b"SYSLINUX\r\nboot: \xc3\xa4\r\nlast words\r\n"
    assert (tmp_path / "console.log").read_bytes() == raw
    assert b"".join(sunk) == raw


def test_reader_connect_gives_up_after_timeout(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
        reader = ConsoleReader(f"socket://127.0.0.1:{port}", tmp_path / "c.log")
        with pytest.raises(Exception, match="Could not open port"):
            reader.connect(timeout=0.2)


class ScriptedConsole(ConsoleReader):
    """A console whose guest answers each line with `replies[line]` and a prompt."""

    def __init__(self, path: Path, replies: dict[str, str]) -> None:
        super().__init__("socket://unused:1", path)
        self.replies = replies

    def write(self, data: bytes) -> None:
        line = data.decode().rstrip("\r")
        self._feed(f"{line}\r\n{self.replies.get(line, '')}ipva> ".encode())


class FakeLauncher:
    def __init__(self, console: ConsoleReader) -> None:
        self.console = console
        self.running = True
        self.returncode: int | None = None

    def is_running(self) -> bool:
        return self.running

    def kill(self) -> None:
        self.running = False


def fake_machine(tmp_path: Path, replies: dict[str, str] | None = None) -> Machine:
    machine = Machine(get_profile("vmware"), [], tmp_path)
    machine.launcher = FakeLauncher(ScriptedConsole(tmp_path / "c.log", replies or {}))  # type: ignore[assignment]
    return machine


def test_waits_consume_output_in_order(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path)
    console = machine.launcher.console  # type: ignore[union-attr]
    console._feed(b"0:0000:030:4 - mem(268435456)=256.00MB\r\nip 10.0.2.15\r\nipva> ")
    assert machine.wait_for_console(r"mem\((\d+)\)", 1).group(1) == "268435456"
    assert machine.wait_for_console(r"10\.0\.2\.15", 1)
    assert machine.wait_for_prompt(1)
    with pytest.raises(WaitTimeout, match=r"mem") as info:
        machine.wait_for_console(r"mem\(", 0.3)  # already consumed
    assert info.value.last_lines[-1] == "ipva> "


def test_output_arriving_later_is_seen(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path)
    console = machine.launcher.console  # type: ignore[union-attr]
    threading.Timer(0.3, console._feed, [b"late\r\n"]).start()
    assert machine.wait_for_console("late", 5).group(0) == "late"


def test_command_returns_output_between_echo_and_prompt(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, {"version": "16r1sr1 build 1601001\r\nipva\r\n"})
    machine.launcher.console._feed(b"boot\r\nipva> ")  # type: ignore[union-attr]
    machine.wait_for_prompt(1)
    assert machine.command("version") == "16r1sr1 build 1601001\nipva"
    assert machine.command("nothing") == ""
    assert machine.console_log.endswith("nothing\nipva> ")


def test_a_boots_prompt_wait_waits_for_the_web_admin_line_after_it(tmp_path: Path) -> None:
    """The web admin comes up after the prompt; its line comes under it and the prompt is
    drawn again: wait_for_prompt returns at that prompt, so http_url answers then."""
    machine = fake_machine(tmp_path)
    console = machine.launcher.console  # type: ignore[union-attr]
    console._feed(b"IPVA bootcode 16r1sr1 build 1601001\r\n0:0000:030:4 - ETH0 IP address\r\n"
                  b"IPVA> ")  # fmt: skip
    up = b"\r\n0:0000:051:4 - HTTP0: web admin on 0.0.0.0:443 (https, TLS 1.2/1.3)\r\nIPVA> "
    threading.Timer(0.3, console._feed, [up]).start()
    started = time.monotonic()
    match = machine.wait_for_prompt(5)
    assert time.monotonic() - started >= 0.25  # not at the first prompt
    assert match.end() == len(machine.console_log)
    assert machine.command("version") == ""  # no boot line in the answer
    assert machine.wait_for_web_admin(1).group(0).startswith("HTTP0: web admin on 0.0.0.0:443")
    # the line before the prompt (web admin off, or quick): no wait
    early = fake_machine(tmp_path / "early")
    early.launcher.console._feed(  # type: ignore[union-attr]
        b"IPVA bootcode 16r1sr1\r\n0:0000:051:4 - HTTP0: /port and /https-port are 0: no web "
        b"admin, console only\r\nIPVA> "
    )
    started = time.monotonic()
    assert early.wait_for_prompt(5).end() == len(early.console_log)
    assert time.monotonic() - started < 0.25
    # a prompt that is not a boot's (no banner before it) waits for nothing more
    other = fake_machine(tmp_path / "other")
    other.launcher.console._feed(b"boot\r\nipva> ")  # type: ignore[union-attr]
    assert other.wait_for_prompt(1)
    with pytest.raises(WaitTimeout, match="web admin"):
        other.wait_for_web_admin(0.3)


def test_a_resumed_prompt_wait_waits_for_the_lease_renewal_that_comes_late(
    tmp_path: Path,
) -> None:
    """After a resume the clock's line comes, then (seconds later on a loaded host) the
    lease's renewal from the DHCP watcher: the wait returns under both, so neither lands in
    the next command's answer."""
    machine = fake_machine(tmp_path)
    machine._resume_lines = True  # as start() sets it for a resumed, older state
    console = machine.launcher.console  # type: ignore[union-attr]
    console._feed(b"IPVA> \r\n0:0000:040:4 - time: resumed after a pause: clock stepped by "
                  b"+8.0 s to the host's time\r\nIPVA> ")  # fmt: skip
    late = b"\r\n0:0000:041:4 - ETH0 DHCP lease renewed: 10.0.2.15/24 (dhcp)\r\nIPVA> "
    threading.Timer(2.5, console._feed, [late]).start()  # past the 1 s quiet wait
    machine.wait_for_prompt(10)
    assert "lease renewed" in machine.console_log
    assert machine.command("version") == ""


def test_fatal_boot_message_stops_the_prompt_wait_at_once(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path)
    machine.launcher.console._feed(  # type: ignore[union-attr]
        b"checksum wrong! Loading failed for image=IPVA    BIN\r\n"
    )
    # a plain timeout would raise WaitTimeout, so GuestHalted proves it did not wait it out
    with pytest.raises(GuestHalted, match="checksum wrong!") as info:
        machine.wait_for_prompt(30)
    assert info.value.message == "checksum wrong! Loading failed for image=IPVA    BIN"


def test_qemu_exit_while_waiting_is_reported(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path)
    machine.launcher.running = False  # type: ignore[union-attr]
    machine.launcher.returncode = 1  # type: ignore[union-attr]
    with pytest.raises(MachineDied, match="code 1"):
        machine.wait_for_console("never", 30)
