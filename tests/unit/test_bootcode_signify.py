"""The bootcode's signature check (firmware/bootcode/signify.sh) with the initramfs's own
busybox and signify (static, firmware/bootbins.py), as /init runs it: it takes what the
keyring signed and gives the box's reasons for the rest, the same decisions as the runtime's
check (appliance/formats/ipvabin.py).

busybox and signify are the ones the initramfs carries (the box_bootbins fixture: the
per-user build cache); the VM test tests/vm/test_signing_vm.py runs the same at a real boot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.formats.signify import SecretKey
from firmware import ipvabin
from firmware.bootbins import BootBins
from tests.signing import FOREIGN_KEY, TEST_KEY, signing_cases

REPO = Path(__file__).resolve().parents[2]
SIGNIFY_SH = REPO / "firmware/bootcode/signify.sh"
PAYLOAD = bytes(range(256)) * 64


# the applets signify.sh could run: each wrapped in a function that notes its name first
# (busybox's sh runs its applets whatever PATH says: no PATH can leave one out; echo and
# printf are the shell's builtins)
APPLETS = ("dd", "head", "tail", "od", "tr", "base64", "cat", "cut")
NOTE_RUNS = "".join(f'{a}() {{ echo {a} >> "$RUNS"; command {a} "$@"; }}\n' for a in APPLETS)


def _busybox(box_bootbins: BootBins, tmp_path: Path) -> Path:
    return Path(shutil.copy2(box_bootbins.busybox, tmp_path / "busybox"))


def _check(
    box_bootbins: BootBins, tmp_path: Path, image: bytes, keys: list[str] | None = None
) -> tuple[int, str]:
    """check_signature on `image` with a keyring of `keys` (*.pub files' texts; default:
    the test key's): (status, WHY). It runs dd and head, and signify: the key numbers come
    with no process (under TCG each costs milliseconds)."""
    bb = _busybox(box_bootbins, tmp_path)
    ring = tmp_path / "keyring"
    ring.mkdir(exist_ok=True)
    for i, text in enumerate(keys or [TEST_KEY.public().to_text("test key")]):
        (ring / f"key{i}.pub").write_text(text)
    fw = tmp_path / "IPVA.BIN"
    fw.write_bytes(image)
    runs = tmp_path / "runs"
    runs.unlink(missing_ok=True)
    prog = (
        f'. "{SIGNIFY_SH}"\nSIGNIFY="{box_bootbins.signify}" KEYRING="{ring}"\n'
        f'RUNS="{runs}"\n{NOTE_RUNS}'
        # /init's check_slot holds the digest in `want` across the call
        f'want=digest; check_signature "{fw}"; rc=$?\necho "$rc|$WHY|$want"\n'
    )
    out = subprocess.run(
        [bb, "sh", "-c", prog], capture_output=True, text=True, check=True,
        env={"PATH": "/nonexistent", "TMPDIR": str(tmp_path)}, cwd=tmp_path,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    rc, why, want = out.split("|")
    assert want == "digest", "check_signature changed its caller's variables"
    ran = runs.read_text().split() if runs.exists() else []
    assert set(ran) <= {"dd", "head"}, f"check_signature ran {ran}"
    return int(rc), why


def test_the_bootcode_takes_what_the_keyring_signed(box_bootbins: BootBins, tmp_path: Path) -> None:
    rc, _ = _check(box_bootbins, tmp_path, ipvabin.pack(PAYLOAD, "16r1sr1", 1, TEST_KEY))
    assert rc == 0


@pytest.mark.parametrize(
    ("what", "expect"),
    [("foreign key", "signed with a key this box does not trust (key "),
     ("unsigned", "not signed"),
     ("tampered", "signature wrong (changed after it was signed)")],
)  # fmt: skip
def test_the_bootcode_refuses_the_rest_with_the_reason(
    box_bootbins: BootBins, tmp_path: Path, what: str, expect: str
) -> None:
    image = {w: i for w, i, _ in signing_cases("16r1sr1", 1, PAYLOAD)}[what]
    rc, why = _check(box_bootbins, tmp_path, image)
    assert rc != 0 and why.startswith(expect), why


def test_the_key_numbers_are_the_records_own(box_bootbins: BootBins, tmp_path: Path) -> None:
    """keynum (shell only) gives what `base64 -d | od` gave: bytes 2..9 of the record."""
    keys = [SecretKey.generate() for _ in range(20)]
    lines = [k.public().to_text("k").splitlines()[-1] for k in keys]
    lines += [k.sign(b"header").to_b64() for k in keys]
    bb = _busybox(box_bootbins, tmp_path)
    script = (
        f'. "{SIGNIFY_SH}"\nwhile read -r l; do keynum "$l" > /dev/null; echo "$KEYNUM"; done\n'
    )
    out = subprocess.run(
        [bb, "sh", "-c", script], input="\n".join(lines) + "\n", capture_output=True,
        text=True, check=True, env={"PATH": "/nonexistent"},
    ).stdout.splitlines()  # fmt: skip
    assert out == [k.keynum.hex() for k in keys] * 2


def test_the_bootcode_finds_the_signing_key_among_others(
    box_bootbins: BootBins, tmp_path: Path
) -> None:
    others = [SecretKey.generate().public().to_text(f"other {i}") for i in range(3)]
    ours = TEST_KEY.public().to_text("test key")
    image = ipvabin.pack(PAYLOAD, "16r1sr1", 1, TEST_KEY)
    assert _check(box_bootbins, tmp_path, image, [others[0], ours, *others[1:]])[0] == 0
    foreign = ipvabin.pack(PAYLOAD, "16r1sr1", 1, FOREIGN_KEY)
    rc, why = _check(box_bootbins, tmp_path, foreign, others)
    assert rc != 0
    assert why == f"signed with a key this box does not trust (key {FOREIGN_KEY.keynum.hex()})"
