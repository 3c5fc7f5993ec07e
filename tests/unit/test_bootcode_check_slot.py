"""How /init checks a slot's image (check_slot in firmware/bootcode/init) before anything of
it is mounted: header, length, then (after the signature, tests/unit/test_bootcode_signify.py)
the payload's full SHA-256, read through the read-only loop device its squashfs is mounted
from. Run with the initramfs's own busybox, as in the guest, with the loop device stood in
for (no root here): what each image gets, and which processes the check starts (under TCG
each costs milliseconds). tests/vm/test_signing_vm.py and test_update_vm.py boot the same."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from firmware import ipvabin
from firmware.bootbins import BootBins
from firmware.initramfs import BOOTCODE_DIR
from tests.signing import TEST_KEY

REPO = Path(__file__).resolve().parents[2]
INIT = (BOOTCODE_DIR / "init").read_text()
CHECK_SLOT = re.search(r"^check_slot\(\) \{\n.*?^\}\n", INIT, re.M | re.S)
PAYLOAD = bytes(range(256)) * 64  # whole sectors, as mksquashfs pads
IMAGE = "Loading failed for image=IPVA    BIN"
# the applets check_slot could run: each wrapped in a function that notes its name first
# (busybox's sh runs its applets whatever PATH says)
APPLETS = ("head", "tr", "cut", "dd", "od", "stat", "tail", "sha256sum", "cat")
NOTE_RUNS = "".join(f'{a}() {{ echo {a} >> "$RUNS"; command {a} "$@"; }}\n' for a in APPLETS)
# the loop device: a file of what the kernel's would read (from the offset, whole sectors)
LOSETUP = """losetup() {
    echo losetup >> "$RUNS"
    case $1 in
    -f) echo "$WORK/loop0" ;;
    -d) command rm "$2" ;;
    -r) n=$(command stat -c %s "$5")
        command tail -c +$(($3 + 1)) "$5" | command head -c $(((n - $3) / 512 * 512)) > "$4" ;;
    *) return 1 ;;
    esac
}
"""


@pytest.fixture(scope="module")
def busybox(box_bootbins: BootBins) -> Path:
    return box_bootbins.busybox


def _check_slot(busybox: Path, tmp_path: Path, image: bytes) -> dict[str, str]:
    """check_slot 0 on `image` as /boot/IPVA.BIN (its signature taken as good): rc, FW_VERSION,
    WHY, FAIL, LOOP, whether the loop device is left, and the processes it ran (RUNS)."""
    boot = tmp_path / "boot"
    boot.mkdir(exist_ok=True)
    (boot / "IPVA.BIN").write_bytes(image)
    runs = tmp_path / "runs"
    runs.unlink(missing_ok=True)
    assert CHECK_SLOT is not None, "no check_slot in /init"
    prog = (
        f'WORK="{tmp_path}" RUNS="{runs}" IMAGE="{IMAGE}"\n{NOTE_RUNS}{LOSETUP}'
        'mark() { :; }\nstop() { echo "stopped: $*"; exit 3; }\ncheck_signature() { :; }\n'
        + CHECK_SLOT[0].replace("/boot/", f"{boot}/")
        + 'check_slot 0; rc=$?\nleft=no; [ -e "$WORK/loop0" ] && left=yes\n'
        "printf 'rc=%s\\nFW_VERSION=%s\\nWHY=%s\\nFAIL=%s\\nLOOP=%s\\nleft=%s\\n' "
        '"$rc" "$FW_VERSION" "$WHY" "$FAIL" "${LOOP:-}" "$left"\n'
    )
    out = subprocess.run(
        [busybox, "sh", "-c", prog], capture_output=True, text=True, cwd=tmp_path,
        env={"PATH": "/nonexistent"},
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    got = dict(line.split("=", 1) for line in out.stdout.splitlines())
    got["RUNS"] = " ".join(runs.read_text().split()) if runs.exists() else ""
    return got


def test_a_good_image_is_hashed_through_its_loop_device(busybox: Path, tmp_path: Path) -> None:
    got = _check_slot(busybox, tmp_path, ipvabin.pack(PAYLOAD, "16r1sr1", 1, TEST_KEY))
    assert (got["rc"], got["FW_VERSION"]) == ("0", "16r1sr1")
    assert (got["LOOP"], got["left"]) == (f"{tmp_path}/loop0", "yes")  # for the mount
    # no head for the magic, no tr for the version's NULs or od's blanks, no tail | cut
    assert got["RUNS"] == "dd od dd stat losetup losetup sha256sum"


def test_a_payload_of_part_sectors_is_hashed_whole(busybox: Path, tmp_path: Path) -> None:
    # the loop device would end at its last whole sector: this payload goes through a pipe
    got = _check_slot(busybox, tmp_path, ipvabin.pack(PAYLOAD + b"x", "16r1sr1", 1, TEST_KEY))
    assert got["rc"] == "0"
    assert "tail" in got["RUNS"].split()


@pytest.mark.parametrize(
    "magic", [b" IPVABIN", b"IPVA\nBIN", b"IPV\x00ABIN", b"IPVABIX\x1a", b"IPVABI", b""]
)
def test_not_a_firmware_image(busybox: Path, tmp_path: Path, magic: bytes) -> None:
    """The magic's 8 bytes replaced (a newline, a NUL: the shell reads them with no process)."""
    image = ipvabin.pack(PAYLOAD, "16r1sr1", 1, TEST_KEY)
    got = _check_slot(busybox, tmp_path, magic + image[8:] if len(magic) == 8 else magic)
    assert (got["rc"], got["WHY"], got["FAIL"]) == ("1", "not a firmware image", IMAGE)


def test_a_truncated_image_has_the_wrong_length(busybox: Path, tmp_path: Path) -> None:
    image = ipvabin.pack(PAYLOAD, "16r1sr1", 1, TEST_KEY)
    got = _check_slot(busybox, tmp_path, image[:-1])
    assert (got["rc"], got["WHY"], got["left"]) == ("1", "wrong length", "no")


def test_a_changed_payload_fails_its_checksum_and_leaves_no_loop_device(
    busybox: Path, tmp_path: Path
) -> None:
    image = bytearray(ipvabin.pack(PAYLOAD, "16r1sr1", 1, TEST_KEY))
    image[-1] ^= 1
    got = _check_slot(busybox, tmp_path, bytes(image))
    assert (got["rc"], got["WHY"], got["FAIL"]) == ("1", "bad checksum", f"checksum wrong! {IMAGE}")
    assert got["left"] == "no"  # detached: the other slot's check sets up its own
