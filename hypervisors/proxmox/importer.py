"""What Proxmox VE's OVA/OVF import makes of an OVF: a model of its rules, not its code.

Facts read from pve-storage (`src/PVE/GuestImport/OVF.pm` and `DirPlugin::get_import_metadata`,
snapshot 0c56bad, 2026-07), which the GUI's "Import" of an .ova from an import storage runs:
- Each Disk Drive item (ResourceType 17) becomes `<type><AddressOnParent>`, where <type> comes
  from the ResourceType of its Parent only: 5 → ide, 6 → scsi, 20 → sata. The controller's own
  Address (IDE 0 or 1) is never read, and the disks are kept in a hash by that name, so a
  later disk with the same name replaces an earlier one: it is lost.
- The size is `ovf:capacity` × the factor of `ovf:capacityAllocationUnits`, which must read
  `byte * BASE^EXP`; anything else (plain "byte") leaves the size unknown.
- Memory is the memory item's VirtualQuantity taken as MiB whatever its unit; cores the
  processor item's VirtualQuantity.
- A NIC's model is its ResourceSubType lower-cased if that is e1000, e1000e or vmxnet3, else
  e1000.
- Boot order: every disk name in item order. BIOS: OVMF only for `vmw:Config firmware=efi`.
- `scsihw` is never set, so the VM gets Proxmox's default SCSI controller, LSI 53C895A: the
  GUI's import window (pve-manager `www/manager6/window/GuestImport.js`, snapshot 14a22df)
  offers the import's scsihw, else "Default", and only a Windows ostype with "Prepare for
  VirtIO-SCSI" picks virtio-scsi-single.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

NS = {
    "ovf": "http://schemas.dmtf.org/ovf/envelope/1",
    "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
    "vmw": "http://www.vmware.com/schema/ovf",
}
CONTROLLER_TYPES = {5: "ide", 6: "scsi", 20: "sata"}
NIC_MODELS = ("e1000", "e1000e", "vmxnet3")
DEFAULT_NIC = "e1000"
DEFAULT_SCSIHW = "lsi"  # qemu-server's default: LSI 53C895A
_UNIT_RE = re.compile(r"^\s*byte\s*\*\s*([0-9]+)\s*\^\s*([0-9]+)\s*$")


def capacity_factor(units: str) -> int | None:
    """Bytes per capacity unit as the importer parses it, None where it finds none."""
    m = _UNIT_RE.match(units)
    return int(m[1]) ** int(m[2]) if m else None


@dataclass(frozen=True)
class ImportedDisk:
    name: str  # scsi0, ide1, …
    href: str  # the file in the OVA
    size: int | None  # bytes; None: the importer found no size


@dataclass
class ProxmoxImport:
    name: str
    cores: str
    memory_mib: str
    bios: str
    disks: dict[str, ImportedDisk] = field(default_factory=dict)
    lost: list[tuple[ImportedDisk, ImportedDisk]] = field(default_factory=list)  # (lost, winner)
    boot_order: list[str] = field(default_factory=list)
    nics: list[str] = field(default_factory=list)
    scsihw: str = DEFAULT_SCSIHW


def _text(node: etree._Element, path: str) -> str:
    return (node.findtext(path, namespaces=NS) or "").strip()


def read_import(ovf: bytes) -> ProxmoxImport:
    """The VM Proxmox VE would create from this OVF text."""
    doc = etree.fromstring(ovf)
    vs = doc.find("ovf:VirtualSystem", NS)
    if vs is None:
        raise ValueError("no VirtualSystem in the OVF")
    hw_items = vs.findall("ovf:VirtualHardwareSection/ovf:Item", NS)
    by_id = {_text(i, "rasd:InstanceID"): i for i in hw_items}

    def items(rtype: int) -> list[etree._Element]:
        return [i for i in hw_items if _text(i, "rasd:ResourceType") == str(rtype)]

    firmware = vs.find("ovf:VirtualHardwareSection/vmw:Config[@vmw:key='firmware']", NS)
    efi = firmware is not None and firmware.get(f"{{{NS['vmw']}}}value") == "efi"
    vm = ProxmoxImport(
        name=re.sub(r"[^a-zA-Z0-9\-.]", "", re.sub(r"\s+", "-", _text(vs, "ovf:Name"))),
        cores="".join(_text(i, "rasd:VirtualQuantity") for i in items(3)),
        memory_mib="".join(_text(i, "rasd:VirtualQuantity") for i in items(4)),
        bios="ovmf" if efi else "seabios",
    )
    ovf_ns = f"{{{NS['ovf']}}}"
    disks = {d.get(f"{ovf_ns}diskId"): d for d in doc.findall("ovf:DiskSection/ovf:Disk", NS)}
    files = {f.get(f"{ovf_ns}id"): f for f in doc.findall("ovf:References/ovf:File", NS)}
    for item in items(17):
        disk_id = _text(item, "rasd:HostResource").rpartition("/")[2]
        disk = disks.get(disk_id)
        parent = by_id.get(_text(item, "rasd:Parent"))
        if disk is None or parent is None:
            continue  # the importer warns and skips such an item
        ref = files.get(disk.get(f"{ovf_ns}fileRef"))
        if ref is None:
            continue
        ctype = CONTROLLER_TYPES.get(int(_text(parent, "rasd:ResourceType") or 0), "")
        name = ctype + _text(item, "rasd:AddressOnParent")
        factor = capacity_factor(disk.get(f"{ovf_ns}capacityAllocationUnits", ""))
        size = int(disk.get(f"{ovf_ns}capacity", "0")) * factor if factor else None
        imported = ImportedDisk(name, ref.get(f"{ovf_ns}href", ""), size)
        if name in vm.disks:
            vm.lost.append((vm.disks[name], imported))
        vm.disks[name] = imported
        vm.boot_order.append(name)
    for item in items(10):
        model = _text(item, "rasd:ResourceSubType").lower()
        vm.nics.append(model if model in NIC_MODELS else DEFAULT_NIC)
    return vm
