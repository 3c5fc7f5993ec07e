"""The diagnostics in the hosted runtime: crash dumps (reboot, an exception in a service
thread), the CF card (format, mount at boot), logging to the CF card (read with mtools) and
to rsyslog; a target that refuses never stalls the console, its drops are counted."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
from pathlib import Path
from xml.etree import ElementTree as ET

from appliance.formats.crashdump import Condition, DumpKind, read_dump
from appliance.hal.block import FileBlockDevice
from appliance.hosted import run_hosted
from tests.receivers import free_port, rsyslog, wait_for

PAUSE_S = 1.0  # between lines where the box works in the background (a trap, a send)


def hosted(directory: Path, *lines: str, pause_after: tuple[str, ...] = ()) -> str:
    """Type `lines` into the hosted box; pause after those in `pause_after`."""
    read_fd, write_fd = os.pipe()

    def typist() -> None:
        with os.fdopen(write_fd, "wb") as w:
            for line in lines:
                w.write(line.encode() + b"\n")
                w.flush()
                if line in pause_after:
                    time.sleep(PAUSE_S)

    t = threading.Thread(target=typist, daemon=True)
    t.start()
    out = io.BytesIO()
    with os.fdopen(read_fd, "rb", buffering=0) as stdin:
        assert run_hosted(directory, stdin, out) == 0
    t.join(5)
    return out.getvalue().decode("ascii")


def test_exception_in_a_service_thread_dumps_and_restarts_as_a_trap(tmp_path: Path) -> None:
    t = hosted(tmp_path, "mod cmd DUMP trap thread", "version", "mod cmd DUMP show",
               pause_after=("mod cmd DUMP trap thread",))  # fmt: skip
    reason = "unhandled exception in thread dump-trap: TrapError: mod cmd DUMP trap thread"
    assert f"0:0000:030:4 - {reason}" in t  # traced when it happened
    assert t.split("mod cmd DUMP show")[0].count("0:0000:030:4 - mem(") == 2  # restarted
    assert f"restart after a crash: {reason} (firmware 16r1sr1)" in t
    shown = t.split("mod cmd DUMP show", 1)[1]
    assert shown.lstrip("\n").startswith(f"crash: {reason}\nkind: exception")
    assert "thread dump-trap" in shown and "(crashed)" in shown and "in trapped_service" in shown
    assert "TrapError: mod cmd DUMP trap thread" in shown.split("exception:", 1)[1]
    with FileBlockDevice(tmp_path / "dump.img") as dev:
        reading = read_dump(dev)
    assert reading.condition is Condition.VALID and reading.dump is not None
    assert reading.dump.kind is DumpKind.EXCEPTION and reading.dump.reported


def test_cf_format_mount_at_boot_and_local_logging_read_with_mtools(tmp_path: Path) -> None:
    t = hosted(
        tmp_path,
        "mod cmd CF0 info",
        "mod cmd CF0 format",
        "mod cmd CF0 format yes",
        "mod cmd CF0 mount",
        "config change LOG0 /type local /max-file-size 1",
        "config activate",
        "config change ADMIN0 /pwd s3cret-pw",
        "config write",
        "reset",
        "mod cmd CF0 info",
    )
    assert "no FAT file system (format it with mod cmd CF0 format yes)" in t
    assert "error: this erases everything on the compact flash: confirm with mod cmd CF0" in t
    assert "CF0 formatted: FAT16, 64.0MB of 64.0MB, mounted" not in t  # was not mounted
    assert "CF0 formatted: FAT16, 64.0MB of 64.0MB" in t
    assert "\nCF0 mounted (FAT16, 64.0MB)\n" in t  # the mount command's answer
    assert "0:0000:030:4 - CF0 mounted (FAT16, 64.0MB)" in t  # at the boot after reset
    image = str(tmp_path / "cf.img")
    log = subprocess.run(
        ["mtype", "-i", image, "::/log/LOG0.0"], capture_output=True, text=True, check=True
    ).stdout
    assert "IPVA: config activate" in log and "IPVA: config write: " in log
    assert "IPVA: config change ADMIN0 /pwd ********" in log
    assert "s3cret" not in log  # a password never reaches a log
    assert "IPVA: reset" in log and "IPVA: boot 16r1sr1 IPVA[" in log


def test_syslog_target_reaches_rsyslog_from_the_box(tmp_path: Path) -> None:
    with rsyslog(tmp_path / "rsyslog") as syslogd:
        hosted(
            tmp_path / "box",
            f"config change LOG0 /type syslog /addr 127.0.0.1 /port {syslogd.udp_port} /class 4",
            "config change SYS0 /name lab9",
            "config activate",
            "config write",
            pause_after=("config write",),
        )
        line = wait_for(
            lambda: next((x for x in syslogd.lines() if "config write" in x), None),
            what="the config write line at rsyslog",
        )
    # pri (16 + 4) * 8 + 6, facility local4, severity 6, the box's name as the host
    assert line == "166 local4 6 lab9 IPVA: config write: 2 saved objects (by console stdio)"


def test_a_refusing_target_drops_and_counts_but_never_stalls(tmp_path: Path) -> None:
    port = free_port()  # nobody listens: every connect is refused
    changes = [f"config change SYS0 /name n{i}" for i in range(130)]
    t = hosted(
        tmp_path,
        f"config change LOG0 /type tcp /addr 127.0.0.1 /port {port}",
        "config activate",
        *changes,
        "mod cmd LOG0 info",
    )
    info = t.split("mod cmd LOG0 info", 1)[1].strip().splitlines()[0]
    el = ET.fromstring(info).find("log")
    assert el is not None and el.get("type") == "tcp" and el.get("state") == "down"
    assert int(el.get("dropped", "0")) >= 130 - 101  # queue of 100 + the one in flight
    assert "refused" in el.get("error", "").lower()
    assert t.count("error:") == 0  # every change was answered
