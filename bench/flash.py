"""FLASHMAN benchmark: `python -m bench flash`.

- VARS commit latency (every commit flushed with fsync to an image file on the host's disk)
  and write amplification = bytes written to the disk / payload bytes (keys + values);
- FLASHDIR add of 10k and 50k items (each add is its own durable commit);
- mount time of a full 64 MiB and a full 512 MiB flash, as a ratio to a raw sequential read
  of the same file measured in the same run (goal <= 2x). Both with the file in the page
  cache, so the ratio is CPU cost of the scan against the cost of just moving the bytes.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from appliance.flash import mount_flash
from appliance.flash.flashman import FlashFullError, MiB
from appliance.flash.format import OWNER_LDAP
from appliance.hal.block import FileBlockDevice

RAM_STD = 256 * MiB  # the shipped appliance
RAM_BIG = 3072 * MiB  # the seed's large-flash recipe


def _image(tmp: Path, name: str, size: int) -> Path:
    path = tmp / name
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def _quiet(_line: str) -> None:
    pass


def _attrs(i: int, pad: int = 0) -> str:
    return f"(cn=user{i:06d})(h323=user{i:06d})(e164={100000 + i})(loc=Sindelfingen)(node=root)" + (
        "(x=" + "z" * pad + ")" if pad else ""
    )


def bench_vars(tmp: Path) -> list[tuple[str, str]]:
    rows = []
    path = _image(tmp, "vars.raw", 100 * 1000 * 1000)
    with FileBlockDevice(path) as dev:
        fl = mount_flash(dev, ram_bytes=RAM_STD, trace=_quiet)
        fm = fl.flashman
        for label, n, make in (
            (
                "VARS commit, 1 key x 120 B",
                8000,
                lambda i: {f"cfg{i % 50}": b"v" * 116 + b"%04d" % (i % 10000)},
            ),
            (
                "VARS commit, config write 40 keys x 60 B",
                300,
                lambda i: {f"mod{k}": b"%05d" % i + b"c" * 55 for k in range(40)},
            ),
        ):
            lat = []
            payload = 0
            w0 = fm.bytes_written
            for i in range(n):
                upd = make(i)
                payload += sum(len(k) + len(v) for k, v in upd.items())
                t = time.perf_counter()
                fl.vars.commit(upd)
                lat.append(time.perf_counter() - t)
            wa = (fm.bytes_written - w0) / payload
            lat.sort()
            rows.append(
                (
                    label,
                    f"median {statistics.median(lat) * 1e3:.2f} ms, "
                    f"p99 {lat[int(n * 0.99)] * 1e3:.2f} ms, write amplification {wa:.2f}x "
                    f"({n} commits, {fm.compactions} compactions so far)",
                )
            )
    return rows


def bench_flashdir(tmp: Path) -> list[tuple[str, str]]:
    rows = []
    for n in (10_000, 50_000):
        path = _image(tmp, f"fdir{n}.raw", 100 * 1000 * 1000)
        with FileBlockDevice(path) as dev:
            fl = mount_flash(dev, ram_bytes=RAM_STD, trace=_quiet)
            payload = 0
            t = time.perf_counter()
            for i in range(n):
                a = _attrs(i)
                payload += 4 + len(a)
                fl.flashdir.add_item(i, a)
            dt = time.perf_counter() - t
            wa = fl.flashman.bytes_written / payload
            rows.append(
                (
                    f"FLASHDIR add {n // 1000}k items (~{payload // n} B)",
                    f"{dt:.2f} s, {dt / n * 1e6:.0f} us/item, write amplification {wa:.2f}x",
                )
            )
    return rows


def _best(fn: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _raw_read(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 4 * MiB):
            pass
    finally:
        os.close(fd)


def fill_flash(path: Path, ram: int, pad: int, *, reset_all: bool) -> tuple[int, int]:
    """Fill FLASHDIR until it is full, in bulk transactions (fast to build); no fsync."""

    class NoSync(FileBlockDevice):
        def flush(self) -> None:
            pass

    with NoSync(path) as dev:
        fl = mount_flash(dev, ram_bytes=ram, trace=_quiet)
        if reset_all:
            fl.flashman.reset_all()
        fl.vars.commit({f"mod{k}": b"c" * 60 for k in range(200)})
        i = 0
        batch = 500
        while True:
            try:
                fl.flashman.commit(
                    OWNER_LDAP,
                    [(j.to_bytes(4, "big"), _attrs(j, pad).encode()) for j in range(i, i + batch)],
                )
                i += batch
            except FlashFullError:
                if batch == 1:
                    break
                batch = max(1, batch // 10)
        return i, len(fl.flashman.owners[OWNER_LDAP].segs)


def bench_mount(tmp: Path) -> list[tuple[str, str]]:
    rows = []
    for label, size, ram, pad, reset_all in (
        ("64 MiB flash, ~80 B items", 100 * 1000 * 1000, RAM_STD, 0, False),
        ("64 MiB flash, ~1 KiB items", 100 * 1000 * 1000, RAM_STD, 900, False),
        ("512 MiB flash, ~1 KiB items", 512 * MiB, RAM_BIG, 900, True),
    ):
        path = _image(tmp, "full.raw", size)
        items, segs = fill_flash(path, ram, pad, reset_all=reset_all)
        _raw_read(path)  # warm the page cache for both
        raw = _best(lambda p=path: _raw_read(p), 3)

        def mount(p: Path = path, r: int = ram) -> None:
            with FileBlockDevice(p, readonly=True) as dev:
                mount_flash(dev, ram_bytes=r, trace=_quiet, readonly=True)

        mnt = _best(mount, 2 if size > 100 * MiB else 3)
        rows.append(
            (
                f"mount full {label}",
                f"{mnt:.2f} s vs raw read {raw:.3f} s = {mnt / raw:.1f}x "
                f"({items} items in {segs} segments)",
            )
        )
        path.unlink()
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ipva-bench-flash-", dir="/var/tmp") as d:
        tmp = Path(d)
        rows = bench_vars(tmp) + bench_flashdir(tmp) + bench_mount(tmp)
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':{width}}  result")
    print(f"{'-' * width}  {'-' * 60}")
    for name, result in rows:
        print(f"{name:{width}}  {result}")


if __name__ == "__main__":
    main()
