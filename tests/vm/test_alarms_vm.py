"""Alarms from the real guest: `reboot` raises its fault, which reaches an HTTP server on
the host (10.0.2.2) by the forward server's External POST before the box goes down; the
next boot sends the crash it found and its boot, and still lists the fault it kept on the
flash."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from hypervisors.qemu.timeouts import BOOT_TIMEOUT
from tests.receivers import http_receiver, wait_for

pytestmark = pytest.mark.vm

HOST = "10.0.2.2"  # QEMU user networking: the host's loopback, from the guest


def test_reboot_raises_its_fault_which_reaches_the_host(ipva_machine) -> None:  # type: ignore[no-untyped-def]
    with http_receiver() as http:
        m = ipva_machine("vmware")
        m.wait_for_prompt()
        for line in (
            "config change SYS0 /name vm-a",
            f"config change ALARM0 /addr {HOST} /port {http.port} /method post /path /alarms",
            "config activate",
            "config write",
        ):
            assert "error" not in m.command(line), line

        def received(code: str) -> list[ET.Element]:
            entries = [ET.fromstring(r.body) for r in http.requests if r.path == "/alarms"]
            return [e for e in entries if e.get("code") == code]

        m.send_line("reboot")
        m.wait_for_console("IPVA bootcode", BOOT_TIMEOUT, what="the restart")
        fault = wait_for(lambda: received("3"), what="the reboot's fault")[0]
        assert (fault.get("host"), fault.get("severity")) == ("vm-a", "fault")
        assert fault.text == "reboot (watchdog trap) (by console ttyS0)"
        m.wait_for_prompt()
        crash = wait_for(lambda: received("4"), what="the crash the boot found")[0]
        assert "watchdog trap (reboot command)" in (crash.text or "")
        wait_for(lambda: received("1"), what="the boot")
        assert "fault 3 reboot SYS0: reboot (watchdog trap)" in m.command("mod cmd ALARM0 show")
