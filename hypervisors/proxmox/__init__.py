"""Proxmox VE target: `<name>-proxmox.ova` for the GUI importer, and `proxmox/` with qcow2
disks plus `<name>-proxmox-install.sh`, which creates the VM the way the seed asks
(1 socket/1 core, SeaBIOS, i440fx, VirtIO SCSI single, VirtIO net, serial0 socket)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import ROLES, disk_name, ordered_disks
from hypervisors.registry import Target, register
from hypervisors.vmware.ova import make_ova
from images import convert


def render_install_script(settings: BuildSettings) -> str:
    """The install script template with this build's defaults filled in."""
    text = resources.files(__package__).joinpath("install.sh").read_text()
    values = {
        "@NAME@": settings.name,
        "@RAM_MIB@": str(settings.ram_mib),
        "@MAC@": settings.mac or "",
        "@DISKS@": " ".join(disk_name(r, "qcow2") for r in ROLES),
        "@VERSION@": f"{settings.version} ({settings.build})",
    }
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def make(settings: BuildSettings, disks: dict[str, Path]) -> list[Path]:
    out = settings.out_dir
    roles = ordered_disks(disks)
    # Proxmox's importer: disks keyed by controller type + AddressOnParent, so one SCSI
    # controller with targets 0–3; NICs only e1000/e1000e/vmxnet3
    ova = make_ova(settings, roles, out / f"{settings.name}-proxmox.ova", variant="proxmox")
    dest = out / "proxmox"
    dest.mkdir(parents=True, exist_ok=True)
    qcow2s = [convert.make_qcow2(raw, dest / disk_name(role, "qcow2")) for role, raw in roles]
    script = dest / f"{settings.name}-proxmox-install.sh"
    script.write_text(render_install_script(settings))
    script.chmod(0o755)
    return [ova, script, *qcow2s]


register(Target("proxmox", "Proxmox VE: importer OVA, qcow2 disks and a qm install script", make))
