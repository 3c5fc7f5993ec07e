"""GNS3 target: `gns3/<name>.gns3a` (hypervisors.gns3.appliance) and the four disks it names,
monolithicSparse VMDKs (QEMU runs them; GNS3 puts a qcow2 linked clone on top per node)."""

from __future__ import annotations

from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import ordered_disks
from hypervisors.gns3.appliance import HD_SLOTS, DiskImage, image_name, make_appliance, render
from hypervisors.registry import Target, register
from images import convert
from images.archive import file_digest


def make(settings: BuildSettings, disks: dict[str, Path]) -> list[Path]:
    dest = settings.out_dir / "gns3"
    dest.mkdir(parents=True, exist_ok=True)
    images = []
    for n, ((role, raw), slot) in enumerate(zip(ordered_disks(disks), HD_SLOTS, strict=True), 1):
        seed = f"{settings.name}/{settings.version}/{settings.build}/{role}"
        vmdk = convert.make_vmdk_sparse(raw, dest / image_name(n, settings.version), seed)
        images.append(DiskImage(slot, vmdk.name, vmdk.stat().st_size, file_digest(vmdk, "md5")))
    appliance = make_appliance(settings.name, settings.version, settings.ram_mib, images)
    path = dest / f"{settings.name}.gns3a"
    path.write_text(render(appliance), encoding="utf-8")
    return [path, *(dest / img.filename for img in images)]


register(Target("gns3", "GNS3: .gns3a appliance (schema 6) + 4 VMDKs (IDE, vmxnet3)", make))
