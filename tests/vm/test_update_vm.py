"""Firmware updates under QEMU between real, different images, from a real HTTP server.

The guest reaches the host's 127.0.0.1 as 10.0.2.2 (QEMU user networking), so a plain
`http.server` on the host is the update server. The images are `ipva build` outputs of the
same sources with another version (16r1sr2) and a test firmware that exits at start
(`--fail-at-start`), built once per session (the `ipva_firmware` fixture). Power cuts during
updates: tests/vm/test_update_power_cut_vm.py.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from appliance.formats.ipvabin import HEADER_SIZE
from appliance.hal.block import FileBlockDevice
from appliance.hal.bootctl import BootControl, read_boot_control
from hypervisors.qemu.errors import GuestHalted
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.timeouts import BOOT_TIMEOUT, retry
from images.bootdisk import write_boot_file
from tests.receivers import firmware_server

pytestmark = pytest.mark.vm

GUEST_HOST = "10.0.2.2"  # the host, as QEMU user networking shows it to the guest
SR1 = ("16r1sr1", 1601001)
SR2 = ("16r1sr2", 1601002)
FAILING = ("16r1sr3", 1601003)  # the --fail-at-start image
UPDATE_TIMEOUT = 300.0  # download, slot write and check under TCG, then the reset
NO_REBOOT_WATCH_S = 12  # longer than /init's restart delay and a SYSLINUX round trip


def wait_text(box: Machine, pattern: str, since: int, timeout: float) -> re.Match[str]:
    """`pattern` in the console after index `since` (trace lines come at any time, also
    inside a command's answer, so this does not use the machine's cursor)."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        m = regex.search(box.console_log, since)
        if m:
            return m
        if time.monotonic() > deadline:
            tail = "\n".join(box.last_lines(30))
            raise AssertionError(f"no /{pattern}/ on the console within {timeout:g}s:\n{tail}")
        if not box.is_running():
            raise AssertionError(f"QEMU stopped while waiting for /{pattern}/")
        time.sleep(0.05)


def prompt_of_boot_at(box: Machine, start: int) -> None:
    """Wait for the prompt of the boot whose bootcode banner is at `start`."""
    while box.wait_for_console(r"IPVA bootcode", BOOT_TIMEOUT).start() < start:
        pass
    box.wait_for_prompt()


def reset_and_boot(box: Machine, since: int) -> int:
    """After an update's reset final: wait for the next boot's prompt; returns where that
    boot starts in the console log."""
    start = wait_text(box, r"IPVA bootcode", since, UPDATE_TIMEOUT).start()
    prompt_of_boot_at(box, start)
    return start


def command_until(box: Machine, line: str, text: str, timeout: float = 60) -> str:
    """Run `line` until its answer contains `text`; that answer."""

    def attempt(last_try: bool) -> str | None:
        answer = box.command(line)
        return answer if text in answer or last_try else None

    answer = retry(attempt, timeout, f"{text!r} in the answer to {line!r}")
    assert text in answer, answer
    return answer


def start_update(box: Machine, line: str) -> str:
    """Type a `UP0 prot … <reset final>` line and wait for its first answer, not the prompt:
    the prompt can be followed by the reset's output before the harness sees it at the end."""
    box.send_line(line)
    return box.wait_for_console(r"UP0: fetching[^\n]*", 60).group(0)


def saved_name(box: Machine) -> str:
    m = re.search(r"SYS0 /name (\S+)", box.command("config show saved"))
    return m[1] if m else ""


@pytest.fixture(scope="module")
def images(ipva_dist: Path, ipva_firmware) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    return {
        "sr1": (ipva_dist / "ipva.bin").read_bytes(),
        "sr2": ipva_firmware(*SR2).read_bytes(),
        "fail": ipva_firmware(*FAILING, fail_at_start=True).read_bytes(),
    }


def test_update_up_down_by_up0_and_up1_and_a_firmware_that_fails_at_start(
    ipva_machine, images: dict[str, bytes]
) -> None:
    with firmware_server(GUEST_HOST) as srv:
        srv.files = {
            "/ipva.bin": images["sr2"],
            "/sr1/ipva.bin": images["sr1"],
            "/fail/ipva.bin": images["fail"],
        }
        box = ipva_machine("vmware", resume=True)  # the boots that count follow the updates
        box.wait_for_prompt()
        box.command("config change SYS0 /name keepme")
        box.command("config write")

        # UP0 prot up to 16r1sr2: the box resets into it by itself, the config kept
        mark = len(box.console_log)
        answer = start_update(box, f"mod cmd UP0 prot {srv.url('/ipva.bin')} reset 2")
        assert "UP0: fetching" in answer, answer
        wait_text(box, r"written to slot B \(IPVA2\.BIN\)", mark, UPDATE_TIMEOUT)
        boot = reset_and_boot(box, mark)
        log = box.console_log[boot:]
        assert "16r1sr2 build 1601002 in slot B (IPVA2.BIN) started and is confirmed" in log
        version = box.command("version")
        assert version.startswith("16r1sr2 IPVA[1601002]"), version
        assert "slot B (IPVA2.BIN): 16r1sr2 build 1601002, running" in version
        assert "slot A (IPVA.BIN): 16r1sr1 build 1601001, previous firmware" in version
        info = box.command("mod cmd UP0 info")
        assert '<running version="16r1sr2" build="1601002" slot="B"/>' in info, info
        assert 'id="A" file="IPVA.BIN" firmware="16r1sr1 build 1601001"' in info
        assert saved_name(box) == "keepme"

        # the same serial again: nothing fetched, nothing written
        again = box.command(f"mod cmd UP0 prot {srv.url('/ipva.bin')} reset 2")
        assert "serial 2 is installed already" in again, again
        assert srv.hits == ["/ipva.bin"]

        # and back down to 16r1sr1 (into slot A, as the running firmware is B)
        mark = len(box.console_log)
        start_update(box, f"mod cmd UP0 prot {srv.url('/sr1/ipva.bin')} reset 3")
        reset_and_boot(box, mark)
        version = box.command("version")
        assert version.startswith("16r1sr1 IPVA[1601001]"), version
        assert "slot A (IPVA.BIN): 16r1sr1 build 1601001, running" in version
        assert saved_name(box) == "keepme"

        # UP1: the box polls a script from the server, which updates it once and changes
        # a config value; after the reset the script's check serial stops it
        srv.files["/up1/update-ipva.htm"] = (
            "mod cmd UP1 check reset 77\r\n"
            "config change SYS0 /name polled\r\n"
            "config write\r\n"
            f"mod cmd UP0 prot {srv.url('/ipva.bin')} ser 77\r\n"
        ).encode()
        mark = len(box.console_log)
        box.command(f"config change UP1 /url {srv.url('/up1/')} /poll 0")
        box.command("config write")
        box.command("config activate")
        reset_and_boot(box, mark)
        assert box.command("version").startswith("16r1sr2 IPVA[1601002]")
        assert saved_name(box) == "polled"
        # the poll at this boot finds serial 77 done and stops at the check line
        up1 = command_until(box, "mod cmd UP1 info", "up to date")
        assert 'check="77"' in up1
        # once per boot, the box's state in the query (PROT=…&BOOT=…)
        polls = [h for h in srv.hits if h.startswith("/up1/update-ipva.htm?PROT=")]
        assert len(polls) == 2, srv.hits
        assert srv.hits.count("/ipva.bin") == 2, srv.hits  # UP0 once, the script once

        # a firmware that dies at start: its trial starts run out and the box comes back
        # on 16r1sr2 by itself, saying so on the console and in the trace
        mark = len(box.console_log)
        start_update(box, f"mod cmd UP0 prot {srv.url('/fail/ipva.bin')} reset 9")
        note = ("firmware A (IPVA.BIN 16r1sr3) did not start (no good start in its tries): "
                "starting B (IPVA2.BIN 16r1sr2)")  # fmt: skip
        at = wait_text(box, re.escape(note), mark, 3 * UPDATE_TIMEOUT).start()
        boot = box.console_log.rfind("IPVA bootcode", 0, at)
        prompt_of_boot_at(box, boot)
        log = box.console_log[boot:]
        assert f"UP0: {note}" in log  # the runtime's boot trace
        assert box.console_log[mark:].count("built with --fail-at-start") == 2  # two tries
        version = box.command("version")
        assert version.startswith("16r1sr2 IPVA[1601002]"), version
        assert "slot A (IPVA.BIN): 16r1sr3 build 1601003, did not start" in version
        assert note in box.command("mod cmd UP0 info")
        assert saved_name(box) == "polled"


# --- the bootcode's check of both slots -----------------------------------------------------


def raw_copies(dist: Path, where: Path) -> list[Path]:
    """The four disks as raw files the machine writes directly (sparse copies), so the
    test can read and change the boot disk between power-ons."""
    where.mkdir(parents=True, exist_ok=True)
    disks = []
    for role in ("boot", "cf", "flash", "dump"):
        disks.append(where / f"{role}.img")
        subprocess.run(
            ["cp", "--sparse=always", str(dist / "disks" / f"{role}.img"), str(disks[-1])],
            check=True,
        )
    return disks


def boot_record(boot: Path) -> BootControl | None:
    with FileBlockDevice(boot, readonly=True) as dev:
        return read_boot_control(dev)


def flipped(image: bytes, at: int = -100) -> bytes:
    damaged = bytearray(image)
    damaged[at] ^= 0x01
    return bytes(damaged)


def assert_stopped_for_good(box: Machine) -> None:
    """The message stays: no SYSLINUX banner again (no reboot loop), QEMU still running."""
    banners = box.console_log.count("SYSLINUX")
    time.sleep(NO_REBOOT_WATCH_S)
    assert box.is_running()
    assert box.console_log.count("SYSLINUX") == banners


def test_a_slot_that_fails_its_check_gives_way_and_both_bad_stop_with_the_seed_message(
    ipva_machine, ipva_dist: Path, images: dict[str, bytes], tmp_path: Path
) -> None:
    disks = raw_copies(ipva_dist, tmp_path / "disks")
    boot = disks[0]
    write_boot_file(boot, "IPVA.BIN", flipped(images["sr1"]))
    write_boot_file(boot, "IPVA2.BIN", images["sr2"])
    box = ipva_machine("vmware", disks=disks, disk_mode="direct")
    box.wait_for_prompt()
    note = ("firmware A (IPVA.BIN 16r1sr1) did not start (bad checksum): "
            "starting B (IPVA2.BIN 16r1sr2)")  # fmt: skip
    assert note in box.console_log
    assert f"UP0: {note}" in box.console_log
    assert box.command("version").startswith("16r1sr2 IPVA[1601002]")
    box.power_cut()
    # the record now says B is the good slot; with B damaged too nothing can start: the
    # seed's message for IPVA.BIN, and the box stays stopped
    record = boot_record(boot)
    assert record is not None and (record.active, record.good, record.failed) == (1, 1, 0)
    write_boot_file(boot, "IPVA2.BIN", flipped(images["sr2"]))
    box.start()
    with pytest.raises(GuestHalted) as halted:
        box.wait_for_prompt()
    assert halted.value.message == "checksum wrong! Loading failed for image=IPVA    BIN"
    assert_stopped_for_good(box)


def test_the_payload_carries_debians_ca_bundle_for_https_updates(
    ipva_dist: Path, tmp_path: Path
) -> None:
    """HTTPS update servers are verified against Mozilla's CAs (ca-certificates, in
    debs.json) at OpenSSL's default path in the guest."""
    payload = tmp_path / "payload.sqfs"
    payload.write_bytes((ipva_dist / "ipva.bin").read_bytes()[HEADER_SIZE:])
    pem = subprocess.run(
        ["unsquashfs", "-cat", str(payload), "usr/lib/ssl/cert.pem"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    context = ssl.create_default_context(cadata=pem.decode())
    assert context.cert_store_stats()["x509_ca"] >= 100
    assert '"ca-certificates"' in (ipva_dist / "debs.json").read_text()
