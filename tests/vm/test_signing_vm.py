"""The bootcode's signature check under QEMU: a slot whose image the initramfs's keyring did
not sign (foreign key, unsigned, tampered after signing) is not started; the other slot is,
with a console and trace line saying why; with no good slot the box stops with the reason.

The built images are signed with the development key (the keyring `ipva build` puts in the
initramfs without --signing-key); the refused ones are that same image re-packed with a key
made at test time, without a signature, or changed after signing (tests/signing.py)."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pytest

from appliance.formats.ipvabin import HEADER_SIZE
from firmware import ipvabin
from hypervisors.qemu.errors import GuestHalted
from hypervisors.qemu.machine import Machine
from images.bootdisk import write_boot_file
from tests.signing import FOREIGN_KEY, tampered
from tests.vm.test_update_vm import assert_stopped_for_good, boot_record, raw_copies

sys.path.insert(0, str(Path(__file__).parents[1] / "hosted"))
from httpbox import authed  # noqa: E402

pytestmark = pytest.mark.vm

DEV = "signed with the DEVELOPMENT key (public: anyone can sign for it)"


def test_a_slot_the_keyring_did_not_sign_is_not_started(
    ipva_machine, ipva_dist: Path, tmp_path: Path
) -> None:
    good = (ipva_dist / "ipva.bin").read_bytes()
    info = ipvabin.parse_header(good[:HEADER_SIZE])
    payload = good[HEADER_SIZE:]
    foreign = ipvabin.pack(payload, info.version, info.build, FOREIGN_KEY)
    unsigned = ipvabin.pack(payload, info.version, info.build)
    disks = raw_copies(ipva_dist, tmp_path / "disks")
    boot = disks[0]
    fw = f"{info.version}"
    # each power-on: the record's slot holds a refused image, the other the good one
    cases = [
        ("IPVA.BIN", foreign, "A", "B",
         f"signed with a key this box does not trust (key {FOREIGN_KEY.keynum.hex()})"),
        ("IPVA2.BIN", unsigned, "B", "A", "not signed"),
        ("IPVA.BIN", tampered(good), "A", "B", "signature wrong (changed after it was signed)"),
    ]  # fmt: skip
    box = None
    for n, (name, bad, bad_slot, good_slot, why) in enumerate(cases):
        other = "IPVA2.BIN" if name == "IPVA.BIN" else "IPVA.BIN"
        write_boot_file(boot, name, bad)
        write_boot_file(boot, other, good)
        if box is None:
            box = ipva_machine("vmware", disks=disks, disk_mode="direct")
        else:
            box.start()
        since = len(box.console_log) if n else 0
        box.wait_for_prompt()
        log = box.console_log[since:]
        note = (f"firmware {bad_slot} ({name} {fw}) did not start ({why}): "
                f"starting {good_slot} ({other} {fw})")  # fmt: skip
        assert note in log, log[-3000:]
        assert f"UP0: {note}" in log  # the runtime's trace says it too
        # the good slot runs, signed with the development key, and says so
        assert f"UP0: firmware in slot {good_slot} ({other}) is {DEV}" in log
        version = box.command("version")
        assert f"slot {good_slot} ({other}): {fw} build {info.build}, running, {DEV}" in version
        short = why.split(" (")[0]  # the runtime's words for the same refusal
        short = {"signed with a key this box does not trust": "which this box does not trust",
                 "signature wrong": "signature wrong: the image was changed after it was signed",
                 "not signed": "not signed: this box takes only"}[short]  # fmt: skip
        assert "did not start, refused by the keyring: " in version and short in version
        if n == 0:
            measure_header_checks(box, good)
        box.power_cut()
        record = boot_record(boot)
        assert record is not None and record.good == (0 if good_slot == "A" else 1), record

    # no slot the keyring signed: the reason and the seed's message, and the box stays there
    assert box is not None
    write_boot_file(boot, "IPVA.BIN", unsigned)
    write_boot_file(boot, "IPVA2.BIN", foreign)
    box.start()
    since = len(box.console_log)
    with pytest.raises(GuestHalted):
        box.wait_for_prompt()
    assert_stopped_for_good(box)
    # B (the record's slot) first, then A: the box stops with A's reason, the seed's words
    assert "\nnot signed! Loading failed for image=IPVA    BIN" in box.console_log[since:]


def measure_header_checks(box: Machine, good: bytes) -> None:
    """The runtime's signature check under TCG, over HTTP: header-only uploads the box
    refuses at the header, alternating, 7 of each. Unsigned: refused before any Ed25519
    (the baseline); tampered: refused by an Ed25519 verification (ecdsa is imported by
    then: the web admin's start showed the slots)."""
    unsigned = ipvabin.pack(b"", "16r1sr1", 1)[:HEADER_SIZE]
    forged = tampered(good[:HEADER_SIZE])
    took: dict[str, list[float]] = {"unsigned": [], "tampered": []}
    for _ in range(7):
        for what, body, reason in (("unsigned", unsigned, "not signed"),
                                   ("tampered", forged, "signature wrong")):  # fmt: skip
            t0 = time.monotonic()
            r = authed(box.http_url, "PUT", "/ipva.bin", body, timeout=120)
            took[what].append(time.monotonic() - t0)
            assert r.status == 400 and reason in r.text, r.text
    base, ed = statistics.median(took["unsigned"]), statistics.median(took["tampered"])
    print(
        f"header check over HTTP under TCG (median of 7): unsigned {base * 1000:.0f} ms, "
        f"tampered (one Ed25519 verification) {ed * 1000:.0f} ms ({ed / base:.2f}x)"
    )
