"""What the built boot disk carries, and nothing the guest never needs (issue 27, a smaller
package): a zstd kernel, one C library in the bootcode (signify's; busybox is static), no
executables but python3.11 and the openssl command (certificates and requests: services/http)
and only the codecs the box looks up in the payload. The VM tests boot the
same disks."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from firmware.initramfs import SIGNIFY_DIR
from firmware.ipvabin import HEADER_SIZE
from firmware.kernel import payload_compression
from firmware.payload import CODECS
from images.bootdisk import read_boot_file

pytestmark = pytest.mark.vm  # needs the built dist/


def _payload_files(dist: Path) -> list[str]:
    listing = subprocess.run(
        ["unsquashfs", "-l", "-n", "-o", str(HEADER_SIZE), dist / "ipva.bin"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    prefix = "squashfs-root/"
    return [line[len(prefix) :] for line in listing.splitlines() if line.startswith(prefix)]


def test_the_kernel_on_the_boot_disk_is_zstd_compressed(ipva_dist: Path) -> None:
    boot = ipva_dist / "disks" / "boot.img"
    assert payload_compression(read_boot_file(boot, "VMLINUZ")) == "ZSTD"


def test_the_payload_has_two_commands_and_only_the_codecs_looked_up(
    ipva_dist: Path,
) -> None:
    files = _payload_files(ipva_dist)
    commands = [f for f in files if f.startswith("usr/bin/")]
    assert commands == ["usr/bin/openssl", "usr/bin/python3.11"]
    codecs = {Path(f).stem for f in files if f.startswith("usr/lib/python3.11/encodings/")}
    # mbcs: encodings/__init__ imports it on Windows, and the import graph follows that
    assert codecs == {"__init__", "aliases", "mbcs", *CODECS}


def test_the_bootcode_carries_one_c_library(ipva_dist: Path, tmp_path: Path) -> None:
    boot = ipva_dist / "disks" / "boot.img"
    cpio = subprocess.run(
        ["zstd", "-d", "-c"], input=read_boot_file(boot, "INITRD.ZST"), capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    names = (
        subprocess.run(["cpio", "--quiet", "-t"], input=cpio, capture_output=True, check=True)
        .stdout.decode()
        .split()
    )
    assert [n for n in names if n.endswith("/libc.so.6")] == [f"{SIGNIFY_DIR}/libc.so.6"]
