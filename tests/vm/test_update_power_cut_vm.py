"""Power cuts during firmware updates under QEMU: the box is killed at random moments in
each stage of an update (download, slot write, slot check, the boot-control record's flip,
the new firmware's first start), powered on again, and must come up on the old or the new
firmware with its saved configuration intact, and then update normally. The seed is printed
(IPVA_CUT_SEED repeats a run). A file of its own: it is the suite's second-longest test and
runs beside the other update tests (tests/vm/test_update_vm.py, whose helpers it uses).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.formats.ipvabin import HEADER_SIZE, parse_header
from appliance.hal.bootctl import SLOT_NAMES, SlotState, decide
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.timeouts import BOOT_TIMEOUT
from images.bootdisk import read_boot_file
from tests.receivers import firmware_server
from tests.vm.test_update_vm import (
    GUEST_HOST,
    SR2,
    UPDATE_TIMEOUT,
    boot_record,
    raw_copies,
    reset_and_boot,
    start_update,
    wait_text,
)

pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def images(ipva_dist: Path, ipva_firmware) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    return {"sr1": (ipva_dist / "ipva.bin").read_bytes(), "sr2": ipva_firmware(*SR2).read_bytes()}


# --- power cuts during updates --------------------------------------------------------------

PHASES = ("download", "slot write", "slot check", "record flip", "first start")
# two random cuts in each stage per run (each cut costs a boot, ~20 s under TCG); the seed
# printed varies the moments from run to run, IPVA_CUTS_PER_PHASE asks for more
CUTS_PER_PHASE = int(os.environ.get("IPVA_CUTS_PER_PHASE", "2"))
# the console lines that open each stage of an update (install.py's steps, the reset)
STAGE_LINES = (
    ("download", "UP0: receiving firmware from"),
    ("slot write", "verified: writing slot"),
    ("slot check", "UP0: checking slot"),
    ("record flip", "UP0: switching the boot-control record"),
    ("before reset", "written to slot"),
    ("first start", "IPVA bootcode"),
    ("confirmed", "started and is confirmed"),
)
RECORD_AREA = (8 * 512, 2 * 512)  # the boot-control record's two copies (LBA 8, 9)


@dataclass
class Cut:
    planned: str
    phase: str  # the stage the console had reached at the kill
    reached: str  # the last console line then
    record: str  # the boot-control record on the disk after the kill
    came_up: str  # the version that ran after the next power-on


def stage_at_kill(text: str) -> str:
    """The last update stage whose opening line the console shows (`text`: since the
    update started, up to the kill)."""
    best, at = "none", -1
    for stage, line in STAGE_LINES:
        i = text.rfind(line)
        if i > at:
            best, at = stage, i
    return best


def running_version(box: Machine) -> str:
    return box.command("version").split()[0]


def record_bytes(boot: Path) -> bytes:
    with open(boot, "rb") as f:
        f.seek(RECORD_AREA[0])
        return f.read(RECORD_AREA[1])


def slot_version(boot: Path, slot: int) -> str:
    head = read_boot_file(boot, SLOT_NAMES[slot])[:HEADER_SIZE]
    return parse_header(head).version


def test_power_cuts_during_updates_always_leave_a_box_that_boots_and_updates(
    ipva_machine, ipva_dist: Path, images: dict[str, bytes], tmp_path: Path
) -> None:
    seed = int(os.environ.get("IPVA_CUT_SEED", str(time.time_ns() % 100000)))
    rng = random.Random(seed)
    print(f"power cuts: seed {seed} (IPVA_CUT_SEED={seed} repeats them)")
    plan = [p for p in PHASES for _ in range(CUTS_PER_PHASE)]
    plan.remove("record flip")
    rng.shuffle(plan)
    plan.insert(0, "record flip")  # goes through every stage first: their durations
    # a stage whose planned cuts all landed elsewhere (a loaded host reacts late, and a
    # stage can be shorter than the sleep drawn for it) gets another cut, at most this many
    # times: each stage is still cut, and a run costs more only when one was missed
    extra = dict.fromkeys(PHASES, 2)
    disks = raw_copies(ipva_dist, tmp_path / "disks")
    boot = disks[0]
    # stage durations (s) as this machine runs them; measured on the way, these are guesses
    took = {"slot write": 2.0, "slot check": 2.0, "first start": 15.0}
    cuts: list[Cut] = []
    with firmware_server(GUEST_HOST) as srv:
        srv.files = {"/16r1sr1/ipva.bin": images["sr1"], "/16r1sr2/ipva.bin": images["sr2"]}
        box = ipva_machine("vmware", disks=disks, disk_mode="direct")
        box.wait_for_prompt()
        box.command("config change SYS0 /name cutbox")
        box.command("config change IP0 RT0 /dest 10.9.0.0 /mask 255.255.0.0 /gateway 10.0.2.2")
        box.command("config write")
        saved = box.command("config show saved")
        assert "/name cutbox" in saved and "/dest 10.9.0.0" in saved

        for n, planned in enumerate(plan):
            old = running_version(box)
            new = "16r1sr2" if old == "16r1sr1" else "16r1sr1"
            before = record_bytes(boot)
            srv.held.clear()
            srv.release.clear()
            if planned == "download":
                srv.hold_at = rng.randrange(1, len(images["sr2"]) >> 16) << 16
            mark = len(box.console_log)
            start_update(box, f"mod cmd UP0 prot {srv.url(f'/{new}/ipva.bin')} reset {1000 + n}")
            if planned == "download":
                assert srv.held.wait(UPDATE_TIMEOUT), "the download did not start"
            elif planned == "slot write":
                wait_text(box, STAGE_LINES[1][1], mark, UPDATE_TIMEOUT)
                time.sleep(rng.uniform(0, 0.8 * took["slot write"]))
            elif planned == "slot check":
                wait_text(box, STAGE_LINES[2][1], mark, UPDATE_TIMEOUT)
                time.sleep(rng.uniform(0, 0.8 * took["slot check"]))
            elif planned == "record flip":
                # the moment the record changes on the disk: the power goes right then
                wait_text(box, STAGE_LINES[1][1], mark, UPDATE_TIMEOUT)
                t0 = time.monotonic()
                wait_text(box, STAGE_LINES[2][1], mark, UPDATE_TIMEOUT)
                t1 = time.monotonic()
                while record_bytes(boot) == before:
                    assert time.monotonic() - t1 < UPDATE_TIMEOUT, "the record never changed"
                    time.sleep(0.002)
                if n == 0:
                    took["slot write"], took["slot check"] = t1 - t0, time.monotonic() - t1
            else:  # first start: the new firmware's boot, before it has confirmed itself
                wait_text(box, r"IPVA bootcode", mark, UPDATE_TIMEOUT)
                time.sleep(rng.uniform(0, 0.8 * took["first start"]))
            box.power_cut()
            srv.release.set()
            text = box.console_log[mark:]
            phase = "download" if srv.held.is_set() else stage_at_kill(text)
            flipped = record_bytes(boot) != before
            if planned == "record flip" and phase == "before reset" and flipped:
                # the record's stage on the disk: it changed and the box had not reset. Its
                # console line is followed by `written to slot` milliseconds after the
                # record's write, so a loaded host's reaction often lands after that line
                phase = "record flip"
            record = boot_record(boot)
            decision = decide(record)
            expect = slot_version(boot, decision.slot)
            # power on: a good firmware starts, the saved config is intact
            boot_at = len(box.console_log)
            box.start()
            wait_text(box, r"IPVA bootcode", boot_at, BOOT_TIMEOUT)
            t0 = time.monotonic()
            box.wait_for_prompt()
            took["first start"] = time.monotonic() - t0
            came_up = running_version(box)
            cut = Cut(planned, phase, text.strip().splitlines()[-1][:100], str(record), came_up)
            cuts.append(cut)
            print(f"cut {n + 1:2}: {cut}")
            assert came_up == expect, cut
            assert came_up in (old, new), cut
            assert box.command("config show saved") == saved, cut
            if record is not None and record.state is SlotState.TRIAL:
                assert "started and is confirmed" in box.console_log[boot_at:], cut
            missed = planned not in {c.phase for c in cuts} and planned not in plan[n + 1 :]
            if missed and extra[planned] > 0:
                extra[planned] -= 1
                plan.append(planned)  # the loop goes on to it (it iterates the list itself)

        # after all that, an update runs through: download, slot, reset, confirmed
        old = running_version(box)
        new = "16r1sr2" if old == "16r1sr1" else "16r1sr1"
        mark = len(box.console_log)
        start_update(box, f"mod cmd UP0 prot {srv.url(f'/{new}/ipva.bin')} reset 2000")
        start = reset_and_boot(box, mark)
        assert "started and is confirmed" in box.console_log[start:]
        assert running_version(box) == new
        assert box.command("config show saved") == saved
    covered = {c.phase for c in cuts}
    print("phases the cuts landed in:", sorted(covered))
    assert set(PHASES) <= covered, cuts
