"""The bootcode's kernel modules: only the drivers the targets need, plus their dependencies.

Debian's .deb carries no modules.dep and the host has no kmod, so each module's `depends=`
is read from its .modinfo section (pyelftools), the closure copied, and busybox's `depmod`
writes modules.dep for the guest's `modprobe`.

The copies lose Debian's appended module signature. Debian's kernel checks signatures
without enforcing them (CONFIG_MODULE_SIG without _FORCE: a bad one only taints), so the check
stops nothing, and nothing checks the initramfs or the kernel it sits beside; yet it hashes
every module on load, which is most of what loading a module costs under TCG (bench/boot.py:
the storage drivers took 3.5 s of guest instructions with signatures, 1.0 s without).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from construct import Bytes, Int8ub, Int32ub, Struct
from elftools.elf.elffile import ELFFile

from firmware.run import ToolError, run

# What every target's virtual hardware needs (DESIGN.md "The guest"), checked against what
# each importer creates by default from our packages:
#   VMware OVF import / ovftool   IDE (PIIX4: ata_piix), PCnet "vlance" (pcnet32)
#   Proxmox VE OVA import         SCSI on the default controller LSI 53C895A (sym53c8xx; the
#                                 importer never sets scsihw), NIC e1000 (its fallback model)
#   Proxmox install script        VirtIO SCSI single (virtio_scsi), VirtIO net
#   Hyper-V Gen1 import/script    IDE (ata_piix), legacy NIC = DEC 21140 (tulip)
#   libvirt XML / virt-install    IDE + PCnet, or the VirtIO variant: virtio-scsi + virtio-net
WANTED_MODULES = (
    # disks: IDE (VMware, Hyper-V Gen1, libvirt), VirtIO SCSI (Proxmox script, libvirt
    # VirtIO), LSI 53C895A (Proxmox OVA import)
    "ata_piix", "ata_generic", "sd_mod", "virtio_pci", "virtio_scsi", "sym53c8xx",
    # NICs: PCnet "vlance" (VMware, libvirt), virtio-net (Proxmox script, libvirt VirtIO), 21140
    # (Hyper-V legacy), e1000 (Proxmox OVA import), vmxnet3
    "pcnet32", "virtio_net", "tulip", "e1000", "vmxnet3",
    # file systems: FAT boot partition (vfat needs an NLS), firmware payload on a loop device
    "vfat", "nls_ascii", "nls_cp437", "squashfs", "loop",
)  # fmt: skip


# The end of a signed module (include/linux/module_signature.h, scripts/sign-file.c): the
# PKCS#7 signature, then struct module_signature, then this marker.
SIGNATURE_MARKER = b"~Module signature appended~\n"
ModuleSignature = Struct(
    "algo" / Int8ub,  # 0 for PKCS#7: the fields up to sig_len are unused then
    "hash" / Int8ub,
    "id_type" / Int8ub,  # 2 = PKEY_ID_PKCS7
    "signer_len" / Int8ub,
    "key_id_len" / Int8ub,
    "pad" / Bytes(3),
    "sig_len" / Int32ub,
)


def strip_signature(data: bytes) -> bytes:
    """The module without its appended signature (unchanged if it has none)."""
    if not data.endswith(SIGNATURE_MARKER):
        return data
    info_end = len(data) - len(SIGNATURE_MARKER)
    info = ModuleSignature.parse(data[info_end - ModuleSignature.sizeof() : info_end])
    end = info_end - ModuleSignature.sizeof() - info.sig_len
    if end <= 0 or not data.startswith(b"\x7fELF"):
        raise ToolError("kernel module with a malformed signature block")
    return data[:end]


def module_index(modules_root: Path) -> dict[str, Path]:
    """Module name (with '-' and '_' folded to '_') → path of its .ko."""
    index = {}
    for ko in modules_root.rglob("*.ko"):
        index[ko.stem.replace("-", "_")] = ko
    return index


def module_depends(ko: Path) -> list[str]:
    with open(ko, "rb") as f:
        section = ELFFile(f).get_section_by_name(".modinfo")
        if section is None:
            return []
        for entry in section.data().split(b"\0"):
            if entry.startswith(b"depends="):
                deps = entry[len(b"depends=") :].decode()
                return [d.replace("-", "_") for d in deps.split(",") if d]
    return []


def module_closure(index: dict[str, Path], wanted: tuple[str, ...]) -> list[str]:
    todo, seen = list(wanted), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in index:
            raise ToolError(f"kernel module {name} not in the kernel package")
        seen.add(name)
        todo.extend(module_depends(index[name]))
    return sorted(seen)


def install_modules(kernel_root: Path, dest_root: Path, busybox: Path) -> tuple[str, list[str]]:
    """Copy the needed modules into dest_root/lib/modules/KVER and run depmod there."""
    kvers = sorted(p.name for p in (kernel_root / "lib/modules").iterdir())
    if len(kvers) != 1:
        raise ToolError(f"expected one kernel in the package, found {kvers}")
    kver = kvers[0]
    src = kernel_root / "lib/modules" / kver
    index = module_index(src / "kernel")
    names = module_closure(index, WANTED_MODULES)
    dst = dest_root / "lib/modules" / kver
    for name in names:
        rel = index[name].relative_to(src)
        (dst / rel.parent).mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(strip_signature(index[name].read_bytes()))
    for meta in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (src / meta).exists():
            shutil.copy2(src / meta, dst / meta)
    run([busybox, "depmod", "-b", dest_root, kver])
    # busybox depmod also writes modules.alias: modprobe -b of modaliases needs it
    if not (dst / "modules.alias").exists():
        raise ToolError("busybox depmod wrote no modules.alias")
    return kver, names
