"""`ipva build`: recipe → firmware → disks → packages, as a flat list of timed steps.

Outputs (all under settings.out_dir, never committed):
    ipva.bin                 firmware image (also on the boot disk as IPVA.BIN)
    disks/{boot,cf,flash,dump}.img   raw disks for IDE 0:0, 0:1, 1:0, 1:1
    debs.json                exactly which Debian packages went in (version, sha256)
    SHA256SUMS               of every artifact
    <per target>             see hypervisors/<target>/
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from firmware import debs as debs_mod
from firmware import ipvabin
from firmware.bootbins import build_bootbins
from firmware.initramfs import make_cpio_zstd, make_initramfs_tree
from firmware.kernel import build_kernel
from firmware.payload import INTERPRETER, make_payload_tree, make_squashfs
from firmware.readorder import boot_read_order
from firmware.settings import BuildSettings
from hypervisors.registry import get_target
from images.archive import file_digest, source_date_epoch
from images.bootdisk import make_blank_disk, make_boot_disk

REPO = Path(__file__).resolve().parent.parent
CF_DISK_BYTES = 128 << 20
DUMP_DISK_BYTES = 64 << 20
BOOT_DISK_MIB = 64

StepFn = Callable[[str], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def _quiet_step(_name: str) -> Iterator[None]:
    yield


@dataclass
class BuildResult:
    artifacts: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _debroot_for(debs: list[debs_mod.Deb], cache: Path) -> Path:
    """Unpacked packages, cached by the exact set of .debs."""
    key = hashlib.sha256("".join(sorted(d.sha256 for d in debs)).encode()).hexdigest()[:16]
    root = cache / "work" / f"debroot-{key}"
    if not (root / ".complete").exists():
        if root.exists():
            shutil.rmtree(root)
        debs_mod.unpack(debs, root)
        (root / ".complete").touch()
    return root


def build(
    settings: BuildSettings,
    step: StepFn = _quiet_step,
    note: Callable[[str], None] = lambda _text: None,
) -> BuildResult:
    """Run every step; `step` wraps each (timing, output), `note` hears progress lines."""
    result = BuildResult()
    # the key first: a key that cannot be used stops the build before it has done anything
    key = ipvabin.load_signing_key(settings.signing_key)
    if key.development:
        note("signing with the DEVELOPMENT key (public: --signing-key FILE for a release)")
    epoch = source_date_epoch()
    out, cache = settings.out_dir, settings.cache_dir
    work = cache / "work"
    disks = settings.disks_dir
    for d in (out, work, disks):
        d.mkdir(parents=True, exist_ok=True)

    def timed(name: str) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def cm() -> Iterator[None]:
            t0 = time.monotonic()
            with step(name):
                yield
            result.timings[name] = time.monotonic() - t0

        return cm()

    with timed("Fetching Debian packages"):
        debs = debs_mod.fetch_debs(cache, note=note)
        debroot = _debroot_for(debs, cache)
    with timed("Building the kernel (cached after the first build)"):
        kernel = build_kernel(cache, epoch, note=note)
        # the kernel's source package went into the build as much as the guest's packages
    with timed("Building busybox and signify (cached after the first build)"):
        bins = build_bootbins(cache, note=note)
        # the source packages went into the build as much as the guest's packages
        debs_mod.write_manifest([*debs, kernel.source, *bins.sources], out / "debs.json")
    bootcode_version = f"{settings.version} build {settings.build}"
    with timed("Making the bootcode (initramfs)"):
        # the keyring: the signing key's public half, so the box takes only what it signed
        make_initramfs_tree(bins, work / "initramfs", bootcode_version, [key.public()])
        make_cpio_zstd(work / "initramfs", work / "initrd.zst", epoch)
    with timed("Making the firmware payload (CPython + runtime)"):
        imported = make_payload_tree(debroot, REPO, work / "payload", settings.stamp)
        note(
            f"the prompt's imports: {len(imported.files)} files laid out first, "
            f"{imported.dataclass_fns} dataclass methods compiled ahead"
        )
        make_squashfs(work / "payload", work / "payload.squashfs", epoch,
                      first=boot_read_order(work / "payload", INTERPRETER, imported))  # fmt: skip
    with timed("Packing ipva.bin"):
        ipvabin.write_firmware(
            out / "ipva.bin", work / "payload.squashfs", settings.version, settings.build, key
        )
        # the box's keyring beside the image: `ipva fw verify --keyring dist/keyring` and
        # `ipva run --hosted` (its DIR/keyring) use it
        ring = out / "keyring"
        shutil.rmtree(ring, ignore_errors=True)
        ring.mkdir()
        (ring / f"{key.name}.pub").write_text(key.public().to_text(f"ipva keyring: {key.name}"))
        result.artifacts.append(out / "ipva.bin")
    with timed("Making the disks"):
        files = {
            "VMLINUZ": kernel.image,
            "INITRD.ZST": work / "initrd.zst",
            "IPVA.BIN": out / "ipva.bin",
        }
        make_boot_disk(disks / "boot.img", files, epoch, BOOT_DISK_MIB)
        make_blank_disk(disks / "cf.img", CF_DISK_BYTES)
        make_blank_disk(disks / "flash.img", settings.flash_disk_bytes)
        make_blank_disk(disks / "dump.img", DUMP_DISK_BYTES)
        result.artifacts += [disks / f"{r}.img" for r in ("boot", "cf", "flash", "dump")]
    raw = {r: disks / f"{r}.img" for r in ("boot", "cf", "flash", "dump")}
    for name in settings.targets:
        target = get_target(name)
        with timed(f"Packaging for {name} ({target.description})"):
            result.artifacts += target.make(settings, raw)
    with timed("Writing checksums"):
        (out / "settings.json").write_text(settings.to_json() + "\n")
        lines = [f"{file_digest(p)}  {p.relative_to(out)}" for p in result.artifacts]
        (out / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    (out / "build.json").write_text(json.dumps({"timings": result.timings}, indent=1) + "\n")
    return result
