"""Build time, cold (empty cache: .debs downloaded and unpacked) and warm (cache kept), and
the size of every output. The baseline is `apt-get download` of the same .debs alone and
copying the raw disks, measured in the same run."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from firmware import debs as debs_mod
from firmware.settings import BuildSettings
from tools.build import build


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ipva-bench-build-") as tmp:
        work = Path(tmp)
        baseline = _timed(lambda: debs_mod.fetch_debs(work / "dl-only"))
        cold_settings = BuildSettings(out_dir=work / "cold", cache_dir=work / "cache", targets=())
        cold = _timed(lambda: build(cold_settings))
        warm_runs = []
        for i in range(3):
            s = BuildSettings(out_dir=work / f"warm{i}", cache_dir=work / "cache", targets=())
            r = {}
            warm_runs.append(_timed(lambda s=s, r=r: r.update(build(s).timings)))
        all_targets = BuildSettings(out_dir=work / "all", cache_dir=work / "cache")
        full = _timed(lambda: build(all_targets))
        warm = sorted(warm_runs)[1]
        print(f"{'build':<38} {'s':>7} {'× download':>11}")
        print(f"{'baseline: apt-get download of the .debs':<38} {baseline:>7.1f} {1.0:>11.2f}")
        print(f"{'cold (no cache), firmware + disks':<38} {cold:>7.1f} {cold / baseline:>11.2f}")
        print(f"{'warm (median of 3), firmware + disks':<38} {warm:>7.1f} {warm / baseline:>11.2f}")
        print(f"{'warm, all four hypervisor targets':<38} {full:>7.1f} {full / baseline:>11.2f}")
        print(f"\n{'output':<40} {'bytes':>12} {'allocated':>12}")
        out = work / "all"
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            st = path.stat()
            print(f"{str(path.relative_to(out)):<40} {st.st_size:>12,} {st.st_blocks * 512:>12,}")
        shutil.rmtree(work / "cache", ignore_errors=True)
