"""The bootcode's programs, busybox and signify: Debian's source, built static against musl.

Debian's busybox-static links glibc statically and has every applet (2 MB; 0.93 MB of the
initramfs packed), and its signify-openbsd is dynamic, so the initramfs carried a second
glibc, its loader, libbsd and libmd only for it (0.98 MB packed). Sharing that libc with a
dynamic busybox was tried: every applet paid the dynamic loader under TCG (ready 10.95 s vs
8.26 s, notes of issue 27). Static against musl (Debian's musl-tools) there is no loader at
all, and busybox has only the applets of `APPLETS` with Debian's own configuration for the
rest (its shell runs applets without exec, udhcpc as Debian builds it, …).

Both come from Debian's source packages of the release (`apt-get source`, firmware/debs.py),
at the version of the binary package Debian builds from them. Like the kernel, they are
built once per source version and recipe and cached outside the checkout, under
$XDG_CACHE_HOME/ipva/bootbins: a warm build copies two files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware.buildcache import cached_build
from firmware.debs import Deb, fetch_source, sources_of, unpack_source
from firmware.run import ToolError, run


@dataclass(frozen=True)
class Applet:
    """A busybox applet the box runs: its name, and who runs it."""

    name: str
    why: str


_INIT = "/init"
_SIG = "signify.sh"
_BC = "bootctl.sh"
_DHCP = "udhcpc.script"
# Every command the bootcode's scripts (firmware/bootcode/) and the runtime's subprocesses
# run; tests/unit/test_bootbins.py reads both and fails on one that is missing here.
APPLETS = (
    Applet("busybox", "the build: `busybox --list` names the links to make"),
    Applet("sh", f"{_INIT}, udhcpc's hook (#!/bin/sh)"),
    Applet("ash", "the shell sh is"),
    Applet("[", "tests in every script (also an ash builtin)"),
    Applet("[[", "Debian's ash has it (ASH_BASH_COMPAT)"),
    Applet("test", "the same as ["),
    Applet("true", f"{_INIT} (`|| true`)"),
    Applet("echo", "every script (also an ash builtin)"),
    Applet("printf", "every script (also an ash builtin)"),
    Applet("mount", f"{_INIT} (-a: etc/fstab); the runtime: CF card, boot partition "
                    "remount (hal/cf.py, hal/bootfiles.py)"),
    Applet("umount", "the runtime: CF card (hal/cf.py)"),
    Applet("mkdosfs", "the runtime: formats the CF card (hal/cf.py)"),
    Applet("losetup", f"{_INIT}: the payload at its offset in IPVA.BIN (-f -r -o -d)"),
    Applet("mkdir", _INIT),
    Applet("sleep", f"{_INIT}: the disk wait (0.05 s steps), the restart"),
    Applet("sort", f"{_INIT}: the disks' positions"),
    Applet("awk", f"{_INIT}: the boot disk from the positions"),
    Applet("cat", _BC),
    Applet("dd", f"{_INIT}, {_SIG}, {_BC} (the boot-control record, conv=notrunc,fsync)"),
    Applet("head", f"{_SIG}, {_BC} (-c)"),
    Applet("tail", f"{_INIT}: a payload of part sectors (-c +N)"),
    Applet("od", f"{_INIT}, {_BC} (-An -t -j -N)"),
    Applet("stat", f"{_INIT}: the image's size (-c %s)"),
    Applet("sha256sum", f"{_INIT}: the payload's digest"),
    Applet("cut", "bench/boot.py's marker-only initramfs (its floor: /proc/uptime)"),
    Applet("dmesg", f"{_INIT}: the boot profile (ipva.bootprof)"),
    Applet("sed", f"{_INIT}: the boot profile"),
    Applet("crc32", f"{_BC}: the record's checksum"),
    Applet("xxd", f"{_BC}: the record's bytes (-r -p)"),
    Applet("rm", f"{_BC}, {_DHCP}"),
    Applet("mv", _DHCP),
    Applet("sync", _INIT),
    Applet("reboot", f"{_INIT}, the runtime (reboot -f)"),
    Applet("ip", f"{_DHCP}; the runtime: addresses, links, routes (hal/vm.py)"),
    Applet("udhcpc", "the runtime: DHCP on each interface (hal/vm.py)"),
)  # fmt: skip

# Debian's busybox-static configuration (debian/config/pkg/static), with every applet not in
# APPLETS off and these changed: EXTRA_COMPAT is grep's GNU regex interface, glibc's only
# (musl has POSIX regex; grep -z, NUL in patterns, is what it adds)
BUSYBOX_CHANGES = (("EXTRA_COMPAT", "n"),)
# the binary packages Debian builds from the sources the two are built from: their
# candidates pick the source versions (the same release as the rest of the box)
BUSYBOX = "busybox-static"
SIGNIFY = "signify-openbsd"
# the kernel headers musl's compiler wrapper leaves out (ip and udhcpc need them): the
# host's, from linux-libc-dev (gcc's libc6-dev brings it)
KERNEL_HEADERS = ("linux", "asm-generic", "mtd", "asm")
# Kconfig lines that say which symbol builds which applet (nested IF_ for variants)
_APPLET_LINE = re.compile(r"^//applet:\s*IF_(\w+)\((?:\s*IF_\w+\()*\s*APPLET\w*\(\s*([^,\s]+)",
                          re.M)  # fmt: skip


@dataclass(frozen=True)
class BootBins:
    """The built programs in the cache and the source packages they came from."""

    busybox: Path
    signify: Path
    sources: tuple[Deb, Deb]


def applet_symbols(src: Path) -> dict[str, set[str]]:
    """Kconfig symbol → the applet names it builds, from busybox's source."""
    found: dict[str, set[str]] = {}
    for f in src.rglob("*.c"):
        if ".pc" in f.parts:  # quilt's copies of the files before Debian's patches
            continue
        for m in _APPLET_LINE.finditer(f.read_text(errors="replace")):
            found.setdefault(m[1], set()).add(m[2])
    return found


def busybox_config(debian_config: str, symbols: dict[str, set[str]]) -> str:
    """Debian's configuration with only APPLETS' applets on, and BUSYBOX_CHANGES."""
    want = {a.name for a in APPLETS}
    changes = dict(BUSYBOX_CHANGES)
    for sym, names in symbols.items():
        changes.setdefault(sym, "y" if names & want else "n")
    lines = []
    for line in debian_config.splitlines():
        m = re.fullmatch(r"# CONFIG_(\w+) is not set|CONFIG_(\w+)=.*", line)
        sym = (m[1] or m[2]) if m else ""
        if sym in changes:
            value = changes.pop(sym)
            line = f"CONFIG_{sym}={value}" if value != "n" else f"# CONFIG_{sym} is not set"
        lines.append(line)
    lines += [f"CONFIG_{k}={v}" for k, v in changes.items() if v != "n"]
    return "\n".join(lines) + "\n"


def _musl_version() -> str:
    return run(["dpkg-query", "-W", "-f", "${Version}", "musl-dev"], capture=True).stdout.decode()


def _recipe() -> str:
    """What a build depends on besides the sources: a change makes a new cache key."""
    return "\n".join([
        "bootbins v1", repr(APPLETS), repr(BUSYBOX_CHANGES), _musl_version(),
        run(["gcc", "--version"], capture=True).stdout.decode().splitlines()[0],
    ])  # fmt: skip


def build_bootbins(cache_dir: Path, note: Callable[[str], None] = lambda _t: None) -> BootBins:
    """busybox and signify for the initramfs: from the cache, or built there (a minute)."""
    run(["musl-gcc", "--version"], capture=True)  # missing: "apt-get install musl-tools"
    versions = sources_of([BUSYBOX, SIGNIFY])
    recipe = "\n".join([*(f"{s}={v}" for s, v in versions), _recipe()])
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    t0 = time.monotonic()

    def build(work: Path, staged: Path) -> None:
        sources = [fetch_source(cache_dir, name, version, note) for name, version in versions]
        note("busybox and signify: building from Debian's source against musl (once per version)")
        _build(sources, work, staged)

    done, built = cached_build("bootbins", key, "sources.json", build)
    if built:
        note(f"busybox and signify: built in {time.monotonic() - t0:.0f} s, cached in {done}")
    else:
        note(f"busybox and signify ({key}): cached in {done}")
    entries = json.loads((done / "sources.json").read_text())
    bb, sig = (Deb.from_manifest_entry(e) for e in entries)
    return BootBins(done / "busybox", done / "signify-openbsd", (bb, sig))


def _build(sources: list[Deb], work: Path, staged: Path) -> None:
    """The two programs and their source packages' manifest entries into `staged`."""
    headers = work / "include"
    headers.mkdir()
    for name in KERNEL_HEADERS:
        d = Path("/usr/include") / name
        if name == "asm":
            d = Path("/usr/include/x86_64-linux-gnu/asm")
        if not d.is_dir():
            raise ToolError(f"{d} not found: apt-get install linux-libc-dev")
        (headers / name).symlink_to(d)
    _make_busybox(sources[0].path, work, headers, staged / "busybox")
    _make_signify(sources[1].path, work, staged / "signify-openbsd")
    (staged / "sources.json").write_text(
        json.dumps([s.manifest_entry() for s in sources], indent=1) + "\n"
    )


def _cflags(src: Path) -> str:
    # the build directory's name out of the binaries (assertions carry __FILE__)
    return f"-ffile-prefix-map={src}=."


def _make_busybox(dsc: Path, work: Path, headers: Path, out: Path) -> None:
    src, obj = work / "busybox", work / "busybox-out"
    unpack_source(dsc, src)
    obj.mkdir()
    debian = (src / "debian/config/pkg/static").read_text()
    config = busybox_config(debian, applet_symbols(src))
    (obj / ".config").write_text(config)
    make: list[str | os.PathLike[str]] = ["make", "-s", "-C", src, f"O={obj}"]
    # symbols the source has and Debian's file lacks take their defaults
    run([*make, "oldconfig"], input=b"\n" * 2000, capture=True)
    run([*make, f"-j{os.cpu_count() or 1}", "CC=musl-gcc", "HOSTCC=gcc",
         f"EXTRA_CFLAGS=-isystem {headers} {_cflags(src)}", "busybox"])  # fmt: skip
    listed = set(run([obj / "busybox", "--list"], capture=True).stdout.decode().split())
    want = {a.name for a in APPLETS}
    if listed != want:
        raise ToolError(
            f"busybox has applets {sorted(listed - want)} it should not and lacks "
            f"{sorted(want - listed)}: its configuration did not take"
        )
    shutil.copy2(obj / "busybox", out)


def _make_signify(dsc: Path, work: Path, out: Path) -> None:
    src = work / "signify"
    unpack_source(dsc, src)
    # upstream's musl build: its own copies of the few libbsd functions it uses
    run(["make", "-s", "-C", src, f"-j{os.cpu_count() or 1}", "MUSL=1", "CC=musl-gcc",
         f"EXTRA_CFLAGS=-O2 {_cflags(src)}", "EXTRA_LDFLAGS=-static -s", "signify"])  # fmt: skip
    shutil.copy2(src / "signify", out)
