"""Where the boot time goes, under QEMU (TCG here): median of RUNS boots of each kind,
interleaved, against a floor measured in the same run.

The floor is Debian's kernel on a boot disk made the same way, with the kernel arguments the
box shipped with when this bench was written (pinned: a kernel-argument cut must show up
as a gain, not move the floor) and an initramfs whose /init only prints a marker and the
kernel clock. The ratio ready/floor is what our bootcode + runtime cost on top of "SeaBIOS +
SYSLINUX + kernel" on this machine, whatever its speed today.

Boot kinds (all on the vmware profile, 256 MiB):
    floor     the floor above
    kernel    the box's own kernel (firmware/kernel.py) with the floor's marker-only /init:
              the kernel's share of the gain
    empty     the shipped disks with a formatted, empty flash (every `reset` of a new box)
    profile   as empty, with `initcall_debug ipva.bootprof` on the kernel command line: /init
              copies the kernel log (its own step marks included) to the serial console
              before starting the runtime, and the host polls the vCPU for long mode (the
              kernel's decompressor starting), and the runtime runs with
              PYTHONPROFILEIMPORTTIME (its imports timed on the console: the slowest are
              listed). Used for the breakdown, not for the ratios.
    full64    a full 64 MiB flash (~80 B FLASHDIR items)
    full512   a full 512 MiB flash, 3 GiB RAM (not in the default set: slow under TCG)
    baseline  as empty, but the dist/ of another build (IPVA_BENCH_BOOT_BASELINE=DIR): a
              change against its parent in one run
    baseline512  with a baseline and full512: the other build on the same full 512 MiB flash
    resume    as empty, but from a saved state of it (one boot, saved at the quiet prompt,
              not counted): QEMU start → the prompt drawn again in answer to Enter

Phases come from three clocks: host time of console lines (QEMU start = 0), the kernel's
printk clock (aligned to the host at the "IPVA bootcode" line) and the host's poll of the
vCPU mode. `python -m bench boot` runs everything; `bench.boot.bench(kinds, runs)` a subset.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.flash import mount_flash
from appliance.hal.block import FileBlockDevice
from bench.flash import fill_flash
from firmware.bootbins import build_bootbins
from firmware.debs import fetch_debs, resolve_kernel_package
from firmware.initramfs import make_cpio_zstd
from firmware.run import run
from hypervisors.qemu.machine import Machine, boot_and_save
from hypervisors.qemu.profiles import dist_disks, get_profile
from hypervisors.qemu.savedstate import SavedState
from images.bootdisk import (
    KERNEL_ARGS,
    SYSLINUX_CFG,
    make_boot_disk,
    read_boot_file,
    write_boot_file,
)
from tools.build import REPO, source_date_epoch

RUNS = 3
KINDS = ("floor", "kernel", "empty", "profile", "full64", "resume")
FLOOR_KERNEL_ARGS = "console=tty0 console=ttyS0,115200n8 quiet loglevel=3 panic=10"
PROFILE_ARGS = "initcall_debug log_buf_len=1M ipva.bootprof"
GUEST_RAM = 215810048  # what the 256 MiB guest reports (mem(…)): sizes FLASHDIR as in the box
FLOOR_MARKER = "FLOOR-MARKER-UP"
FLOOR_INIT = (
    "#!/bin/sh\nmount -t devtmpfs dev /dev\nmount -t proc proc /proc\n"
    f"echo {FLOOR_MARKER} $(cut -d' ' -f1 /proc/uptime) > /dev/ttyS0\n"
    "while :; do sleep 3600; done\n"
)
PROMPT = "IPVA> "
TRACE = r"^0:0000:\d{3}:4 - "
# Milestones on the console, in boot order: (step name, regex for the line that ends it,
# whether the last matching line counts). A step's time runs from the previous milestone.
RUNTIME_STEPS = (
    ("CPython start, imports, CPU line", TRACE, False),
    ("memory lines", r" - DRAM \d+MB", False),
    ("NICs found", r" - ETH0 .*\(.*\)$", False),
    ("disks opened", r" - disk dump: ", False),
    ("flash mounted", r" - fdir: segments=", False),
    ("version, crash record, config", r" - config: \d+ saved", False),
    # the decision's lines, not the calibration's (traced when it is in, maybe later)
    (
        "timekeeping",
        r" - (perfcounter|time: (VMware|Hyper-V|KVM/QEMU|unknown)|time: warning: policy)",
        True,
    ),
    # the network's start: udhcpc is started, not waited for (services/network.py), so no
    # line ends it; the lease's line comes after the prompt: ADDRESS, a row of its own
    ("prompt", re.escape(PROMPT), False),
)
# the DHCP lease's line: after the prompt (a build from before it: before); a box boot's
# console is read on until it has come (at most ADDRESS_WAIT_S after the prompt)
ADDRESS = r" - ETH0 IP address "
ADDRESS_WAIT_S = 30.0
_DMESG = re.compile(r"^bootprof \[\s*(\d+\.\d+)\] (.*)$")
_IMPORT = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")  # -X importtime
_INITCALL = re.compile(r"initcall (\S+?)(?:\+0x\S+)?(?: \[(\S+)\])? returned \S+ after (\d+) usecs")


@dataclass
class Boot:
    """One boot: console lines with host times, plus what the profile mode added."""

    lines: list[tuple[float, str]] = field(default_factory=list)
    long_mode: float | None = None  # host time the vCPU was first seen in 64-bit mode

    def first(self, regex: str, after: float = 0.0, last: bool = False) -> float | None:
        hits = [t for t, line in self.lines if t >= after and re.search(regex, line)]
        if not hits:
            return None
        return hits[-1] if last else hits[0]

    def imports(self) -> list[tuple[str, int, int]]:
        """The runtime's imports as -X importtime printed them: (module indented by its
        nesting, self µs, cumulative µs)."""
        out = []
        for _t, line in self.lines:
            m = _IMPORT.match(line)
            if m:
                out.append((m[3] + m[4], int(m[1]), int(m[2])))
        return out

    def dmesg(self) -> list[tuple[float, str]]:
        out = []
        for _t, line in self.lines:
            m = _DMESG.match(line)
            if m:
                out.append((float(m[1]), m[2]))
        return out


def _poll_long_mode(m: Machine, boot: Boot, t0: float, stop: threading.Event) -> None:
    """Until the vCPU first runs 64-bit code (SYSLINUX never does; the decompressor does)."""
    while not stop.is_set():
        try:
            regs = m.qmp("human-monitor-command", **{"command-line": "info registers"})
        except Exception:  # QEMU not up yet or already gone
            time.sleep(0.02)
            continue
        if "CS64" in str(regs):
            boot.long_mode = time.monotonic() - t0
            return
        time.sleep(0.02)


def timed_boot(
    disks: list[Path],
    until: str,
    workdir: Path,
    *,
    poll_mode: bool = False,
    ram_mib: int = 256,
    extra_args: tuple[str, ...] = (),
    saved_state: SavedState | None = None,
    then: str | None = None,
) -> Boot:
    """`then`: a regex for a line after `until` to read on for (ADDRESS_WAIT_S at most)."""
    boot = Boot()
    pending = bytearray()
    t0 = time.monotonic()
    seen_until = threading.Event()
    seen_then = threading.Event()

    def on_console(data: bytes) -> None:
        now = time.monotonic() - t0
        pending.extend(data)
        while b"\n" in pending:
            i = pending.index(b"\n")
            line = pending[:i].decode("latin-1").rstrip("\r")
            del pending[: i + 1]
            boot.lines.append((now, line))
            if until in line:
                seen_until.set()
            if then is not None and re.search(then, line):
                seen_then.set()
        if until == PROMPT and until in pending.decode("latin-1"):  # no newline after it
            boot.lines.append((now, pending.decode("latin-1")))
            pending.clear()
            seen_until.set()

    profile = get_profile("vmware", ram_mib=ram_mib, extra_args=extra_args)
    stop = threading.Event()
    with Machine(
        profile, disks, workdir, on_console=[on_console], fatal=None, saved_state=saved_state
    ) as m:
        t0 = time.monotonic()
        m.start()
        if saved_state is not None and not m.resumed:
            raise RuntimeError(f"bench resume: booted cold: {m.cold_boot_reason}")
        poller = None
        if poll_mode:
            poller = threading.Thread(target=_poll_long_mode, args=(m, boot, t0, stop))
            poller.start()
        m.wait_for_console(re.escape(until.strip()), timeout=600)
        seen_until.wait(5)
        if then is not None:
            seen_then.wait(ADDRESS_WAIT_S)
        stop.set()
        if poller is not None:
            poller.join()
    return boot


# --- the disks ---------------------------------------------------------------------------


def _with_kernel_args(boot_img: Path, out: Path, args: str) -> Path:
    shutil.copyfile(boot_img, out)
    cfg = SYSLINUX_CFG.replace(f"APPEND {KERNEL_ARGS}", f"APPEND {args}")
    assert f"APPEND {args}" in cfg
    write_boot_file(out, "SYSLINUX.CFG", cfg.encode())
    return out


def debian_kernel(work: Path) -> Path:
    """Debian's packaged kernel (the generic amd64 flavour the box ran before it had its own):
    the floor stays the same yardstick whatever kernel the box ships."""
    (deb,) = fetch_debs(REPO / ".cache", [resolve_kernel_package()])
    run(["dpkg-deb", "-x", deb.path, work / "debian-kernel"])
    (kernel,) = (work / "debian-kernel/boot").glob("vmlinuz-*")
    return kernel


def marker_disks(dist: Path, work: Path, kernel: Path, name: str) -> list[Path]:
    """A kernel and a marker-only initramfs on a boot disk made the same way as the box's."""
    tree = work / f"{name}-root"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(build_bootbins(REPO / ".cache").busybox, tree / "bin/busybox")
    for applet in ("sh", "echo", "sleep", "mount", "cut"):
        (tree / "bin" / applet).symlink_to("busybox")
    (tree / "dev").mkdir()
    (tree / "proc").mkdir()
    (tree / "init").write_text(FLOOR_INIT)
    (tree / "init").chmod(0o755)
    make_cpio_zstd(tree, work / f"{name}.zst", source_date_epoch())
    made = make_boot_disk(
        work / f"{name}-made.img", {"VMLINUZ": kernel, "INITRD.ZST": work / f"{name}.zst"},
        source_date_epoch(),
    )  # fmt: skip
    boot = _with_kernel_args(made, work / f"{name}-boot.img", FLOOR_KERNEL_ARGS)
    return [boot, *dist_disks(dist)[1:]]


def floor_disks(dist: Path, work: Path) -> list[Path]:
    """The floor: Debian's kernel, a marker-only initramfs."""
    return marker_disks(dist, work, debian_kernel(work), "floor")


def kernel_disks(dist: Path, work: Path) -> list[Path]:
    """The box's own kernel (dist/'s boot disk) with the floor's marker-only initramfs: what
    the kernel alone costs, beside the floor."""
    kernel = work / "box-vmlinuz"
    kernel.write_bytes(read_boot_file(dist / "disks" / "boot.img", "VMLINUZ"))
    return marker_disks(dist, work, kernel, "kernel")


def _flash_image(path: Path, size: int, *, fill: bool, ram: int, reset_all: bool = False) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    if fill:
        fill_flash(path, ram, 0, reset_all=reset_all)
    else:
        with FileBlockDevice(path) as dev:
            mount_flash(dev, ram_bytes=ram, trace=lambda _s: None)
    return path


def box_disks(dist: Path, flash: Path, boot: Path | None = None) -> list[Path]:
    d = dist_disks(dist)
    return [boot or d[0], d[1], flash, d[3]]


# --- the tables --------------------------------------------------------------------------


def _med(values: Iterable[float | None]) -> tuple[float, float, float] | None:
    vs = [v for v in values if v is not None]
    if not vs:
        return None
    return statistics.median(vs), min(vs), max(vs)


def runtime_steps(boot: Boot, start: float) -> dict[str, float | None]:
    """Each runtime step's duration, from `start` (the line before the runtime)."""
    out: dict[str, float | None] = {}
    prev = start
    for name, regex, last in RUNTIME_STEPS:
        t = boot.first(regex, prev, last)
        out[name] = None if t is None else t - prev
        if t is not None:
            prev = t
    return out


def profile_steps(boot: Boot) -> tuple[dict[str, float | None], list[tuple[str, int]]]:
    """The kernel-side breakdown of one profiled boot, and its slowest initcalls (µs)."""
    syslinux = boot.first(r"^SYSLINUX ")
    banner = boot.first(r"^IPVA bootcode")
    dmesg = boot.dmesg()
    marks = {msg[len("ipva: ") :]: t for t, msg in dmesg if msg.startswith("ipva: ")}  # in order
    run_init = next((t for t, msg in dmesg if "Run /init as init process" in msg), None)
    steps: dict[str, float | None] = {}
    if None in (syslinux, banner, run_init) or "bootcode start" not in marks:
        return steps, []
    clock0 = banner - marks["bootcode start"]  # type: ignore[operator]
    steps["SeaBIOS (QEMU start → SYSLINUX)"] = syslinux
    if boot.long_mode is not None:
        steps["SYSLINUX loads kernel + initrd"] = boot.long_mode - syslinux  # type: ignore[operator]
        steps["kernel decompression, early setup"] = clock0 - boot.long_mode
    else:
        steps["SYSLINUX load + decompression"] = clock0 - syslinux  # type: ignore[operator]
    unpack = [t for t, msg in dmesg if "Trying to unpack rootfs" in msg or "Freeing initrd" in msg]
    steps["kernel init (clock 0 → /init)"] = run_init
    if len(unpack) == 2:
        steps["  of which initramfs unpacking"] = unpack[1] - unpack[0]
    prev = run_init
    for mark, t in marks.items():  # each /init step ends with its mark (firmware/bootcode/init)
        steps[f"/init: {'shell start, mounts, banner' if mark == 'bootcode start' else mark}"] = (
            t - prev  # type: ignore[operator]
        )
        prev = t
    start = boot.first(r"^bootprof runtime start")
    rt = runtime_steps(boot, start) if start is not None else {}
    steps.update({f"runtime: {k}": v for k, v in rt.items()})
    steps.update(_interpreter_start(boot, start))
    calls = []
    for _t, msg in dmesg:
        m = _INITCALL.search(msg)
        if m:
            calls.append((f"{m[1]}" + (f" [{m[2]}]" if m[2] else ""), int(m[3])))
    calls.sort(key=lambda c: -c[1])
    return steps, calls


def _interpreter_start(boot: Boot, start: float | None) -> dict[str, float | None]:
    """The interpreter's own start (exec → its first import: -X importtime's header line,
    printed at the first import), apart from the imports that follow it."""
    header = boot.first(r"^import time: self \[us\]", after=start) if start is not None else None
    if start is None or header is None:
        return {}
    return {"  of which CPython start (exec → first import)": header - start}


def _row(name: str, stats: tuple[float, float, float] | None, floor: float) -> str:
    if stats is None:
        return f"{name:<44} {'—':>8}"
    med, lo, hi = stats
    return f"{name:<44} {med:>8.2f} {lo:>7.2f} {hi:>7.2f} {med / floor:>8.2f}"


def _at(boots: list[Boot], regex: str) -> list[float | None]:
    return [b.first(regex) for b in boots]


def _diff(later: list[float | None], earlier: list[float | None]) -> list[float | None]:
    return [None if a is None or b is None else a - b for a, b in zip(later, earlier, strict=True)]


def report(results: dict[str, list[Boot]], print_: Callable[[str], None] = print) -> None:
    runs = max(len(v) for v in results.values())
    head = f"{'':<44} {'median s':>8} {'min':>7} {'max':>7} {'× floor':>8}"
    floors = results.get("floor", [])
    floor_t = _med(_at(floors, FLOOR_MARKER))
    floor = floor_t[0] if floor_t else float("nan")
    print_(f"boot, median of {runs} boots each, interleaved (QEMU start = 0; TCG)")
    print_(head)
    for kind, label in (("floor", "floor (Debian's kernel)"), ("kernel", "the box's kernel")):
        boots = results.get(kind)
        if not boots:
            continue
        clock = [_floor_clock(b) for b in boots]
        sysl = _at(boots, r"^SYSLINUX ")
        print_(_row(f"{label}: marker-only /init up", _med(_at(boots, FLOOR_MARKER)), floor))
        print_(_row(f"  {kind}: SeaBIOS (→ SYSLINUX)", _med(sysl), floor))
        load = _diff(_diff(_at(boots, FLOOR_MARKER), sysl), clock)
        print_(_row(f"  {kind}: SYSLINUX load + decompression", _med(load), floor))
        print_(_row(f"  {kind}: kernel clock at /init", _med(clock), floor))
    for kind in ("empty", "baseline", "full64", "full512", "baseline512"):
        boots = results.get(kind)
        if not boots:
            continue
        init, first = _at(boots, r"^IPVA bootcode"), _at(boots, TRACE)
        print_(f"-- {kind}")
        print_(_row(f"{kind}: SYSLINUX banner", _med(_at(boots, r"^SYSLINUX ")), floor))
        print_(_row(f"{kind}: /init banner", _med(init), floor))
        print_(_row(f"{kind}: first runtime trace line", _med(first), floor))
        ready_at = _at(boots, re.escape(PROMPT))
        print_(_row(f"{kind}: ready (prompt)", _med(ready_at), floor))
        address = _at(boots, ADDRESS)
        print_(_row(f"{kind}: DHCP address line", _med(address), floor))
        print_(_row("  prompt → DHCP address (< 0: before it)", _med(_diff(address, ready_at)),
                    floor))  # fmt: skip
        print_(_row("  /init banner → first trace line", _med(_diff(first, init)), floor))
        steps = [runtime_steps(b, i) for b, i in zip(boots, init, strict=True) if i is not None]
        for name, _r, _l in RUNTIME_STEPS[1:]:
            print_(_row(f"  runtime: {name}", _med(s.get(name) for s in steps), floor))
    ready = {
        k: _med(_at(v, re.escape(PROMPT)))
        for k, v in results.items()
        if k not in ("floor", "kernel")
    }
    if results.get("profile"):
        prof = [profile_steps(b) for b in results["profile"]]
        names = list(dict.fromkeys(k for s, _c in prof for k in s))
        print_(f"-- breakdown (profile boots: kernel clock for the kernel and /init)\n{head}")
        for name in names:
            print_(_row(name, _med(s.get(name) for s, _c in prof), floor))
        calls: dict[str, list[int]] = {}
        for _s, cs in prof:
            for name, us in cs:
                calls.setdefault(name, []).append(us)
        top = sorted(calls.items(), key=lambda kv: -statistics.median(kv[1]))[:15]
        print_("slowest initcalls (median ms over the profile boots; [module] = loaded by /init)")
        for name, us in top:
            print_(f"  {statistics.median(us) / 1000:>8.1f}  {name}")
        _print_imports([b.imports() for b in results["profile"]], print_)
    empty = ready.get("empty")
    resumed = ready.get("resume")
    if resumed:
        print_("-- resume")
        print_(_row("resume (saved state → prompt answers)", resumed, floor))
    print_("")
    if resumed:
        print_(f"resume (saved state → prompt answers): {resumed[0]:.2f} s")
    if floor_t and empty:
        print_(f"ready (empty flash) / floor: {empty[0] / floor:.2f}")
    for kind in ("baseline", "full64", "full512"):
        if ready.get(kind) and empty:
            print_(f"{kind} ready / empty ready: {ready[kind][0] / empty[0]:.2f}")  # type: ignore[index]
    if ready.get("full512") and ready.get("baseline512"):
        print_(f"full512 ready / baseline512 ready: "
               f"{ready['full512'][0] / ready['baseline512'][0]:.2f}")  # type: ignore[index]  # fmt: skip
    # a kind without a ready row (no floor in the run, profile boots only) has no noise
    spread = [f"{k} {(s[2] - s[1]) / s[0] * 100:.0f}%" for k, s in
              [("floor", floor_t), *ready.items()] if s and s[0]]  # fmt: skip
    print_(f"noise, (max - min) / median: {', '.join(spread)}")


def _print_imports(boots: list[list[tuple[str, int, int]]], print_: Callable[[str], None]) -> None:
    """The runtime's slowest imports by cumulative time (what an import and everything it
    pulls in cost), median over the profile boots; and all imports' own time summed."""
    if not any(boots):
        return
    cumulative: dict[str, list[int]] = {}
    for imports in boots:
        for name, _own, cum in imports:
            cumulative.setdefault(name, []).append(cum)
    total = statistics.median(sum(own for _n, own, _c in imports) for imports in boots if imports)
    count = statistics.median(len(i) for i in boots if i)
    print_(f"runtime imports: {count:.0f} modules, {total / 1e6:.2f} s of their own "
           "(median; printing them slows the profile boots)")  # fmt: skip
    top = sorted(cumulative.items(), key=lambda kv: -statistics.median(kv[1]))[:25]
    print_("slowest imports (cumulative ms, median over the profile boots; indent = nesting)")
    for name, us in top:
        print_(f"  {statistics.median(us) / 1000:>8.1f}  {name}")


def _floor_clock(b: Boot) -> float | None:
    for _t, line in b.lines:
        if line.startswith(FLOOR_MARKER):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def bench(
    kinds: Iterable[str] = KINDS, runs: int = RUNS, baseline: Path | None = None
) -> dict[str, list[Boot]]:
    dist = REPO / "dist"
    if not (dist / "ipva.bin").exists():
        run(["ipva", "build", "--targets", "none"], cwd=REPO)
    kinds = list(kinds)
    results: dict[str, list[Boot]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="ipva-bench-boot-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        flash_bytes = (dist / "disks" / "flash.img").stat().st_size
        setups: dict[str, tuple[list[Path], str, dict[str, object]]] = {}
        empty = _flash_image(work / "empty.img", flash_bytes, fill=False, ram=GUEST_RAM)
        if "floor" in kinds:
            setups["floor"] = (floor_disks(dist, work), FLOOR_MARKER, {})
        if "kernel" in kinds:
            setups["kernel"] = (kernel_disks(dist, work), FLOOR_MARKER, {})
        if "empty" in kinds:
            setups["empty"] = (box_disks(dist, empty), PROMPT, {"then": ADDRESS})
        if "profile" in kinds:
            prof = _with_kernel_args(
                dist / "disks" / "boot.img", work / "prof-boot.img", f"{KERNEL_ARGS} {PROFILE_ARGS}"
            )
            setups["profile"] = (box_disks(dist, empty, prof), PROMPT, {"poll_mode": True})
        if baseline is not None:
            kinds.append("baseline")
            setups["baseline"] = (box_disks(baseline, empty), PROMPT, {"then": ADDRESS})
            results["baseline"] = []
        if "resume" in kinds:
            disks = box_disks(dist, empty)
            state = boot_and_save(get_profile("vmware"), disks, work / "state")
            setups["resume"] = (disks, PROMPT, {"saved_state": state})
        if "full64" in kinds:
            full = _flash_image(work / "full64.img", flash_bytes, fill=True, ram=GUEST_RAM)
            setups["full64"] = (box_disks(dist, full), PROMPT, {"then": ADDRESS})
        if "full512" in kinds:
            big = _flash_image(work / "full512.img", 512 << 20, fill=True, ram=3 << 30,
                               reset_all=True)  # fmt: skip
            setups["full512"] = (box_disks(dist, big), PROMPT, {"ram_mib": 3072})
            if baseline is not None:
                kinds.append("baseline512")
                setups["baseline512"] = (box_disks(baseline, big), PROMPT, {"ram_mib": 3072})
                results["baseline512"] = []
        for i in range(runs):  # interleaved, so drift on a shared machine hits every kind
            for kind in kinds:
                disks, until, opts = setups[kind]
                boot = timed_boot(disks, until, work / f"{kind}{i}", **opts)  # type: ignore[arg-type]
                results[kind].append(boot)
                shutil.rmtree(work / f"{kind}{i}", ignore_errors=True)
    return results


def main() -> None:
    baseline = os.environ.get("IPVA_BENCH_BOOT_BASELINE")
    report(bench(baseline=Path(baseline) if baseline else None))
