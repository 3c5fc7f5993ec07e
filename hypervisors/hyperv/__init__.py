"""Hyper-V Gen1 target: `<name>-hyperv.zip` with `Virtual Machines/<GUID>.xml` for the
Import Virtual Machine wizard (hypervisors.hyperv.vmconfig), four dynamic VHDX (1 MiB
blocks, whole-MiB sizes) in `Virtual Hard Disks/`, `Import-IPVA.ps1` (IDE 0/0 0/1 1/0 1/1,
legacy NIC, COM1 to a named pipe) and a README.txt that says how to run it past the default
execution policy."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import disk_name, ordered_disks, work_dir
from hypervisors.registry import Target, register
from images import convert
from images.archive import write_zip

from . import vmconfig

SCRIPT = "Import-IPVA.ps1"
README = "README.txt"
# for the admin who has only the zip: a script from a downloaded zip carries the internet
# zone mark, and the default policy (RemoteSigned) refuses to run it
README_TEXT = """innovaphone Virtual Appliance @VERSION@ for Hyper-V (Generation 1)

Either: Hyper-V Manager > Import Virtual Machine, folder: this unpacked folder, choose
"Copy the virtual machine (create a new unique ID)". That creates @NAME@ (Gen1, @RAM_MIB@ MiB
static, 1 vCPU, the four disks on IDE 0/0 0/1 1/0 1/1, COM1 on \\\\.\\pipe\\@NAME@-com1) but
WITHOUT a network adapter; add the Legacy Network Adapter the appliance needs, then start it:

    Add-VMNetworkAdapter -VMName @NAME@ -IsLegacy $true -SwitchName "External"

Or: create the VM complete with Import-IPVA.ps1, in an elevated PowerShell in this folder:

    Set-ExecutionPolicy -Scope Process -ExecutionPolicy RemoteSigned
    Unblock-File .\\Import-IPVA.ps1
    .\\Import-IPVA.ps1 -SwitchName "External" -Name @NAME@ -Path D:\\VMs\\@NAME@

Windows 10/11 allow no scripts by default (Restricted), Windows Server only local ones
(RemoteSigned): the first line allows local scripts in this PowerShell window only, and
Unblock-File removes the "downloaded from the internet" mark the zip gave the script.

The script copies the four disks to -Path and creates a Gen1 VM: @RAM_MIB@ MiB static memory,
1 vCPU, IDE 0/0 hd-boot, 0/1 hd-cf, 1/0 hd-flash, 1/1 hd-dump, a Legacy Network Adapter on
-SwitchName and COM1 on the named pipe \\\\.\\pipe\\<Name>-com1 (the console).
Get-Help .\\Import-IPVA.ps1 -Full lists every option.
"""


def render_import_script(settings: BuildSettings) -> str:
    text = resources.files(__package__).joinpath(SCRIPT).read_text()
    # Hyper-V writes MACs as 12 hex digits without separators
    mac = (settings.mac or "").replace(":", "").upper()
    values = {"@NAME@": settings.name, "@RAM_MIB@": str(settings.ram_mib), "@MAC@": mac}
    for key, value in values.items():
        text = text.replace(key, value)
    # PowerShell 5.1 reads BOM-less scripts as ANSI; CRLF for Notepad users
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def render_readme(settings: BuildSettings) -> str:
    text = README_TEXT
    values = {
        "@NAME@": settings.name,
        "@RAM_MIB@": str(settings.ram_mib),
        "@VERSION@": f"{settings.version} ({settings.build})",
    }
    for key, value in values.items():
        text = text.replace(key, value)
    return text.replace("\n", "\r\n")  # Notepad


def make(settings: BuildSettings, disks: dict[str, Path]) -> list[Path]:
    out = settings.out_dir
    roles = ordered_disks(disks)
    with work_dir(out, "hyperv") as tmp:
        members = []
        for role, raw in roles:
            seed = f"{settings.name}/{settings.version}/{settings.build}/{role}"
            name = disk_name(role, "vhdx")
            vhdx = convert.make_vhdx(raw, tmp / name, seed)
            members.append((f"{vmconfig.VHD_FOLDER}/{name}", vhdx))
        config = tmp / "vm.xml"
        config.write_bytes(vmconfig.render_config(settings, [role for role, _ in roles]))
        members.insert(0, (vmconfig.config_name(settings), config))
        script = tmp / SCRIPT
        script.write_bytes(b"\xef\xbb\xbf" + render_import_script(settings).encode())
        members.append((SCRIPT, script))
        readme = tmp / README
        readme.write_bytes(render_readme(settings).encode())
        members.append((README, readme))
        return [write_zip(out / f"{settings.name}-hyperv.zip", members)]


register(Target("hyperv", "Hyper-V Gen1: VHDX disks and Import-IPVA.ps1 in a zip", make))
