"""The box's kernel: Debian's kernel source, built with exactly what the targets need, built in.

Debian's packaged kernel (linux-image-*-amd64) is made for every machine: an 8 MB XZ image
with thousands of built-in drivers, most of the box's drivers as modules. Under TCG it
took 3.1 s to decompress and 1.8 s to initialise before /init ran, and reserved 58 MiB of a
128 MiB guest (bench/boot.py). The box runs on a handful of virtual machines, so its kernel
is Debian's own source (the `linux-source` package of the same release, with Debian's
patches) configured from nothing (`make allnoconfig`) plus the fragment below: the drivers
of `DRIVERS` and what the runtime uses, all built in, zstd-compressed, no module loading.

A kernel build takes minutes, so the result is cached outside the checkout, under
$XDG_CACHE_HOME/ipva/kernel (~/.cache), keyed by the source package's version, the fragment
and the compiler: a warm build copies one file, as fast as unpacking Debian's kernel was.
Builds are reproducible (KBUILD_BUILD_* pinned, SOURCE_DATE_EPOCH as the build time).
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
from firmware.debs import Deb, candidate_version, fetch_debs, resolve_dependency
from firmware.run import ToolError, run

# The meta-package that names the current source package (linux-source-6.1 in bookworm)
KERNEL_SOURCE_META = "linux-source"


@dataclass(frozen=True)
class Driver:
    """A driver the box needs: its Linux name (what /sys shows as the bound driver) and the
    Kconfig symbol that builds it in."""

    name: str
    option: str
    why: str


# What every target's virtual hardware needs (DESIGN.md "The guest"), checked against what
# each importer creates by default from our packages:
#   VMware OVF import / ovftool   IDE (PIIX4: ata_piix), PCnet "vlance" (pcnet32)
#   Proxmox VE OVA import         SCSI on the default controller LSI 53C895A (sym53c8xx; the
#                                 importer never sets scsihw), NIC e1000 (its fallback model)
#   Proxmox install script        VirtIO SCSI single (virtio_scsi), VirtIO net
#   Hyper-V Gen1 import/script    IDE (ata_piix), legacy NIC = DEC 21140 (tulip)
#   libvirt XML / virt-install    IDE + PCnet, or the VirtIO variant: virtio-scsi + virtio-net
# Hyper-V's own storage and network drivers (VMBus) are not built: the box uses the emulated
# IDE disks and the legacy adapter there, so ata_piix's prefer_ms_hyperv quirk (which hands
# the IDE disks to storvsc) does not exist in this kernel (it needs CONFIG_HYPERV_STORAGE).
DRIVERS = (
    Driver("ata_piix", "ATA_PIIX", "IDE: VMware, Hyper-V Gen1, libvirt"),
    Driver("ata_generic", "ATA_GENERIC", "IDE controllers ata_piix does not claim"),
    Driver("sd_mod", "BLK_DEV_SD", "the disks on IDE (libata) and SCSI"),
    Driver("virtio_pci", "VIRTIO_PCI", "the VirtIO devices: Proxmox script, libvirt VirtIO"),
    Driver("virtio_scsi", "SCSI_VIRTIO", "VirtIO SCSI single: Proxmox script, libvirt VirtIO"),
    Driver("sym53c8xx", "SCSI_SYM53C8XX_2", "LSI 53C895A: Proxmox OVA import"),
    Driver("pcnet32", "PCNET32", "PCnet vlance: VMware, libvirt"),
    Driver("virtio_net", "VIRTIO_NET", "VirtIO net: Proxmox script, libvirt VirtIO"),
    Driver("tulip", "TULIP", "DEC 21140: Hyper-V legacy adapter"),
    Driver("e1000", "E1000", "Intel e1000: Proxmox OVA import, VMware e1000"),
    Driver("vmxnet3", "VMXNET3", "VMware/Proxmox vmxnet3"),
    Driver("vfat", "VFAT_FS", "the boot partition, the compact flash"),
    Driver("nls_cp437", "NLS_CODEPAGE_437", "FAT short names (codepage=437)"),
    Driver("nls_ascii", "NLS_ASCII", "FAT long names (iocharset=ascii)"),
    Driver("squashfs", "SQUASHFS", "the firmware payload in IPVA.BIN"),
    Driver("loop", "BLK_DEV_LOOP", "the payload at its offset in IPVA.BIN"),
)

# Everything else, from nothing: what the drivers sit on and what the bootcode and the
# runtime use. A symbol that does not end up as asked (a missing dependency, a renamed
# option in a newer source) fails the build: see check_config(). allnoconfig also turns off
# what Kconfig would default on (the RTC's sysfs files, the keyboard), so those are here too.
# Left off on purpose: the speculative-execution mitigations (retpolines, page-table
# isolation) and stack protector, which guard the kernel against untrusted local code; the
# box runs none (its only user-space is the bootcode and its own runtime), and they cost
# boot time under emulation. Modules, IPv6, security modules, cgroups: nothing uses them.
BASE_CONFIG: tuple[tuple[str, str], ...] = (
    # the machine: 64-bit, SMP, a paravirtual guest; no relocation or KASLR (nothing to
    # randomise against in a firmware appliance, and it costs decompression time)
    ("64BIT", "y"), ("SMP", "y"), ("NR_CPUS", "8"), ("HYPERVISOR_GUEST", "y"),
    ("PARAVIRT", "y"), ("KVM_GUEST", "y"), ("CPU_SUP_INTEL", "y"), ("CPU_SUP_AMD", "y"),
    ("RELOCATABLE", "n"), ("RANDOMIZE_BASE", "n"),
    ("LOCALVERSION", '"-ipva"'), ("LOCALVERSION_AUTO", "n"),
    # the image on the boot disk (what every package carries): zstd, not LZ4 (-0.6 MB for
    # this configuration, as fast to /init within the noise under TCG) nor XZ (-0.3 MB more,
    # but 1.5 s more to decompress); see the note of issue 27 for the measurements
    ("KERNEL_ZSTD", "y"),
    # EXPERT shows the options Kconfig otherwise turns on unasked, so allnoconfig turns them
    # off: io_uring, core dumps, rseq, the 16-bit LDT and vsyscall emulation, SLUB
    # debugging, VGA arbitration, PCIe ASPM, namespaces, firmware loading (no driver here
    # loads any), … (-0.3 MB). Kept on, because the box uses them: the PCI quirks, the
    # CPU flags in /proc/cpuinfo (hal/cpu.py), /sys/firmware/memmap (hal/memory.py), MTRR
    # and PAT, the DMA zone, the 8250's PNP probe (COM1 as ttyS0), the VT's character
    # translation, the ACPI PM timer (a clocksource), the full-size base tables
    ("EXPERT", "y"), ("PCI_QUIRKS", "y"), ("X86_FEATURE_NAMES", "y"), ("FIRMWARE_MEMMAP", "y"),
    ("MTRR", "y"), ("X86_PAT", "y"), ("ZONE_DMA", "y"), ("SERIAL_8250_PNP", "y"),
    ("CONSOLE_TRANSLATIONS", "y"), ("X86_PM_TIMER", "y"), ("BASE_FULL", "y"),
    # oops backtraces by guessing (the symbols stay: KALLSYMS) instead of ORC's tables
    # (1.7 MB in the image, 0.18 MB compressed). Not -Os: 0.37 MB smaller, but the box was
    # ready 1 s later under TCG (the kernel's zstd and everything else slower)
    ("UNWINDER_GUESS", "y"), ("CC_OPTIMIZE_FOR_PERFORMANCE", "y"),
    # timers: 100 Hz (fewer ticks to emulate under TCG), high-resolution timers for sleeps
    ("HZ_100", "y"), ("NO_HZ_IDLE", "y"), ("HIGH_RES_TIMERS", "y"), ("HPET_TIMER", "y"),
    # firmware interfaces: ACPI (PCI interrupt routing, power-off), PCI with MSI (VirtIO),
    # DMI for /sys/class/dmi/id (the platform's vendor line)
    ("ACPI", "y"), ("PCI", "y"), ("PCI_MSI", "y"), ("DMI", "y"), ("DMIID", "y"),
    ("X86_MPPARSE", "y"),
    # the kernel log as the trace and crash dumps read it
    ("PRINTK", "y"), ("PRINTK_TIME", "y"), ("LOG_BUF_SHIFT", "17"), ("BUG", "y"),
    ("KALLSYMS", "y"), ("MAGIC_SYSRQ", "y"),
    # what busybox and CPython call: threads, epoll, timers, fadvise (the slot write), …
    ("MULTIUSER", "y"), ("FUTEX", "y"), ("EPOLL", "y"), ("SIGNALFD", "y"), ("TIMERFD", "y"),
    ("EVENTFD", "y"), ("SHMEM", "y"), ("AIO", "y"), ("ADVISE_SYSCALLS", "y"),
    ("MEMBARRIER", "y"), ("FHANDLE", "y"), ("POSIX_TIMERS", "y"), ("FILE_LOCKING", "y"),
    ("SYSVIPC", "y"), ("PROC_SYSCTL", "y"),
    # the perf-counter probe (appliance/hal/cpu.py: /sys/bus/event_source/devices/cpu/rdpmc)
    ("PERF_EVENTS", "y"),
    # executables, the bootcode initramfs (zstd), the file systems /init mounts
    ("BINFMT_ELF", "y"), ("BINFMT_SCRIPT", "y"), ("BLK_DEV_INITRD", "y"), ("RD_ZSTD", "y"),
    ("RD_GZIP", "n"), ("RD_BZIP2", "n"), ("RD_LZMA", "n"), ("RD_XZ", "n"), ("RD_LZO", "n"),
    ("RD_LZ4", "n"), ("DEVTMPFS", "y"), ("TMPFS", "y"), ("PROC_FS", "y"), ("SYSFS", "y"),
    ("UNIX98_PTYS", "y"),
    # consoles: COM1 for support staff and CI, VGA text for the hypervisor's console
    ("TTY", "y"), ("VT", "y"), ("VT_CONSOLE", "y"), ("VGA_CONSOLE", "y"),
    ("SERIAL_8250", "y"), ("SERIAL_8250_CONSOLE", "y"), ("SERIAL_8250_PCI", "n"),
    ("SERIAL_8250_NR_UARTS", "4"), ("SERIAL_8250_RUNTIME_UARTS", "4"),
    # the VGA console's keyboard (an admin at the hypervisor's console types there)
    ("INPUT", "y"), ("INPUT_KEYBOARD", "y"), ("KEYBOARD_ATKBD", "y"), ("SERIO", "y"),
    ("SERIO_I8042", "y"),
    # the CMOS clock (timekeeping reads /sys/class/rtc/rtc0/since_epoch)
    ("RTC_CLASS", "y"), ("RTC_HCTOSYS", "y"), ("RTC_DRV_CMOS", "y"), ("RTC_INTF_SYSFS", "y"),
    ("RTC_INTF_PROC", "y"), ("RTC_INTF_DEV", "y"),
    # what the drivers of DRIVERS sit on
    # (SCSI_SCAN_ASYNC: the IDE channels and SCSI hosts are scanned side by side)
    ("BLOCK", "y"), ("BLK_DEV", "y"), ("MSDOS_PARTITION", "y"), ("SCSI", "y"),
    ("SCSI_SCAN_ASYNC", "y"), ("SCSI_LOWLEVEL", "y"), ("ATA", "y"), ("ATA_SFF", "y"),
    ("ATA_BMDMA", "y"),
    ("VIRTIO_MENU", "y"), ("VIRTIO", "y"), ("VIRTIO_PCI_LEGACY", "y"),
    ("NETDEVICES", "y"), ("NET_CORE", "y"), ("ETHERNET", "y"), ("NET_VENDOR_AMD", "y"),
    ("NET_VENDOR_DEC", "y"), ("NET_TULIP", "y"), ("NET_VENDOR_INTEL", "y"),
    ("FAT_FS", "y"), ("FAT_DEFAULT_CODEPAGE", "437"), ("FAT_DEFAULT_IOCHARSET", '"ascii"'),
    ("NLS", "y"), ("MISC_FILESYSTEMS", "y"), ("SQUASHFS_ZSTD", "y"),
    # the payload as Debian's kernel read it (blocks straight into the page cache, a
    # decompressor per CPU), and 8 fragment blocks cached instead of 3: the runtime's
    # imports jump between directories whose small files share fragments (init → first
    # trace line 6.1 → 5.2 s in an A/B boot, TCG)
    ("SQUASHFS_FILE_DIRECT", "y"), ("SQUASHFS_DECOMP_MULTI_PERCPU", "y"),
    ("SQUASHFS_EMBEDDED", "y"), ("SQUASHFS_FRAGMENT_CACHE_SIZE", "8"),
    # IPv4 networking: sockets, packet sockets (udhcpc), no IPv6 (the box configures none)
    ("NET", "y"), ("INET", "y"), ("PACKET", "y"), ("UNIX", "y"), ("IPV6", "n"),
    # everything is built in: nothing loads at boot
    ("MODULES", "n"),
)  # fmt: skip


# the magic at the start of a bzImage's compressed payload (Documentation/x86/boot.rst:
# setup_sects at 0x1f1, payload_offset at 0x248), by the name Kconfig's KERNEL_* choice uses
PAYLOAD_MAGICS = {
    b"\x28\xb5\x2f\xfd": "ZSTD",
    b"\xfd7zXZ": "XZ",
    b"\x02\x21\x4c\x18": "LZ4",
    b"\x1f\x8b": "GZIP",
    b"\x5d\x00": "LZMA",
    b"\x89LZO": "LZO",
    b"BZh": "BZIP2",
}


def payload_compression(bzimage: bytes) -> str:
    """How a bzImage's kernel is compressed ("ZSTD", "XZ", …; "unknown" if no magic fits)."""
    setup_sects = bzimage[0x1F1] or 4
    offset = (setup_sects + 1) * 512 + int.from_bytes(bzimage[0x248:0x24C], "little")
    head = bzimage[offset : offset + 8]
    return next((name for magic, name in PAYLOAD_MAGICS.items() if head.startswith(magic)),
                "unknown")  # fmt: skip


def config_fragment() -> str:
    """The KCONFIG_ALLCONFIG fragment: BASE_CONFIG, then every driver built in."""
    pairs = [*BASE_CONFIG, *((d.option, "y") for d in DRIVERS)]
    return "".join(f"CONFIG_{k}={v}\n" for k, v in pairs)


def parse_config(text: str) -> dict[str, str]:
    """A .config as symbol (without CONFIG_) → value; "is not set" lines as "n"."""
    values = {}
    for line in text.splitlines():
        if m := re.fullmatch(r"CONFIG_(\w+)=(.*)", line):
            values[m[1]] = m[2]
        elif m := re.fullmatch(r"# CONFIG_(\w+) is not set", line):
            values[m[1]] = "n"
    return values


def check_config(text: str) -> None:
    """Every symbol of the fragment as asked, or a ToolError that names the ones that are not
    (Kconfig drops an option silently when its dependencies are off)."""
    have = parse_config(text)
    wrong = [
        f"CONFIG_{k}={have.get(k, '(absent)')} (asked {v})"
        for k, v in parse_config(config_fragment()).items()
        if have.get(k, "n" if v == "n" else "(absent)") != v
    ]
    if wrong:
        raise ToolError("kernel configuration did not take: " + ", ".join(wrong))


@dataclass(frozen=True)
class Kernel:
    """A built kernel in the cache (beside it there: its .config): the bzImage and the source
    package it came from."""

    image: Path
    source: Deb


def _compiler() -> str:
    return run(["gcc", "--version"], capture=True).stdout.decode().splitlines()[0]


def _cache_key(package: str, version: str) -> str:
    # the build recipe's own inputs: a change to how we build makes a new key too
    recipe = f"{package}={version}\n{config_fragment()}\n{_compiler()}\nbzImage v1\n"
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def build_env(epoch: int) -> dict[str, str]:
    """Kbuild's inputs that would differ between machines and days, pinned."""
    stamp = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(epoch))
    return {
        "KBUILD_BUILD_TIMESTAMP": stamp,
        "KBUILD_BUILD_USER": "ipva",
        "KBUILD_BUILD_HOST": "ipva",
        "KBUILD_BUILD_VERSION": "1",
    }


def build_kernel(
    deb_cache: Path, epoch: int, note: Callable[[str], None] = lambda _text: None
) -> Kernel:
    """The box's kernel: from the cache, or built there (minutes) from Debian's source."""
    package = resolve_dependency(KERNEL_SOURCE_META, r"linux-source-[\d.]+")
    version = candidate_version(package)
    key = _cache_key(package, version)
    t0 = time.monotonic()

    def build(work: Path, staged: Path) -> None:
        (deb,) = fetch_debs(deb_cache, [package], note=note)
        note(f"kernel {version}: building from {package} (once per source and configuration; "
             f"about 6 min on 2 cores)")  # fmt: skip
        _build(deb, work, staged, epoch)

    done, built = cached_build("kernel", key, "source.json", build)
    source = Deb.from_manifest_entry(json.loads((done / "source.json").read_text()))
    if built:
        note(f"kernel {version}: built in {(time.monotonic() - t0) / 60:.1f} min, cached in {done}")
    else:
        note(f"kernel {source.version} ({key}): cached in {done}")
    return Kernel(done / "bzImage", source)


def _build(deb: Deb, work: Path, staged: Path, epoch: int) -> None:
    """bzImage, its .config and the source package's manifest entry into `staged`."""
    src, out = work / "src", work / "out"
    run(["dpkg-deb", "-x", deb.path, work / "deb"])
    tarballs = sorted((work / "deb/usr/src").glob("linux-source-*.tar.*"))
    if len(tarballs) != 1:
        raise ToolError(f"expected one kernel tarball in {deb.path.name}, found {len(tarballs)}")
    src.mkdir()
    run(["tar", "-xf", tarballs[0], "-C", src, "--strip-components=1"])
    shutil.rmtree(work / "deb")
    fragment = work / "ipva.config"
    fragment.write_text(config_fragment())
    env = build_env(epoch)
    make: list[str | os.PathLike[str]] = ["make", "-s", "-C", src, f"O={out}"]
    run([*make, f"KCONFIG_ALLCONFIG={fragment}", "allnoconfig"], env=env)
    config_text = (out / ".config").read_text()
    check_config(config_text)
    run([*make, f"-j{os.cpu_count() or 1}", "bzImage"], env=env)
    shutil.copy2(out / "arch/x86/boot/bzImage", staged / "bzImage")
    (staged / "config").write_text(config_text)
    (staged / "source.json").write_text(json.dumps(deb.manifest_entry(), indent=1) + "\n")
