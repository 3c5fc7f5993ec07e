"""The .vmx bundle for Workstation/Player: the config from data, disks as monolithicSparse.

Workstation cannot run streamOptimized disks (they are an import format), so the bundle
uses qemu-img's monolithicSparse with a reproducible CID. ESXi cannot run monolithicSparse
either: ESXi users deploy the OVA (or convert each disk with `vmkfstools -i … -d thin`).
"""

from __future__ import annotations

from pathlib import Path

from firmware.settings import BuildSettings
from hypervisors.common import disk_name
from hypervisors.vmware.ovf import IDE_SLOTS, VMX_EXTRA
from images import convert


def vmx_settings(settings: BuildSettings) -> dict[str, str]:
    """The .vmx as ordered key → value; written as `key = "value"` lines."""
    cfg = {
        ".encoding": "UTF-8",
        "config.version": "8",
        "virtualHW.version": str(settings.vmx_version),
        "displayName": settings.name,
        "guestOS": "other",
        "firmware": "bios",
        "numvcpus": "1",
        "memsize": str(settings.ram_mib),
        # all memory reserved and locked (what ESXi's "Reserve all guest memory" writes)
        "sched.mem.min": str(settings.ram_mib),
        "sched.mem.pin": "TRUE",
        **VMX_EXTRA,
        "tools.syncTime": "FALSE",
    }
    for role, (bus, pos) in IDE_SLOTS.items():
        cfg[f"ide{bus}:{pos}.present"] = "TRUE"
        # "ata-hardDisk" is what Workstation writes for an IDE disk and what converters
        # (virt-v2v) look for
        cfg[f"ide{bus}:{pos}.deviceType"] = "ata-hardDisk"
        cfg[f"ide{bus}:{pos}.fileName"] = disk_name(role, "vmdk")
    cfg.update(
        {
            "ethernet0.present": "TRUE",
            "ethernet0.virtualDev": "vlance",
            "ethernet0.connectionType": "bridged",
            "ethernet0.startConnected": "TRUE",
        }
    )
    if settings.mac:
        cfg["ethernet0.addressType"] = "static"
        cfg["ethernet0.address"] = settings.mac
        # 00:90:33 is outside VMware's static range; without this Workstation refuses it
        cfg["ethernet0.checkMACAddress"] = "FALSE"
    else:
        cfg["ethernet0.addressType"] = "generated"
    cfg.update(
        {
            "serial0.present": "TRUE",
            "serial0.fileType": "pipe",
            "serial0.fileName": f"\\\\.\\pipe\\{settings.name}-com1",
            "serial0.pipe.endPoint": "server",
            "serial0.yieldOnMsrRead": "TRUE",
        }
    )
    return cfg


def render_vmx(cfg: dict[str, str]) -> str:
    for k, v in cfg.items():
        if '"' in v or "\n" in v:
            raise ValueError(f"vmx value for {k} cannot contain quotes or newlines: {v!r}")
    return "".join(f'{k} = "{v}"\n' for k, v in cfg.items())


def make_vmx_bundle(
    settings: BuildSettings, roles: list[tuple[str, Path]], dest: Path
) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for role, raw in roles:
        seed = f"{settings.name}/{settings.version}/{settings.build}/{role}"
        files.append(convert.make_vmdk_sparse(raw, dest / disk_name(role, "vmdk"), seed))
    vmx = dest / f"{settings.name}.vmx"
    vmx.write_text(render_vmx(vmx_settings(settings)))
    return [vmx, *files]
