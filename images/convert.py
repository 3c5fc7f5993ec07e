"""Disk conversions through qemu-img (qcow2, VHDX, monolithicSparse VMDK) and their checks.

Every qemu-img call goes through firmware.run.run(). Outputs are made reproducible: qcow2 is
already deterministic; VHDX GUIDs and the VMDK CID are random in qemu-img and are replaced
with values derived from a seed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from firmware.run import run
from images import vhdx, vmdk

MiB = 1 << 20


def whole_mib(size: int) -> int:
    """Round up to whole MiB: Hyper-V wants VHDX sizes in MiB, and we use it for all formats."""
    return -(-size // MiB) * MiB


def disk_size(raw: Path) -> int:
    return whole_mib(raw.stat().st_size)


def make_qcow2(raw: Path, out: Path) -> Path:
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, out])
    if out.stat().st_size and disk_size(raw) != raw.stat().st_size:
        # qcow2 grows cheaply: just the header's size field
        run(["qemu-img", "resize", "-q", "-f", "qcow2", out, str(disk_size(raw))])
    return out


def make_vhdx(raw: Path, out: Path, seed: str) -> Path:
    """Dynamic VHDX, 1 MiB blocks, whole-MiB size (created first, then filled: -n)."""
    out.unlink(missing_ok=True)
    run(
        ["qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M"]
        + [out, str(disk_size(raw))]
    )
    run(
        ["qemu-img", "convert", "-q", "-n", "--target-is-zero", "-f", "raw", "-O", "vhdx", raw, out]
    )
    vhdx.make_reproducible(out, seed)
    return out


def make_vmdk_sparse(raw: Path, out: Path, seed: str) -> Path:
    """monolithicSparse VMDK for Workstation/Player (it cannot run streamOptimized disks)."""
    out.unlink(missing_ok=True)
    run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "vmdk",
            "-o",
            "subformat=monolithicSparse,adapter_type=ide",
        ]
        + [out, str(disk_size(raw))]
    )
    # the descriptor as created: qemu's CID update during the convert can leave stray bytes
    descriptor = vmdk.descriptor_area(out)
    run(
        ["qemu-img", "convert", "-q", "-n", "--target-is-zero", "-f", "raw", "-O", "vmdk", raw, out]
    )
    cid = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "little") or 1
    vmdk.set_descriptor_cid(out, cid, template=descriptor)
    return out


def make_vmdk_stream(raw: Path, out: Path, *, level: int = 9) -> Path:
    vmdk.make_stream_optimized(raw, out, capacity_bytes=disk_size(raw), level=level)
    return out


def run_check(path: Path, fmt: str) -> None:
    """qemu-img check; raises ToolError when it finds anything."""
    run(["qemu-img", "check", "-q", "-f", fmt, path])


def run_compare(raw: Path, image: Path, fmt: str) -> None:
    """qemu-img compare against the raw disk; extra space must read as zeros."""
    run(["qemu-img", "compare", "-q", "-f", "raw", "-F", fmt, raw, image])


def image_info(path: Path) -> dict:
    out = run(["qemu-img", "info", "--output=json", path], capture=True).stdout
    return json.loads(out)
