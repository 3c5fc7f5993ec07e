"""Packaging benchmark: the time to make every target's package, as a ratio to plain
`qemu-img convert` of the same disks (run here, now: the machines are noisy), and the size
of each artifact against the goal (OVA ≤ 25 MB).

Uses dist/disks/*.img when the build has made them, else synthetic disks of the same sizes.
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from firmware.run import run
from firmware.settings import BuildSettings
from hypervisors.registry import get_target

ROLES = ("boot", "cf", "flash", "dump")
TARGETS = ("vmware", "proxmox", "hyperv", "libvirt")
OVA_GOAL = 25 * 1000 * 1000
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


def main() -> None:
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
                note = "  goal ≤ 25 MB: " + ("met" if size <= OVA_GOAL else "MISSED")
            print(f"{str(p.relative_to(out)):36}{size:14}{size / 1e6:9.2f}{note}")


if __name__ == "__main__":
    main()
