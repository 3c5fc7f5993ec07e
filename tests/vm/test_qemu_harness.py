"""The harness itself on the built image: QMP reset, power cut and restart, commands."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from hypervisors.qemu.machine import Machine

pytestmark = pytest.mark.vm
ADDRESS = re.compile(r"10\.0\.2\.15")


def test_hardware_reset_and_power_cut_boot_again(ipva_machine: Callable[..., Machine]) -> None:
    box = ipva_machine("vmware")
    box.wait_for_prompt()
    assert "16r1sr1" in box.command("version")
    box.reset()  # QMP system_reset: the console waits see only the new boot
    box.wait_for_console(ADDRESS)
    box.wait_for_prompt()
    box.power_cut()
    assert not box.is_running()
    box.start()  # same overlays: flash formatted by the first boot is still there
    box.wait_for_console(ADDRESS)
    box.wait_for_prompt()
    assert box.console_log.count("SYSLINUX") == 3
    assert box.console_log_path.read_bytes().count(b"SYSLINUX") == 3
    box.shutdown()
    assert not box.is_running()
