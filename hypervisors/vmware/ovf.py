"""The OVF 1.x descriptor, built from data with lxml.

Rules that make it validate against DSP8023 1.1.1 and import cleanly:
- rasd:/vssd: children in the schema's (alphabetical) order: `_item()` sorts them.
- vmw:Config / vmw:ExtraConfig after the Items (the schema's trailing xs:any).
- Memory in `byte * 2^20`; Proxmox reads VirtualQuantity as MiB, VMware honours the unit.
- Disk capacities in `byte * 2^20` too: Proxmox's importer only understands
  `byte * BASE^EXP` and finds no size at all for plain "byte".
Two variants: "vmware" (two IDE controllers, disks at 0:0 0:1 1:0 1:1, PCNet32) and
"proxmox" (one SCSI controller, disks at 0–3, E1000): Proxmox's importer keys disks by
controller type + AddressOnParent only, so two IDE controllers would make disks collide.
The SCSI controller is declared "lsilogic": Proxmox ignores the subtype and creates its
default LSI 53C895A, which the guest drives (sym53c8xx).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from firmware.settings import BuildSettings

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW = "http://www.vmware.com/schema/ovf"
CIM = "http://schemas.dmtf.org/wbem/wscim/1/common"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
NSMAP = {None: OVF, "ovf": OVF, "rasd": RASD, "vssd": VSSD, "vmw": VMW, "cim": CIM, "xsi": XSI}
STREAM_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
CAPACITY_UNITS = "byte * 2^20"
MiB = 1 << 20

# CIM ResourceType values (CIM_ResourceAllocationSettingData)
RT_PROCESSOR, RT_MEMORY, RT_IDE, RT_SCSI, RT_ETHERNET, RT_DISK = 3, 4, 5, 6, 10, 17

# the order of CIM_ResourceAllocationSettingData_Type's sequence (alphabetical)
RASD_ORDER = (
    "Address AddressOnParent AllocationUnits AutomaticAllocation AutomaticDeallocation Caption "
    "Connection ConsumerVisibility Description ElementName HostResource InstanceID Limit "
    "MappingBehavior OtherResourceType Parent PoolID Reservation ResourceSubType ResourceType "
    "VirtualQuantity VirtualQuantityUnits Weight"
).split()

# role → (IDE controller, position) on VMware; SCSI target on the Proxmox variant
ROLES = ("boot", "cf", "flash", "dump")
IDE_SLOTS = {"boot": (0, 0), "cf": (0, 1), "flash": (1, 0), "dump": (1, 1)}
NETWORK = "VM Network"
# .vmx settings the OVA carries as ExtraConfig (ovftool: --allowExtraConfig) and the .vmx
# bundle writes: the box's timekeeping needs the pseudo perf counters; media streams need
# high latency sensitivity (the wiki's "Voice Quality Issues": fewer CPU halt/wake-ups)
VMX_EXTRA = {
    "monitor_control.pseudo_perfctr": "TRUE",
    "sched.cpu.latencySensitivity": "high",
}


@dataclass(frozen=True)
class OvfDisk:
    role: str
    href: str  # file name inside the OVA
    file_size: int
    capacity: int  # bytes
    populated_size: int | None = None


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _sub(parent: etree._Element, ns: str, tag: str, text: str | None = None, **attrs: str):
    el = etree.SubElement(parent, _q(ns, tag))
    for k, v in attrs.items():
        prefix, _, name = k.partition("_")
        el.set(_q({"ovf": OVF, "vmw": VMW}[prefix], name), v)
    if text is not None:
        el.text = text
    return el


def _item(parent: etree._Element, **fields: str | int | bool) -> etree._Element:
    item = _sub(parent, OVF, "Item")
    for name in sorted(fields, key=RASD_ORDER.index):
        v = fields[name]
        _sub(item, RASD, name, str(v).lower() if isinstance(v, bool) else str(v))
    return item


def make_ovf(settings: BuildSettings, disks: list[OvfDisk], *, variant: str = "vmware") -> bytes:
    """The .ovf text (UTF-8, with declaration) for `disks` in role order."""
    if variant not in ("vmware", "proxmox"):
        raise ValueError(f"unknown OVF variant {variant!r}")
    env = etree.Element(_q(OVF, "Envelope"), nsmap=NSMAP)
    env.set(_q(VMW, "buildId"), f"ipva-{settings.version}-{settings.build}")

    refs = _sub(env, OVF, "References")
    for i, d in enumerate(disks, 1):
        _sub(refs, OVF, "File", ovf_href=d.href, ovf_id=f"file{i}", ovf_size=str(d.file_size))

    section = _sub(env, OVF, "DiskSection")
    _sub(section, OVF, "Info", "Virtual disk information")
    for i, d in enumerate(disks, 1):
        if d.capacity % MiB:
            raise ValueError(f"{d.href}: capacity {d.capacity} is not whole MiB")
        attrs = dict(
            ovf_capacity=str(d.capacity // MiB),
            ovf_capacityAllocationUnits=CAPACITY_UNITS,
            ovf_diskId=f"vmdisk{i}",
            ovf_fileRef=f"file{i}",
            ovf_format=STREAM_FORMAT,
        )
        if d.populated_size is not None:
            attrs["ovf_populatedSize"] = str(d.populated_size)
        _sub(section, OVF, "Disk", **attrs)

    net = _sub(env, OVF, "NetworkSection")
    _sub(net, OVF, "Info", "The list of logical networks")
    network = _sub(net, OVF, "Network", ovf_name=NETWORK)
    _sub(network, OVF, "Description", f"The {NETWORK} network")

    vs = _sub(env, OVF, "VirtualSystem", ovf_id=settings.name)
    _sub(vs, OVF, "Info", "innovaphone Virtual Appliance")
    _sub(vs, OVF, "Name", settings.name)
    os_section = _sub(vs, OVF, "OperatingSystemSection", ovf_id="1", vmw_osType="otherGuest")
    _sub(os_section, OVF, "Info", "The kind of installed guest operating system")

    hw = _sub(vs, OVF, "VirtualHardwareSection")
    _sub(hw, OVF, "Info", "Virtual hardware requirements")
    system = _sub(hw, OVF, "System")
    _sub(system, VSSD, "ElementName", "Virtual Hardware Family")
    _sub(system, VSSD, "InstanceID", "0")
    _sub(system, VSSD, "VirtualSystemIdentifier", settings.name)
    _sub(system, VSSD, "VirtualSystemType", f"vmx-{settings.vmx_version:02d}")

    ids = iter(range(1, 100))
    _item(
        hw,
        AllocationUnits="hertz * 10^6",
        Description="Number of Virtual CPUs",
        ElementName="1 virtual CPU(s)",
        InstanceID=next(ids),
        ResourceType=RT_PROCESSOR,
        VirtualQuantity=1,
    )
    memory: dict[str, str | int | bool] = dict(
        AllocationUnits="byte * 2^20",
        Description="Memory Size",
        ElementName=f"{settings.ram_mib}MB of memory",
        InstanceID=next(ids),
        ResourceType=RT_MEMORY,
        VirtualQuantity=settings.ram_mib,
    )
    if variant == "vmware":
        # all of it reserved: the wiki's "Voice Quality Issues" (and high latency
        # sensitivity requires it); Proxmox's importer reads no reservation
        memory["Reservation"] = settings.ram_mib
    _item(hw, **memory)
    if variant == "vmware":
        controllers = {}
        for bus in (0, 1):
            controllers[bus] = next(ids)
            _item(
                hw,
                Address=bus,
                Description="IDE Controller",
                ElementName=f"ideController{bus}",
                InstanceID=controllers[bus],
                ResourceType=RT_IDE,
            )
        slots = {r: (controllers[b], p) for r, (b, p) in IDE_SLOTS.items()}
    else:
        scsi = next(ids)
        _item(
            hw,
            Address=0,
            Description="SCSI Controller",
            ElementName="scsiController0",
            InstanceID=scsi,
            ResourceSubType="lsilogic",
            ResourceType=RT_SCSI,
        )
        slots = {r: (scsi, n) for n, r in enumerate(ROLES)}
    for i, d in enumerate(disks, 1):
        parent, pos = slots[d.role]
        _item(
            hw,
            AddressOnParent=pos,
            Description=f"hd-{d.role}",
            ElementName=f"Hard Disk {i}",
            HostResource=f"ovf:/disk/vmdisk{i}",
            InstanceID=next(ids),
            Parent=parent,
            ResourceType=RT_DISK,
        )
    nic_model = "PCNet32" if variant == "vmware" else "E1000"
    nic: dict[str, str | int | bool] = dict(
        AddressOnParent=7,
        AutomaticAllocation=True,
        Connection=NETWORK,
        Description=f'{nic_model} ethernet adapter on "{NETWORK}"',
        ElementName="Network adapter 1",
        InstanceID=next(ids),
        ResourceSubType=nic_model,
        ResourceType=RT_ETHERNET,
    )
    if settings.mac:
        nic["Address"] = settings.mac
    _item(hw, **nic)
    if variant == "vmware":
        # after the Items: the schema's trailing xs:any, where VMware puts its extensions
        _sub(hw, VMW, "Config", ovf_required="false", vmw_key="firmware", vmw_value="bios")
        for key, value in VMX_EXTRA.items():
            _sub(hw, VMW, "ExtraConfig", ovf_required="false", vmw_key=key, vmw_value=value)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8", pretty_print=True)
