"""Diagnostics in a booted VM (TCG: each boot is ~1 min here, so each test chains several
checks on one machine).

  crash dumps   `reboot` → the next boot reports it, DUMP show has the stacks and trace
                tail; an exception in a service thread and a fatal signal (faulthandler
                into the dump disk) each leave a dump and restart the box; `ipva dump show`
                reads the dump disk (qcow2 overlay) afterwards
  CF + logging  CF0 format/mount, mounted again at boot; LOCAL writes and rotates LOG0.n
                on the card (read with mtools); SYSLOG, TCP and HTTP lines reach rsyslogd,
                a TCP listener and an HTTP server on the host through QEMU's user network
                (the host is 10.0.2.2); a target that refuses does not hold up the console
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner

from hypervisors.qemu.machine import Machine
from hypervisors.qemu.timeouts import BOOT_TIMEOUT
from tests.hosted.httpbox import authed, request
from tests.receivers import free_port, http_receiver, rsyslog, tcp_listener, wait_for
from tools.cli import main

pytestmark = pytest.mark.vm

HOST = "10.0.2.2"  # QEMU user networking: the host's loopback, from the guest


def overlay(m: Machine, index: int) -> Path:
    found = sorted(m.workdir.glob(f"disk{index}-*.qcow2"))
    assert found, f"no overlay disk{index} in {m.workdir}"
    return found[0]


def wait_reboot(m: Machine) -> str:
    """Wait for the next boot's prompt; the console text of that boot."""
    start = len(m.console_log)
    m.wait_for_console("IPVA bootcode", BOOT_TIMEOUT, what="the restart")
    m.wait_for_prompt()
    return m.console_log[start:]


def test_reboot_exception_and_signal_each_leave_a_dump(ipva_machine) -> None:  # type: ignore[no-untyped-def]
    m = ipva_machine("vmware", resume=True)  # the boots that count come after the crashes
    m.wait_for_prompt()
    m.send_line("reboot")
    boot = wait_reboot(m)
    assert "restart after a crash: watchdog trap (reboot command) (firmware 16r1sr1)" in boot
    shown = m.command("mod cmd DUMP show")
    assert shown.startswith("crash: watchdog trap (reboot command)\nkind: reboot")
    assert "hw: IPVA-vm" in shown and "memory: usable " in shown
    assert "thread console-ttyS0" in shown and "in execute" in shown  # the stack that typed it
    assert "0:0000:081:4 - start flashdir FLASHDIR0" in shown.split("trace (last", 1)[1]

    m.send_line("mod cmd DUMP trap thread")
    boot = wait_reboot(m)
    reason = "unhandled exception in thread dump-trap: TrapError: mod cmd DUMP trap thread"
    assert f"restart after a crash: {reason}" in boot
    assert "TrapError: mod cmd DUMP trap thread" in m.command("mod cmd DUMP show")

    m.send_line("mod cmd DUMP trap signal")
    boot = wait_reboot(m)
    assert "runtime exited (rc=139)" in boot  # the bootcode saw the runtime die
    assert "restart after a crash: Fatal Python error: Segmentation fault" in boot
    shown = m.command("mod cmd DUMP show")
    # faulthandler's stacks of the threads (it walks them while they run on: the last
    # ones can come out cut short, which is faulthandler's limit, not the dump's)
    assert "fatal signal (faulthandler):" in shown and "Thread 0x" in shown
    assert "in serve_console" in shown
    # the trace tail of the run that got the signal, from the dump disk's trace mirror
    tail = shown.split("trace (last", 1)[1]
    assert f"restart after a crash: {reason}" in tail and "ETH0 IP address" in tail
    m.shutdown()

    res = CliRunner().invoke(main, ["dump", "show", str(overlay(m, 3))])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("crash: Fatal Python error: Segmentation fault\nkind: signal")
    assert "reported: yes" in res.output


def test_cf_and_log_targets_reach_real_receivers(ipva_machine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with (
        rsyslog(tmp_path / "rsyslog") as syslogd,
        tcp_listener() as listener,
        http_receiver() as http,
    ):
        m = ipva_machine("vmware", resume=True)  # a box at its prompt: no need to boot
        m.wait_for_prompt()
        assert "no FAT file system" in m.command("mod cmd CF0 info")
        # busybox's mkdosfs makes FAT32 whatever the size
        assert re.match(r"CF0 formatted: FAT(16|32), 12\d\.\dMB of 128.0MB$",
                        m.command("mod cmd CF0 format yes"))  # fmt: skip
        mounted = m.command("mod cmd CF0 mount")
        assert re.match(r"CF0 mounted \(FAT(16|32), 12\d\.\dMB\)$", mounted)
        for line in (
            "config change LOG0 /type local /max-file-size 1",
            f"config change LOG1 /type syslog /addr {HOST} /port {syslogd.udp_port} /class 3",
            "config change SYS0 /name diag1",
            "config activate",
        ):
            assert "error" not in m.command(line)
        for i in range(40):  # ~70 bytes a line: LOG0.0 passes 1 kB and rotates
            m.command(f"config change DNS0 /server1 10.0.0.{i}")
        m.command("config write")
        wait_for(lambda: any("config write" in x for x in syslogd.lines()), what="syslog")
        got = [x for x in syslogd.lines() if "diag1 IPVA:" in x]
        assert any(
            x.startswith("158 local3 6 diag1 IPVA: config change DNS0 /server1") for x in got
        )

        # TCP and HTTP as LOG0 and LOG1; then a target that refuses connections
        for line in (
            f"config change LOG0 /type tcp /addr {HOST} /port {listener.port}",
            f"config change LOG1 /type http /addr {HOST} /port {http.port} /method get "
            "/path /collect",
            "config activate",
            "config change DNS0 /server1 10.0.0.99",
        ):
            assert "error" not in m.command(line)
        wait_for(lambda: any("10.0.0.99" in x for x in listener.lines()), what="TCP line")
        wait_for(lambda: any("10.0.0.99" in r.path for r in http.requests), what="HTTP GET")
        assert any(r.path.startswith("/collect?") for r in http.requests)

        refused = free_port()
        m.command(f"config change LOG0 /type tcp /addr {HOST} /port {refused}")
        m.command("config activate")
        for i in range(120):  # more than the queue holds; each still answers at once
            assert m.command(f"config change DNS0 /server2 10.0.1.{i}") == ""
        el = ET.fromstring(m.command("mod cmd LOG0 info")).find("log")
        assert el is not None and el.get("state") == "down" and int(el.get("dropped", 0)) > 0

        m.send_line("reset")
        assert f"0:0000:030:4 - {mounted}" in wait_reboot(m)  # mounted at boot
        # the card's files over HTTP (the kernel's vfat in the guest), behind the login
        assert request(m.http_url, "GET", "/DRIVE/CF0/log/", timeout=30).status == 401
        listed = authed(m.http_url, "GET", "/DRIVE/CF0/log/")
        assert listed.status == 200, listed.text
        served = authed(m.http_url, "GET", "/DRIVE/CF0/log/LOG0.2")
        assert served.status == 200, served.text
        assert authed(m.http_url, "GET", "/DRIVE/CF0/../cfg.txt").status == 400
        m.shutdown()

    raw = tmp_path / "cf.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", overlay(m, 1), raw], check=True)
    listing = subprocess.run(
        ["mdir", "-b", "-i", str(raw), "::/log"], capture_output=True, text=True, check=True
    ).stdout
    names = sorted(p.rsplit("/", 1)[1] for p in listing.split())
    assert names == ["LOG0.0", "LOG0.1", "LOG0.2", "LOG0.3"]  # rotated, four kept

    def mtype(name: str) -> str:
        return subprocess.run(
            ["mtype", "-i", str(raw), f"::/log/{name}"], capture_output=True, text=True, check=True
        ).stdout

    files = [mtype(n) for n in names]
    # the boot after the reset: the newest file, or the one before if the web logins
    # below rotated it
    assert "diag1 IPVA: boot 16r1sr1" in files[0] + files[1]
    assert "IPVA: login admin from 10.0.2.2 (web admin)" in files[0]
    # the last lines before the reset, with who typed them
    assert "diag1 IPVA: config write: " in "".join(files)
    assert "IPVA: config change DNS0 /server1 10.0.0.39 (by console ttyS0)" in "".join(files)
    assert all(0 < len(f.encode()) <= 1024 for f in files)
    links = re.findall(r'href="([^"]+)"', listed.text)
    assert links == ["../", *names]
    # the served file is one of them, byte for byte (a rotation after the GET moves it to
    # LOG0.3)
    raw_files = [
        subprocess.run(["mtype", "-i", str(raw), f"::/log/{n}"], capture_output=True,
                       check=True).stdout
        for n in names[2:]
    ]  # fmt: skip
    assert served.body in raw_files
