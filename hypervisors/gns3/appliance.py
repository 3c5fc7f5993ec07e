"""The GNS3 appliance file (`.gns3a`): JSON in the registry's schema version 6, from data.

Version 6 is the newest that gns3-server itself validates and installs (3.0.6:
`gns3server.schemas.Appliance` takes registry_version 1–6, and its ApplianceToTemplate
reads the `qemu` block); the registry's version 8 (`settings` lists, GNS3 ≥ 2.2.43 GUI) is
refused by that schema. The registry's own IPVA entry (innovaphone-ipva.gns3a, version 4)
has the same shape, so our images also fit there as a new version.

The hardware is the registry entry's (two vmxnet3, four IDE disks, 256 MiB, 1 vCPU) with
the console on the box's serial port (GNS3's telnet console: the trace and the shell, text
a lab user can copy), and the disks named as the registry names the real box's:
`ipva-qemu-disk1..4-<version>.vmdk`, each with the size and md5sum GNS3 checks on import.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REGISTRY_VERSION = 6
HD_SLOTS = ("hda", "hdb", "hdc", "hdd")  # boot, CF, flash, dump: IDE 0:0 0:1 1:0 1:1
# the box's defaults, in the registry entry's words (ecosystem.md)
USAGE = (
    "Default user admin/ipva. Default network configuration: DHCP client on ETH0 with "
    "fallback to static address 192.168.0.1/24 after 8 s without an answer (the DHCP client "
    "goes on asking; a lease replaces the fallback). Static address 192.168.1.1/24 on ETH1. "
    "The console (telnet) shows the boot trace, the address and the IPVA> prompt; the web "
    "admin is at http://<address>/. A static address instead of DHCP:\n"
    "> config change IP0 ETH0 /addr 192.168.0.10 /mask 255.255.255.0\n"
    "> config change DHCP0 /mode off\n"
    "> config write\n"
    "> reset"
)


@dataclass(frozen=True)
class DiskImage:
    """One image as the appliance names it: GNS3 finds it by name and checks size and md5."""

    slot: str  # hda … hdd
    filename: str
    filesize: int
    md5sum: str


def image_name(n: int, version: str) -> str:
    """ipva-qemu-disk1-16r1sr1.vmdk …: the registry's names for the real box's disks."""
    return f"ipva-qemu-disk{n}-{version}.vmdk"


def appliance_id(name: str) -> str:
    """Stable per appliance name (reproducible builds), apart from the registry entry's."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ipva:gns3:{name}"))


def make_appliance(
    name: str, version: str, ram_mib: int, images: list[DiskImage]
) -> dict[str, Any]:
    qemu: dict[str, Any] = {
        "adapter_type": "vmxnet3",
        "adapters": 2,
        "ram": ram_mib,
        "cpus": 1,
        **{f"{img.slot}_disk_interface": "ide" for img in images},
        "arch": "x86_64",
        "console_type": "telnet",
        "boot_priority": "c",
        "kvm": "allow",
        "on_close": "power_off",
        "process_priority": "normal",
    }
    return {
        "appliance_id": appliance_id(name),
        "name": name,  # GNS3 names nodes <name>-1 …: a valid host name (RFC 1123)
        "category": "guest",
        "description": (
            "An open re-creation of the innovaphone Virtual Appliance (IPVA): a virtual "
            "innovaphone hard-box with its boot trace, console shell and web admin."
        ),
        "vendor_name": "innovaphone",
        "vendor_url": "https://www.innovaphone.com/",
        "documentation_url": (
            "https://wiki.innovaphone.com/index.php?title="
            "Reference15r1:Concept_Innovaphone_Virtual_Appliance_(IPVA)"
        ),
        "product_name": "IPVA",
        "registry_version": REGISTRY_VERSION,
        "status": "experimental",
        "availability": "free",
        "maintainer": "ipva",
        "maintainer_email": "",
        "usage": USAGE,
        "port_name_format": "ETH{0}",
        "linked_clone": True,
        "qemu": qemu,
        "images": [
            {
                "filename": img.filename,
                "version": version,
                "md5sum": img.md5sum,
                "filesize": img.filesize,
                "download_url": "",
            }
            for img in images
        ],
        "versions": [
            {
                "name": version,
                "images": {f"{img.slot}_disk_image": img.filename for img in images},
            }
        ],
    }


def render(appliance: Mapping[str, Any]) -> str:
    return json.dumps(appliance, indent=4, ensure_ascii=False) + "\n"
