"""VMware target: `<name>.ova` (SHA-256 manifest), `<name>-sha1.ova` (the same with a SHA-1
manifest, for vCenter of the vSphere 5.x era), `<name>-ovf.zip` (the OVA inside, as the vendor
ships it) and a Workstation/Player bundle `vmware/<name>.vmx` + monolithicSparse disks."""

from __future__ import annotations

from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import ordered_disks
from hypervisors.registry import Target, register
from hypervisors.vmware.ova import make_ovas
from hypervisors.vmware.vmx import make_vmx_bundle
from images.archive import write_zip


def make(settings: BuildSettings, disks: dict[str, Path]) -> list[Path]:
    out = settings.out_dir
    roles = ordered_disks(disks)
    outputs = {"sha256": out / f"{settings.name}.ova", "sha1": out / f"{settings.name}-sha1.ova"}
    ova, ova_sha1 = make_ovas(settings, roles, outputs, variant="vmware")
    zipped = write_zip(out / f"{settings.name}-ovf.zip", [(ova.name, ova)])
    vmx_files = make_vmx_bundle(settings, roles, out / "vmware")
    return [ova, ova_sha1, zipped, *vmx_files]


register(
    Target("vmware", "VMware: OVA (SHA-256 and SHA-1), OVF zip, .vmx bundle (IDE, vlance)", make)
)
