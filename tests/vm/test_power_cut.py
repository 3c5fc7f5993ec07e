"""Power cut in the middle of `config write`: QEMU is killed (SIGKILL) at several moments
during the commit; after the next boot the saved configuration is exactly the old one or
exactly the new one — never a mix, never lost — and the box still writes afterwards.

The disks are raw copies written directly (no overlay), so what survives is exactly what
the guest had sent to its virtual disk when QEMU died.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

# moments after sending `config write` at which the power goes (s); the commit of a dozen
# VARS records takes some tens of milliseconds under TCG, so these straddle it
CUT_DELAYS = (0.0, 0.03, 0.1, 0.4)
ROUTES = 6  # objects per generation: one `config write` commits them all at once


def generation(n: int) -> list[str]:
    """The config lines of generation n: every object carries n, so a mix is visible."""
    lines = [f"config change SYS0 /name gen{n}"]
    for r in range(ROUTES):
        lines.append(
            f"config change IP0 RT{r} /dest 10.{n}.{r}.0 /mask 255.255.255.0 /gateway 10.0.2.2"
        )
    return lines


def saved_generations(show: str) -> set[str]:
    """Which generations the saved config's lines come from (one, unless it is torn)."""
    found = set()
    for line in show.splitlines():
        if "/name gen" in line:
            found.add(line.split("/name gen")[1].split()[0])
        elif "/dest 10." in line:
            found.add(line.split("/dest 10.")[1].split(".")[0])
    return found


def test_power_cut_during_config_write_keeps_old_or_new(
    ipva_machine, ipva_dist: Path, tmp_path: Path
) -> None:
    disks = []
    for role in ("boot", "cf", "flash", "dump"):
        disks.append(tmp_path / f"{role}.img")
        shutil.copyfile(ipva_dist / "disks" / f"{role}.img", disks[-1])
    box = ipva_machine("vmware", disks=disks, disk_mode="direct")
    box.wait_for_prompt()
    for line in generation(0):
        assert "error" not in box.command(line)
    box.command("config write")
    saved = "0"
    for n, delay in enumerate(CUT_DELAYS, start=1):
        for line in generation(n):
            assert "error" not in box.command(line)
        box.send_line("config write")
        time.sleep(delay)
        box.power_cut()
        box.start()
        box.wait_for_prompt()
        now = saved_generations(box.command("config show saved"))
        assert now in ({saved}, {str(n)}), f"cut after {delay}s: saved config is {now}"
        saved = now.pop()
        print(f"cut after {delay}s: saved generation {saved} (new was {n})")
    # and the flash still takes a commit after all those cuts
    for line in generation(99):
        box.command(line)
    box.command("config write")
    box.power_cut()
    box.start()
    box.wait_for_prompt()
    assert saved_generations(box.command("config show saved")) == {"99"}
