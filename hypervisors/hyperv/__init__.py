"""Hyper-V Gen1 target: `<name>-hyperv.zip` with four dynamic VHDX (1 MiB blocks, whole-MiB
sizes) and `Import-IPVA.ps1` (IDE 0/0 0/1 1/0 1/1, legacy NIC, COM1 to a named pipe)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import disk_name, ordered_disks, work_dir
from hypervisors.registry import Target, register
from images import convert
from images.archive import write_zip

SCRIPT = "Import-IPVA.ps1"


def render_import_script(settings: BuildSettings) -> str:
    text = resources.files(__package__).joinpath(SCRIPT).read_text()
    # Hyper-V writes MACs as 12 hex digits without separators
    mac = (settings.mac or "").replace(":", "").upper()
    values = {"@NAME@": settings.name, "@RAM_MIB@": str(settings.ram_mib), "@MAC@": mac}
    for key, value in values.items():
        text = text.replace(key, value)
    # PowerShell 5.1 reads BOM-less scripts as ANSI; CRLF for Notepad users
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def make(settings: BuildSettings, disks: dict[str, Path]) -> list[Path]:
    out = settings.out_dir
    roles = ordered_disks(disks)
    with work_dir(out, "hyperv") as tmp:
        members = []
        for role, raw in roles:
            seed = f"{settings.name}/{settings.version}/{settings.build}/{role}"
            name = disk_name(role, "vhdx")
            members.append((name, convert.make_vhdx(raw, tmp / name, seed)))
        script = tmp / SCRIPT
        script.write_bytes(b"\xef\xbb\xbf" + render_import_script(settings).encode())
        members.append((SCRIPT, script))
        return [write_zip(out / f"{settings.name}-hyperv.zip", members)]


register(Target("hyperv", "Hyper-V Gen1: VHDX disks and Import-IPVA.ps1 in a zip", make))
