"""How /init starts the runtime's interpreter (firmware/bootcode/init): with a hash seed of
its own, so that Python's start does not wait for the kernel's CRNG (seconds in an early
VM), and the block that makes it never stops /init, whatever /proc says. Run with busybox's
sh, as in the guest."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware.initramfs import BOOTCODE_DIR

INIT = (BOOTCODE_DIR / "init").read_text()
UUID = "/proc/sys/kernel/random/uuid"
SEED_BLOCK = re.search(r'^seed=""\n.*?^esac\n', INIT, re.M | re.S)
BUSYBOX = shutil.which("busybox")


def seed_from(uuid_file: str) -> str:
    """What the seed block exports when the UUID comes from `uuid_file` (empty: none)."""
    assert SEED_BLOCK is not None
    block = SEED_BLOCK[0].replace(UUID, uuid_file)
    script = f'{block}echo "seed=${{PYTHONHASHSEED:-none}}"\n'
    assert BUSYBOX is not None
    out = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().removeprefix("seed=")


def test_the_interpreter_starts_after_its_hash_seed_without_site_or_working_directory() -> None:
    assert SEED_BLOCK is not None, "no hash seed block in /init"
    start = INIT.index('/usr/bin/python3.11 -S -P -c "$RUNTIME"\n')
    assert SEED_BLOCK.start() < start
    assert UUID in SEED_BLOCK[0]  # the kernel's RNG, read without waiting for its CRNG


def test_the_runtime_is_imported_not_run_through_runpy() -> None:
    """Both starts (the runtime, and the crash record after it died) import
    appliance.__main__ with -c: -m would run it through runpy, importing importlib.util
    and more before the runtime's first line (~0.1 s under TCG)."""
    assert re.search(r'^RUNTIME="import appliance\.__main__"', INIT, re.M)
    starts = re.findall(r"^\s*/usr/bin/python3\.11 (.*)$", INIT, re.M)
    assert starts == ['-S -P -c "$RUNTIME"', '-S -P -c "$RUNTIME" died "$rc" || true']


@pytest.mark.skipif(BUSYBOX is None, reason="busybox-static not installed (./dev installs it)")
def test_the_seed_is_32_bits_of_a_random_uuid(tmp_path: Path) -> None:
    uuid = tmp_path / "uuid"
    uuid.write_text("9f86d081-884c-4d63-a5e3-6c1b0e2c1a7e\n")
    assert seed_from(str(uuid)) == str(0x9F86D081)
    uuid.write_text("ffffffff-0000-4000-8000-000000000000\n")
    assert seed_from(str(uuid)) == str(2**32 - 1)  # the largest seed Python takes
    seeds = {seed_from(UUID) for _ in range(3)}  # this host's kernel: a new one each read
    assert all(0 <= int(s) < 2**32 for s in seeds) and len(seeds) > 1


@pytest.mark.skipif(BUSYBOX is None, reason="busybox-static not installed (./dev installs it)")
def test_no_readable_uuid_leaves_the_seed_to_python_and_init_goes_on(tmp_path: Path) -> None:
    assert seed_from(str(tmp_path / "missing")) == "none"
    odd = tmp_path / "odd"
    odd.write_text("not-hex!\n")
    assert seed_from(str(odd)) == "none"
