"""`ipva console` against a real socket peer: the hosted runtime serving its shell on a TCP
connection (the same shell as the VM's serial console), and through `ipva run`'s relay."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hypervisors.qemu.relay import ConsoleRelay, state_file
from tools.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def box_url(tmp_path: Path) -> Iterator[str]:
    """socket://… of a hosted box whose console is the accepted TCP connection."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    procs: list[subprocess.Popen[bytes]] = []

    def accept() -> None:
        conn, _ = server.accept()
        env = dict(os.environ, IPVA_HOSTED_DIR=str(tmp_path / "box"), PYTHONPATH=str(REPO))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "appliance"], stdin=conn, stdout=conn, env=env, cwd=REPO
            )
        )
        conn.close()  # the runtime holds it now

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"socket://127.0.0.1:{port}"
    t.join(5)
    server.close()
    for p in procs:
        p.wait(timeout=30)  # the client closing the socket ends the runtime's input


def _script(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "commands.txt"
    path.write_text(text)
    return path


def test_send_types_commands_at_prompts_and_prints_the_transcript(
    box_url: str, tmp_path: Path
) -> None:
    script = _script(tmp_path, "# set the name\nconfig change SYS0 /name lab7\n\nconfig show\n")
    log = tmp_path / "console.log"
    res = CliRunner().invoke(main, ["console", box_url, "--send", str(script), "--log", str(log)])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "config change SYS0 /name lab7" in out
    # config show ran after the change had been answered: it lists it
    assert out.index("config show") < out.rindex("config change SYS0 /name lab7")
    assert "set the name" not in out  # comments are not typed
    assert out.rstrip().endswith(">")
    assert b"config show" in log.read_bytes()


def test_send_exits_1_when_the_box_answers_error(box_url: str, tmp_path: Path) -> None:
    script = _script(tmp_path, "config change NOSUCH0 /x 1\nconfig show\n")
    res = CliRunner().invoke(main, ["console", box_url, "--send", str(script)])
    assert res.exit_code == 1, res.output
    assert "error: " in res.output
    assert "config show" in res.output  # the rest of the script still ran


def test_vm_uses_the_relay_ipva_run_recorded(box_url: str, tmp_path: Path) -> None:
    """`ipva console --vm` → the relay → (here) the box's socket, as `ipva run` sets it up."""
    from hypervisors.qemu.console import ConsoleReader

    upstream = ConsoleReader(box_url)
    upstream.connect(10)
    dist = tmp_path / "dist"
    with ConsoleRelay(upstream.write, state_file(dist)) as relay:
        upstream.on_data.append(relay.publish)
        script = _script(tmp_path, "config change SYS0 /name relayed\n")
        res = CliRunner().invoke(
            main, ["console", "--vm", "--dist", str(dist), "--send", str(script)]
        )
        assert res.exit_code == 0, res.output
        assert "config change SYS0 /name relayed" in res.output
        assert state_file(dist).read_text() == relay.url + "\n"
    assert not state_file(dist).exists()  # removed when ipva run ends
    upstream.close()


def test_relay_fans_out_and_types_in() -> None:
    typed: list[bytes] = []
    with ConsoleRelay(typed.append) as relay:
        a = socket.create_connection(("127.0.0.1", relay.port))
        b = socket.create_connection(("127.0.0.1", relay.port))
        a.sendall(b"version\r")
        deadline = 50
        while not typed and deadline:
            threading.Event().wait(0.1)
            deadline -= 1
        assert typed == [b"version\r"]
        while len(relay._clients) < 2:  # both accepted
            threading.Event().wait(0.05)
        relay.publish(b"IPVA> ")
        assert a.recv(100) == b"IPVA> " and b.recv(100) == b"IPVA> "
        a.close()
        b.close()


def test_usage_errors(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["console"])
    assert res.exit_code == 2 and "give a URL" in res.output
    res = CliRunner().invoke(main, ["console", "--vm", "--dist", str(tmp_path)])
    assert res.exit_code == 1 and "no box started by `ipva run --dist" in res.output
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    res = CliRunner().invoke(main, ["console", "/dev/ttyNOSUCH"])
    assert res.exit_code == 1 and "cannot open /dev/ttyNOSUCH" in res.output
    script = _script(tmp_path, "version\n")
    res = CliRunner().invoke(
        main, ["console", f"socket://127.0.0.1:{port}", "--send", str(script), "--timeout", "1"]
    )
    assert res.exit_code == 1 and "cannot open socket://" in res.output


def test_interactive_on_a_terminal_types_keys_and_ctrl_bracket_leaves(box_url: str) -> None:
    """The real terminal path: `ipva console` on a pty, keys in, the box's answer out."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "console", box_url],
        stdin=slave, stdout=slave, stderr=slave, cwd=REPO,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def read_until(marker: bytes, timeout: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 4096)

    read_until(b"Ctrl-] leaves")
    os.write(master, b"\r")
    read_until(b"IPVA> ")
    os.write(master, b"version\r")
    read_until(b"HW[IPVA-hosted]")
    os.write(master, b"\x1d")  # Ctrl-]
    read_until(b"[ipva console: left]")
    assert proc.wait(timeout=10) == 0
    os.close(master)


def test_send_over_rfc2217_through_pyserials_port_manager(box_url: str, tmp_path: Path) -> None:
    """An RFC 2217 terminal server (pyserial's PortManager, as its tcp_serial_redirect does)
    in front of the box's console; `ipva console rfc2217://…` negotiates and talks through."""
    import time

    import serial
    import serial.rfc2217

    box = serial.serial_for_url(box_url, timeout=0.1)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def terminal_server() -> None:
        conn, _ = server.accept()
        conn.settimeout(0.1)

        class Connection:  # what PortManager writes its telnet answers to
            write = conn.sendall

        manager = serial.rfc2217.PortManager(box, Connection())

        def to_client() -> None:
            while not stop.is_set():
                try:
                    data = box.read(4096)
                    if data:
                        conn.sendall(b"".join(manager.escape(data)))
                except (OSError, serial.SerialException):  # a side closed: the test is over
                    return

        threading.Thread(target=to_client, daemon=True).start()
        while not stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            if not data:
                break
            box.write(b"".join(manager.filter(data)))
        conn.close()

    t = threading.Thread(target=terminal_server, daemon=True)
    t.start()
    script = _script(tmp_path, "version\n")
    try:
        res = CliRunner().invoke(
            main, ["console", f"rfc2217://127.0.0.1:{port}", "--send", str(script)]
        )
        assert res.exit_code == 0, res.output
        assert "IPVA[1601001], Bootcode[" in res.output
    finally:
        stop.set()
        t.join(5)
        server.close()
        time.sleep(0.3)  # the relay thread sees `stop` before the box's port goes
        box.close()
