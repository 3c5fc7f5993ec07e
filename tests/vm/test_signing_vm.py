"""The bootcode's signature check under QEMU: a slot whose image the initramfs's keyring did
not sign (foreign key, unsigned, tampered after signing) is not started; the other slot is,
with a console and trace line saying why; with no good slot the box stops with the reason.

The built images are signed with the development key (the keyring `ipva build` puts in the
initramfs without --signing-key); the refused ones are that same image re-packed with a key
made at test time, without a signature, or changed after signing (tests/signing.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from appliance.formats.ipvabin import HEADER_SIZE
from firmware import ipvabin
from hypervisors.qemu.errors import GuestHalted
from images.bootdisk import write_boot_file
from tests.signing import FOREIGN_KEY, tampered
from tests.vm.test_update_vm import assert_stopped_for_good, boot_record, raw_copies

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
        # the first `version` of a boot checks both slots' signatures (ecdsa's import and
        # two Ed25519 verifications under TCG); the second answers from what it read
        t0 = time.monotonic()
        version = box.command("version")
        t1 = time.monotonic()
        box.command("version")
        t2 = time.monotonic()
        print(f"boot {n + 1}: version with the signature checks {t1 - t0:.2f} s, "
              f"without (cached) {t2 - t1:.2f} s")  # fmt: skip
        assert f"slot {good_slot} ({other}): {fw} build {info.build}, running, {DEV}" in version
        box.power_cut()
        record = boot_record(boot)
        assert record is not None and record.good == (0 if good_slot == "A" else 1), record

    # no slot the keyring signed: the reason and the seed's message, and the box stays there
    assert box is not None
    write_boot_file(boot, "IPVA.BIN", unsigned)
    write_boot_file(boot, "IPVA2.BIN", foreign)
    box.start()
    with pytest.raises(GuestHalted) as halted:
        box.wait_for_prompt()
    assert halted.value.message.endswith("! Loading failed for image=IPVA    BIN")
    assert "not signed!" in halted.value.message or "does not trust" in halted.value.message
    assert_stopped_for_good(box)
