"""The Hyper-V VM configuration the Import Virtual Machine wizard reads from a package's
`Virtual Machines/<GUID>.xml`: the Windows Server 2012 R2 export format (configuration
version 5.0, `properties/version` 1280), the newest one that is text; 2016+ write binary
`.vmcx` but still import 5.0 XML (they list it as an importable version).

Format facts (from real 2012 R2 exports as reproduced in Red Hat imagefactory's Hyper-V
Vagrant packager, and the device-class table of ExHyperV's vmcx schema): every value element
carries `type="string|integer|bool|bytes"`; each virtual device is an element
`_<instance GUID>_`, where the emulated ones use their device-class GUID as instance: IDE
83f8638b-…, serial 8e3a359f-…, BIOS ac6b8dc1-…; disks are `controllerN/driveM` with
`pathname` and `type` VHD; memory in MiB under `settings/memory/bank`.

Not known from any public export: how a Legacy Network Adapter (Msvm_EmulatedEthernetPort)
is written in this format. A guessed device section could make the wizard refuse the whole
file, so the configuration has no NIC and the README and `ipva inspect` say to add the
legacy adapter after import (Import-IPVA.ps1 adds it itself).
"""

from __future__ import annotations

import uuid
from typing import Any

from lxml import etree

from firmware.settings import BuildSettings
from hypervisors.common import disk_name

CONFIG_VERSION = 1280  # 5.0: Windows Server 2012 R2 / 8.1
IDE = "83f8638b-8dca-4152-9eda-2ca8b33039b4"  # Microsoft Emulated IDE Controller
SERIAL = "8e3a359f-559a-4b6a-98a9-1690a6100ed7"  # Microsoft Emulated Serial Controller
BIOS = "ac6b8dc1-3257-4a70-b1b2-a9c9215659ad"  # Microsoft Virtual BIOS
VHD_FOLDER = "Virtual Hard Disks"
VM_FOLDER = "Virtual Machines"
# where the disks seem to be on the exporting host: the wizard looks a disk up by file name
# in the import folder's Virtual Hard Disks when the recorded path is not there
EXPORT_ROOT = "C:\\ProgramData\\Microsoft\\Windows\\Hyper-V\\ipva"
# IDE slot per disk role: controller, location (the seed's 0:0 0:1 1:0 1:1)
SLOTS = {"boot": (0, 0), "cf": (0, 1), "flash": (1, 0), "dump": (1, 1)}
# 2012 R2 keeps creation_time as 8 big-endian bytes of Windows ticks, base64; fixed here
# (1 Jan 2020) so the build stays byte-reproducible
CREATION_TIME = "AdXANmkFAAA=\n"
BOOT_ORDER = ("HardDrive", "Network", "Optical", "Floppy")


def vm_id(settings: BuildSettings) -> str:
    """The VM's GUID, fixed by name, version, build and MAC (reproducible, unique per build)."""
    seed = f"ipva-hyperv/{settings.name}/{settings.version}/{settings.build}/{settings.mac}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed)).upper()


def config_name(settings: BuildSettings) -> str:
    return f"{VM_FOLDER}/{vm_id(settings)}.xml"


def disk_path(role: str) -> str:
    return f"{EXPORT_ROOT}\\{VHD_FOLDER}\\{disk_name(role, 'vhdx')}"


def _value(parent: etree._Element, tag: str, kind: str, text: str | int | bool | None) -> None:
    el = etree.SubElement(parent, tag, type=kind)
    if text is not None:
        el.text = str(text) if not isinstance(text, bool) else ("True" if text else "False")


def _tree(parent: etree._Element, data: dict) -> None:
    """data: tag -> (type, value) or a nested dict."""
    for tag, item in data.items():
        if isinstance(item, dict):
            _tree(etree.SubElement(parent, tag), item)
        else:
            _value(parent, tag, *item)


def _ide(roles: list[str]) -> dict:
    controllers: dict[str, Any] = {"VDEVVersion": ("integer", 1280)}
    for ctl in (0, 1):
        drives = {}
        for loc in (0, 1):
            role = next((r for r in roles if SLOTS.get(r) == (ctl, loc)), None)
            drives[f"drive{loc}"] = (
                {"pathname": ("string", disk_path(role)), "type": ("string", "VHD")}
                if role
                else {"pathname": ("string", None), "type": ("string", "NONE")}
            )
        controllers[f"controller{ctl}"] = drives
    return controllers


def render_config(settings: BuildSettings, roles: list[str]) -> bytes:
    """The configuration as Hyper-V writes it: UTF-16 with BOM, CRLF, standalone."""
    vmid = vm_id(settings)
    ram = settings.ram_mib
    data = {
        f"_{IDE}_": _ide(roles),
        f"_{SERIAL}_": {
            "VDEVVersion": ("integer", 512),
            "port0": {"connection": ("string", f"\\\\.\\pipe\\{settings.name}-com1")},
            "port1": {"connection": ("string", None)},
        },
        f"_{BIOS}_": {
            "VDEVVersion": ("integer", 512),
            "boot": {f"device{i}": ("string", d) for i, d in enumerate(BOOT_ORDER)},
            "num_lock": ("bool", False),
            "pause_after_boot_failure": ("bool", False),
        },
        "manifest": {"size": ("integer", 0), "version": ("integer", 260)},
        "properties": {
            "creation_time": ("bytes", CREATION_TIME),
            "global_id": ("string", vmid),
            "highly_available": ("bool", False),
            "name": ("string", settings.name),
            "notes": ("string", f"innovaphone Virtual Appliance {settings.version}"),
            "subtype": ("integer", 0),  # Generation 1
            "type_id": ("string", "Virtual Machines"),
            "version": ("integer", CONFIG_VERSION),
        },
        "settings": {
            "global": {"logical_id": ("string", vmid)},
            "memory": {
                "bank": {
                    "dynamic_memory_enabled": ("bool", False),
                    "limit": ("integer", ram),
                    "priority": ("integer", 5000),
                    "reservation": ("integer", ram),
                    "size": ("integer", ram),
                    "target_memory_buffer": ("integer", 20),
                }
            },
            "processors": {
                "count": ("integer", 1),
                "limit": ("integer", 100000),
                "limit_cpuid": ("bool", False),
                "reservation": ("integer", 0),
                "weight": ("integer", 100),
            },
        },
    }
    root = etree.Element("configuration")
    _tree(root, data)
    text = etree.tostring(root, pretty_print=True, encoding="utf-16", standalone=True)
    return text.decode("utf-16").replace("\n", "\r\n").encode("utf-16")
