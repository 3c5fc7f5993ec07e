"""The bootcode's signature check (firmware/bootcode/signify.sh) with the initramfs's own
busybox and signify (static, firmware/bootbins.py), as /init runs it: it takes what the
keyring signed and gives the box's reasons for the rest, the same decisions as the runtime's
check (appliance/formats/ipvabin.py).

busybox and signify come from a build's initramfs tree (.cache/work/initramfs, made by
`ipva build`); the VM test tests/vm/test_signing_vm.py runs the same at a real boot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from firmware import ipvabin
from firmware.initramfs import SIGNIFY
from tests.signing import TEST_KEY, signing_cases

REPO = Path(__file__).resolve().parents[2]
SIGNIFY_SH = REPO / "firmware/bootcode/signify.sh"
PAYLOAD = bytes(range(256)) * 64


@pytest.fixture(scope="module")
def initramfs() -> Path:
    tree = REPO / ".cache/work/initramfs"
    if not (tree / SIGNIFY).exists():
        pytest.skip("no build's initramfs with signify: run `ipva build` first")
    return tree


def _check(initramfs: Path, tmp_path: Path, image: bytes) -> tuple[int, str]:
    """check_signature on `image` with a keyring of the test key: (status, WHY)."""
    bb = shutil.copy2(initramfs / "bin/busybox", tmp_path / "busybox")
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for applet in ("dd", "tr", "base64", "od", "tail", "head", "printf", "cat"):
        if not (bindir / applet).exists():
            (bindir / applet).symlink_to(bb)  # the box's applets (absent: not found)
    ring = tmp_path / "keyring"
    ring.mkdir(exist_ok=True)
    (ring / "test.pub").write_text(TEST_KEY.public().to_text("test key"))
    fw = tmp_path / "IPVA.BIN"
    fw.write_bytes(image)
    prog = (
        f'. "{SIGNIFY_SH}"\nSIGNIFY="{initramfs / SIGNIFY}" KEYRING="{ring}"\n'
        # /init's check_slot holds the digest in `want` across the call
        f'want=digest; check_signature "{fw}"; rc=$?\necho "$rc|$WHY|$want"\n'
    )
    out = subprocess.run(
        [bb, "sh", "-c", prog], capture_output=True, text=True, check=True,
        env={"PATH": str(bindir), "TMPDIR": str(tmp_path)}, cwd=tmp_path,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    rc, why, want = out.split("|")
    assert want == "digest", "check_signature changed its caller's variables"
    return int(rc), why


def test_the_bootcode_takes_what_the_keyring_signed(initramfs: Path, tmp_path: Path) -> None:
    rc, _ = _check(initramfs, tmp_path, ipvabin.pack(PAYLOAD, "16r1sr1", 1, TEST_KEY))
    assert rc == 0


@pytest.mark.parametrize(
    ("what", "expect"),
    [("foreign key", "signed with a key this box does not trust (key "),
     ("unsigned", "not signed"),
     ("tampered", "signature wrong (changed after it was signed)")],
)  # fmt: skip
def test_the_bootcode_refuses_the_rest_with_the_reason(
    initramfs: Path, tmp_path: Path, what: str, expect: str
) -> None:
    image = {w: i for w, i, _ in signing_cases("16r1sr1", 1, PAYLOAD)}[what]
    rc, why = _check(initramfs, tmp_path, image)
    assert rc != 0 and why.startswith(expect), why
