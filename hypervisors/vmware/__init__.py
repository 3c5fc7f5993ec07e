"""VMware target: `<name>.ova`, `<name>-ovf.zip` (the OVA inside, as the vendor ships it) and
a Workstation/Player bundle `vmware/<name>.vmx` + monolithicSparse disks."""

from __future__ import annotations

from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import ordered_disks
from hypervisors.registry import Target, register
from hypervisors.vmware.ova import make_ova
from hypervisors.vmware.vmx import make_vmx_bundle
from images.archive import write_zip


def make(settings: BuildSettings, disks: dict[str, Path]) -> list[Path]:
    out = settings.out_dir
    roles = ordered_disks(disks)
    ova = make_ova(settings, roles, out / f"{settings.name}.ova", variant="vmware")
    zipped = write_zip(out / f"{settings.name}-ovf.zip", [(ova.name, ova)])
    vmx_files = make_vmx_bundle(settings, roles, out / "vmware")
    return [ova, zipped, *vmx_files]


register(Target("vmware", "VMware: OVA, OVF zip and a .vmx bundle (IDE, vlance)", make))
