"""Boot phases under QEMU (TCG here), median of RUNS boots, against a floor measured in the
same run: the same kernel on the same kind of boot disk, with an initramfs whose /init only
prints a marker. The ratio ready/floor is what our bootcode + runtime cost on top of
"SeaBIOS + SYSLINUX + kernel" on this machine, whatever its speed today.

Phases (first appearance on the serial console, seconds since QEMU was started):
    syslinux  SYSLINUX banner          (SeaBIOS done)
    init      "IPVA bootcode"          (kernel + initramfs loaded and unpacked, /init runs)
    runtime   first boot-trace line    (IPVA.BIN checked, payload mounted, CPython up)
    ready     the shell prompt         (flash mounted, config loaded, DHCP lease)
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from firmware.initramfs import make_cpio_zstd
from firmware.run import run
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import dist_disks, get_profile
from images.bootdisk import make_boot_disk, read_boot_file
from tools.build import REPO, source_date_epoch

RUNS = 3
PHASES = {
    "syslinux": "SYSLINUX",
    "init": "IPVA bootcode",
    "runtime": "0:0000:030:4 - ",
    "ready": "IPVA> ",
}
FLOOR_MARKER = "FLOOR-MARKER-UP"
FLOOR_INIT = (
    "#!/bin/sh\nmount -t devtmpfs dev /dev\n"
    f"echo {FLOOR_MARKER} > /dev/ttyS0\nwhile :; do sleep 3600; done\n"
)


def _timed_boot(disks: list[Path], markers: dict[str, str], workdir: Path) -> dict[str, float]:
    seen: dict[str, float] = {}
    text = bytearray()
    t0 = time.monotonic()

    def on_console(data: bytes) -> None:
        text.extend(data)
        decoded = text.decode("latin-1")
        for phase, marker in markers.items():
            if phase not in seen and marker in decoded:
                seen[phase] = time.monotonic() - t0

    last = list(markers)[-1]
    with Machine(get_profile("vmware"), disks, workdir, on_console=[on_console]) as m:
        t0 = time.monotonic()
        m.start()
        m.wait_for_console(markers[last].strip())
    return seen


def _floor_disks(dist: Path, work: Path) -> list[Path]:
    """The shipped kernel, a marker-only initramfs, on a boot disk made the same way."""
    boot = dist / "disks" / "boot.img"
    tree = work / "floor-root"
    (tree / "bin").mkdir(parents=True)
    debroot = next((REPO / ".cache" / "work").glob("debroot-*"))
    shutil.copy2(debroot / "bin/busybox", tree / "bin/busybox")
    for applet in ("sh", "echo", "sleep", "mount"):
        (tree / "bin" / applet).symlink_to("busybox")
    (tree / "dev").mkdir()
    (tree / "init").write_text(FLOOR_INIT)
    (tree / "init").chmod(0o755)
    make_cpio_zstd(tree, work / "floor.zst", source_date_epoch())
    kernel = work / "vmlinuz"
    kernel.write_bytes(read_boot_file(boot, "VMLINUZ"))
    floor_boot = make_boot_disk(
        work / "floor-boot.img", {"VMLINUZ": kernel, "INITRD.ZST": work / "floor.zst"},
        source_date_epoch(),
    )  # fmt: skip
    return [floor_boot, *dist_disks(dist)[1:]]


def main() -> None:
    dist = REPO / "dist"
    if not (dist / "ipva.bin").exists():
        run(["ipva", "build", "--targets", "none"], cwd=REPO)
    with tempfile.TemporaryDirectory(prefix="ipva-bench-boot-") as tmp:
        work = Path(tmp)
        floor_disks = _floor_disks(dist, work)
        floor, full = [], []
        for i in range(RUNS):  # interleaved, so drift on a shared machine hits both
            floor.append(_timed_boot(floor_disks, {"floor": FLOOR_MARKER}, work / f"f{i}"))
            full.append(_timed_boot(dist_disks(dist), PHASES, work / f"b{i}"))
    floor_s = statistics.median(r["floor"] for r in floor)
    print(f"boot phases, median of {RUNS} boots each (QEMU start → first console marker)")
    print(f"{'phase':<10} {'median s':>9} {'min s':>7} {'max s':>7} {'× floor':>8}")
    print(f"{'floor':<10} {floor_s:>9.2f} {min(r['floor'] for r in floor):>7.2f} "
          f"{max(r['floor'] for r in floor):>7.2f} {1.0:>8.2f}")  # fmt: skip
    for phase in PHASES:
        values = [r[phase] for r in full if phase in r]
        med = statistics.median(values)
        print(f"{phase:<10} {med:>9.2f} {min(values):>7.2f} {max(values):>7.2f} "
              f"{med / floor_s:>8.2f}")  # fmt: skip
