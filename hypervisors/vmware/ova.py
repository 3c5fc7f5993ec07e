"""The OVA: streamOptimized VMDKs, the OVF, the manifest, packed as a USTAR tar.

Member order is what VMware expects when streaming: .ovf first, then .mf, then the disks
in References order. One set of VMDKs can go into several OVAs that differ only in the
manifest's digest: SHA-256 (vSphere 6.5+ prefers it) and SHA-1 (the only one vCenter of the
vSphere 5.x era accepts).
"""

from __future__ import annotations

from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import disk_name, work_dir
from hypervisors.vmware.ovf import OvfDisk, make_ovf
from images import convert
from images.archive import file_digest, manifest_line, write_tar

MANIFEST_ALGOS = ("sha256", "sha1")


def make_ovas(
    settings: BuildSettings,
    roles: list[tuple[str, Path]],
    outputs: dict[str, Path],
    *,
    variant: str,
) -> list[Path]:
    """One OVA per manifest digest in `outputs` (algo → path), all from the same disks."""
    for algo in outputs:
        if algo not in MANIFEST_ALGOS:
            raise ValueError(f"manifest digest {algo!r}: choose from {', '.join(MANIFEST_ALGOS)}")
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
        written = []
        for algo, out in outputs.items():
            mf = tmp / f"{settings.name}.mf"
            mf.write_text("".join(manifest_line(n, file_digest(p, algo), algo) for n, p in members))
            written.append(write_tar(out, [(ovf.name, ovf), (mf.name, mf), *files]))
        return written


def make_ova(
    settings: BuildSettings,
    roles: list[tuple[str, Path]],
    out: Path,
    *,
    variant: str,
    algo: str = "sha256",
) -> Path:
    return make_ovas(settings, roles, {algo: out}, variant=variant)[0]
