"""Packaging benchmark: the time to make every target's package, as a ratio to plain
`qemu-img convert` of the same disks (run here, now: the machines are noisy), the size
of each artifact against the goal (OVA ≤ 12 MB), and what each part of the OVA costs.

Uses dist/disks/*.img when the build has made them, else synthetic disks of the same sizes.
The parts table needs a built dist/ (dist/ipva.ova and dist/ipva.bin): the OVA's members,
the boot disk's files (and how the kernel is compressed), the bootcode's and the firmware
payload's parts, each as its bytes and as its cost compressed on its own (zstd at the
payload's level and block size: an estimate of its share of the squashfs, which compresses
each file separately too; the initramfs is one zstd stream, so there it is a rough share).
"""

from __future__ import annotations

import os
import random
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from firmware.ipvabin import HEADER_SIZE
from firmware.kernel import payload_compression
from firmware.payload import SQUASHFS_BLOCK, SQUASHFS_LEVEL
from firmware.run import run
from firmware.settings import BuildSettings
from hypervisors.registry import get_target
from images.bootdisk import read_boot_file

ROLES = ("boot", "cf", "flash", "dump")
TARGETS = ("vmware", "proxmox", "hyperv", "libvirt")
OVA_GOAL = 12 * 1000 * 1000
BOOT_FILES = ("VMLINUZ", "INITRD.ZST", "IPVA.BIN")
# the payload's parts, by path prefix in the squashfs (the first that matches)
PAYLOAD_PARTS = (
    ("CPython interpreter (python3.11)", ("usr/bin/python3",)),
    ("C library, loader, libm, libz, libexpat, libffi", ("lib64/", "lib/x86_64-linux-gnu/libc.",
     "lib/x86_64-linux-gnu/libm.", "lib/x86_64-linux-gnu/libz.", "lib/x86_64-linux-gnu/libexp",
     "lib/x86_64-linux-gnu/libffi")),
    ("OpenSSL (libssl, libcrypto, openssl)", ("lib/x86_64-linux-gnu/libssl",
     "lib/x86_64-linux-gnu/libcrypto", "usr/bin/openssl")),
    ("CA certificates (ca-certificates)", ("usr/lib/ssl/",)),
    ("stdlib C extensions (lib-dynload)", ("usr/lib/python3.11/lib-dynload/",)),
    ("stdlib encodings", ("usr/lib/python3.11/encodings/",)),
    ("stdlib (the rest, .pyc)", ("usr/lib/python3.11/",)),
    ("runtime (appliance)", ("usr/lib/ipva/appliance/",)),
    ("construct", ("usr/lib/ipva/construct/",)),
    ("web stack (werkzeug, jinja2, markupsafe, cheroot, jaraco, more_itertools)",
     ("usr/lib/ipva/",)),
)  # fmt: skip

# the bootcode's parts (INITRD.ZST), the same way
INITRD_PARTS = (
    ("busybox (static, musl, the box's applets)", ("bin/busybox",)),
    ("signify-openbsd (static, musl)", ("bin/signify-openbsd",)),
)  # fmt: skip

WARM_RUNS = 3


def _disks(tmp: Path) -> tuple[dict[str, Path], str]:
    real = {r: Path("dist/disks") / f"{r}.img" for r in ROLES}
    if all(p.is_file() for p in real.values()):
        # a private sparse copy: a VM booted from dist/disks holds qemu's image lock
        copies = {r: tmp / p.name for r, p in real.items()}
        for r, p in real.items():
            run(["cp", "--sparse=always", p, copies[r]])
        return copies, "dist/disks (copied)"
    rnd = random.Random(6)
    sizes = {"boot": 64 << 20, "cf": 128 << 20, "flash": 100 << 20, "dump": 64 << 20}
    out = {}
    for role, size in sizes.items():
        p = tmp / f"{role}.img"
        with p.open("wb") as fh:
            fh.truncate(size)
            if role == "boot":  # ~16 MB of kernel/initramfs-like data, half compressible
                fh.write(rnd.randbytes(8 << 20) + bytes(range(256)) * (8 << 12))
        out[role] = p
    return out, "synthetic"


def _baseline(disks: dict[str, Path], dest: Path) -> None:
    # what a packager without our code would run: one conversion per format we ship
    for role, raw in disks.items():
        for fmt, opts in (
            ("vmdk", "subformat=streamOptimized,adapter_type=ide"),
            ("qcow2", ""),
            ("vhdx", "subformat=dynamic,block_size=1M"),
        ):
            argv: list[str | Path] = ["qemu-img", "convert", "-f", "raw", "-O", fmt]
            if opts:
                argv += ["-o", opts]
            run([*argv, raw, dest / f"{role}.{fmt}"])


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _zstd_size(files: list[Path]) -> int:
    """Bytes of `files` compressed one by one in blocks of the payload's size, as squashfs does."""
    total = 0
    for f in files:
        data = f.read_bytes()
        for i in range(0, len(data), SQUASHFS_BLOCK):
            block = data[i : i + SQUASHFS_BLOCK]
            packed = run(["zstd", "-q", f"-{SQUASHFS_LEVEL}", "-c"], input=block, capture=True)
            total += min(len(packed.stdout), len(block))
    return total


def parts_table(dist: Path, print_: Callable[[str], None] = print) -> None:
    """What the OVA is made of, down to the payload's parts."""
    ova, fw, boot = dist / "ipva.ova", dist / "ipva.bin", dist / "disks" / "boot.img"
    if not (ova.is_file() and fw.is_file() and boot.is_file()):
        print_(f"parts: no built {ova} / {fw}: run `ipva build` first")
        return
    size = ova.stat().st_size
    verdict = "met" if size <= OVA_GOAL else "MISSED"
    print_(f"\nOVA {size / 1e6:.2f} MB (goal ≤ {OVA_GOAL / 1e6:.0f} MB: {verdict})")
    print_(f"{'  member':58}{'MB':>9}")
    with tarfile.open(ova) as tar:
        for member in tar.getmembers():
            print_(f"  {member.name:56}{member.size / 1e6:9.2f}")
    print_(f"{'  boot disk file (stored; the VMDK deflates it)':58}{'MB':>9}")
    for name in BOOT_FILES:
        data = read_boot_file(boot, name)
        how = f"  kernel {payload_compression(data)}" if name == "VMLINUZ" else ""
        print_(f"  {name:56}{len(data) / 1e6:9.2f}{how}")
    with tempfile.TemporaryDirectory(prefix="ipva-bench-parts-") as tmpdir:
        initrd = Path(tmpdir) / "initramfs"
        initrd.mkdir()
        cpio = run(["zstd", "-d", "-c"], input=read_boot_file(boot, "INITRD.ZST"), capture=True)
        run(["cpio", "--quiet", "-i", "-d", "--no-absolute-filenames"], cwd=initrd,
            input=cpio.stdout)  # fmt: skip
        _parts_rows(initrd, INITRD_PARTS, "bootcode part (INITRD.ZST)",
                    len(read_boot_file(boot, "INITRD.ZST")), "(zstd as built, one stream)",
                    print_)  # fmt: skip
        tree = Path(tmpdir) / "payload"
        run(["unsquashfs", "-q", "-n", "-o", str(HEADER_SIZE), "-d", tree, fw])
        _parts_rows(tree, PAYLOAD_PARTS, "payload part", fw.stat().st_size - HEADER_SIZE,
                    "(squashfs as built: metadata, tails and all)", print_)  # fmt: skip


def _parts_rows(
    tree: Path,
    parts: tuple[tuple[str, tuple[str, ...]], ...],
    title: str,
    built: int,
    built_label: str,
    print_: Callable[[str], None],
) -> None:
    """One table of `tree`'s files grouped by path prefix (the first of `parts` that
    matches), each group's bytes and its cost compressed on its own; `built`: the real
    packed size of the whole."""
    files = sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    groups: dict[str, list[Path]] = {name: [] for name, _ in parts}
    groups["other"] = []
    for f in files:
        rel = f.relative_to(tree).as_posix()
        name = next((n for n, pre in parts if rel.startswith(pre)), "other")
        groups[name].append(f)
    print_(f"  {title:56}{'files':>6}{'MB':>9}{'packed MB':>10}{'share':>7}")
    rows = [(n, fs, sum(f.stat().st_size for f in fs), _zstd_size(fs))
            for n, fs in groups.items() if fs]  # fmt: skip
    packed_total = sum(r[3] for r in rows)
    for name, fs, raw, packed in sorted(rows, key=lambda r: -r[3]):
        share = packed / packed_total * 100
        print_(f"  {name[:56]:56}{len(fs):6}{raw / 1e6:9.2f}{packed / 1e6:10.2f}{share:6.0f}%")
    print_(f"  {built_label:56}{len(files):6}"
           f"{sum(r[2] for r in rows) / 1e6:9.2f}{built / 1e6:10.2f}")  # fmt: skip


def main() -> None:
    parts_table(Path("dist"))
    with tempfile.TemporaryDirectory(prefix="ipva-bench-") as tmpdir:
        tmp = Path(tmpdir)
        disks, source = _disks(tmp)
        sizes = ", ".join(f"{r} {p.stat().st_size >> 20} MiB" for r, p in disks.items())
        print(f"disks: {source} ({sizes})")

        def build(run_id: str) -> dict[str, float]:
            settings = BuildSettings(out_dir=tmp / f"dist-{run_id}")
            return {t: _timed(lambda t=t: get_target(t).make(settings, disks)) for t in TARGETS}

        def baseline(run_id: str) -> float:
            d = tmp / f"base-{run_id}"
            d.mkdir()
            return _timed(lambda: _baseline(disks, d))

        cold_ok = _drop_caches()
        cold_base = baseline("cold")
        _drop_caches()
        cold = build("cold")
        warm_base = statistics.median(baseline(f"w{i}") for i in range(WARM_RUNS))
        warm_runs = [build(f"w{i}") for i in range(WARM_RUNS)]
        warm = {t: statistics.median(r[t] for r in warm_runs) for t in TARGETS}

        label = "cold (page cache dropped)" if cold_ok else "cold (first run; cache not dropped)"
        print(f"\n{'':28}{'time s':>9}{'ratio':>8}")
        print(f"{'qemu-img convert baseline':28}{cold_base:9.2f}{1:8.2f}   {label}")
        for t in TARGETS:
            print(f"  {t:26}{cold[t]:9.2f}{cold[t] / cold_base:8.2f}")
        total = sum(cold.values())
        print(f"{'all targets':28}{total:9.2f}{total / cold_base:8.2f}")
        warm_label = f"warm (median of {WARM_RUNS})"
        print(f"{'qemu-img convert baseline':28}{warm_base:9.2f}{1:8.2f}   {warm_label}")
        for t in TARGETS:
            print(f"  {t:26}{warm[t]:9.2f}{warm[t] / warm_base:8.2f}")
        total = sum(warm.values())
        print(f"{'all targets':28}{total:9.2f}{total / warm_base:8.2f}")

        out = tmp / "dist-cold"
        print(f"\n{'artifact':36}{'bytes':>14}{'MB':>9}")
        for p in sorted(q for q in out.rglob("*") if q.is_file()):
            size = p.stat().st_size
            note = ""
            if p.suffix == ".ova":
                met = "met" if size <= OVA_GOAL else "MISSED"
                note = f"  goal ≤ {OVA_GOAL / 1e6:.0f} MB: {met}"
            print(f"{str(p.relative_to(out)):36}{size:14}{size / 1e6:9.2f}{note}")


if __name__ == "__main__":
    main()
