"""The OVA: streamOptimized VMDKs, the OVF, the manifest, packed as a USTAR tar.

Member order is what VMware expects when streaming: .ovf first, then .mf, then the disks
in References order.
"""

from __future__ import annotations

from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import disk_name, work_dir
from hypervisors.vmware.ovf import OvfDisk, make_ovf
from images import convert
from images.archive import file_digest, manifest_line, write_tar


def make_ova(
    settings: BuildSettings, roles: list[tuple[str, Path]], out: Path, *, variant: str
) -> Path:
    algo = "sha1" if settings.manifest_sha1 else "sha256"
    with work_dir(settings.out_dir, f"ova-{variant}") as tmp:
        files: list[tuple[str, Path]] = []
        ovf_disks = []
        for role, raw in roles:
            name = disk_name(role, "vmdk")
            vmdk = convert.make_vmdk_stream(raw, tmp / name)
            files.append((name, vmdk))
            ovf_disks.append(
                OvfDisk(
                    role=role,
                    href=name,
                    file_size=vmdk.stat().st_size,
                    capacity=convert.disk_size(raw),
                )
            )
        ovf = tmp / f"{settings.name}.ovf"
        ovf.write_bytes(make_ovf(settings, ovf_disks, variant=variant))
        members = [(ovf.name, ovf), *files]
        mf = tmp / f"{settings.name}.mf"
        mf.write_text("".join(manifest_line(n, file_digest(p, algo), algo) for n, p in members))
        return write_tar(out, [(ovf.name, ovf), (mf.name, mf), *files])
