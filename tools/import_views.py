"""What each hypervisor's importer will make of a package: controller and slot per disk, NIC
model, memory, sizes; and where a disk would be lost or the guest would find no driver.

`ipva inspect` prints these views beside its structure checks. Each view returns lines to
show and warnings; a warning is not a failed check: ipva.ova is a sound VMware package even
though Proxmox would lose two of its disks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from hypervisors.hyperv import vmconfig
from hypervisors.proxmox.importer import capacity_factor, read_import

NS = {
    "ovf": "http://schemas.dmtf.org/ovf/envelope/1",
    "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
    "vmw": "http://www.vmware.com/schema/ovf",
}
MiB = 1 << 20
# OVF NIC subtype → the .vmx ethernet0.virtualDev VMware creates
VMWARE_NICS = {"pcnet32": "vlance", "e1000": "e1000", "e1000e": "e1000e", "vmxnet3": "vmxnet3"}
# the guest's drivers for what VMware can attach (firmware.kernel.WANTED_MODULES)
GUEST_VMWARE_NICS = {"vlance", "e1000", "vmxnet3"}
# lowest VMware release that runs a hardware version
VMX_RELEASES = {
    4: "ESX 3.5, Workstation 6",
    7: "ESX/ESXi 4.0, Workstation 6.5",
    8: "ESXi 5.0, Workstation 8",
    9: "ESXi 5.1, Workstation 9",
    10: "ESXi 5.5, Workstation 10",
    11: "ESXi 6.0, Workstation 11",
    13: "ESXi 6.5",
    14: "ESXi 6.7, Workstation 14",
    15: "ESXi 6.7 U2, Workstation 15",
    17: "ESXi 7.0, Workstation 16",
    19: "ESXi 7.0 U2, Workstation 16.2",
    20: "ESXi 8.0, Workstation 17",
}
PERFCTR = "monitor_control.pseudo_perfctr"


@dataclass
class View:
    title: str
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _mib(size: int | None) -> str:
    return "no size" if size is None else f"{size / MiB:g} MiB"


def _text(node: etree._Element, path: str) -> str:
    return (node.findtext(path, namespaces=NS) or "").strip()


def vmware_view(ovf: bytes, manifest_algo: str) -> View:
    """VMware's Deploy OVF Template / ovftool / Workstation: what the OVF says, unit-aware."""
    view = View("as VMware imports it (vSphere Deploy OVF Template, ovftool, Workstation)")
    doc = etree.fromstring(ovf)
    items = doc.findall(".//ovf:VirtualHardwareSection/ovf:Item", NS)
    by_id = {_text(i, "rasd:InstanceID"): i for i in items}
    vtype = doc.findtext(".//ovf:System/{*}VirtualSystemType", namespaces=NS) or ""
    m = re.fullmatch(r"vmx-(\d+)", vtype.strip())
    release = VMX_RELEASES.get(int(m[1])) if m else None
    view.lines.append(f"hardware {vtype}: runs on {release or 'unknown release'} or later")
    for item in items:
        rtype = _text(item, "rasd:ResourceType")
        if rtype == "3":
            view.lines.append(f"{_text(item, 'rasd:VirtualQuantity')} vCPU")
        elif rtype == "4":
            factor = capacity_factor(_text(item, "rasd:AllocationUnits")) or MiB
            view.lines.append(
                f"memory {_mib(int(_text(item, 'rasd:VirtualQuantity') or 0) * factor)}"
            )
    disks = {d.get(f"{{{NS['ovf']}}}diskId"): d for d in doc.iterfind(".//ovf:Disk", NS)}
    files = {f.get(f"{{{NS['ovf']}}}id"): f for f in doc.iterfind(".//ovf:File", NS)}
    scsi: list[str] = []
    for item in items:
        if _text(item, "rasd:ResourceType") != "17":
            continue
        parent = by_id.get(_text(item, "rasd:Parent"))
        disk = disks.get(_text(item, "rasd:HostResource").rpartition("/")[2])
        if parent is None or disk is None:
            view.warnings.append(f"VMware: disk item {_text(item, 'rasd:ElementName')} dangles")
            continue
        href = files[disk.get(f"{{{NS['ovf']}}}fileRef")].get(f"{{{NS['ovf']}}}href")
        factor = capacity_factor(disk.get(f"{{{NS['ovf']}}}capacityAllocationUnits", "")) or 1
        size = int(disk.get(f"{{{NS['ovf']}}}capacity", "0")) * factor
        bus = {"5": "ide", "6": "scsi"}.get(_text(parent, "rasd:ResourceType"), "?")
        slot = f"{bus}{_text(parent, 'rasd:Address')}:{_text(item, 'rasd:AddressOnParent')}"
        view.lines.append(f"{slot} {href} {_mib(size)}")
        if bus == "scsi":
            scsi.append(_text(parent, "rasd:ResourceSubType") or "lsilogic")
    if scsi:
        view.warnings.append(
            f"VMware puts the disks on a SCSI {scsi[0]} controller, which the guest has no "
            "driver for: for VMware use the OVA with IDE disks (ipva.ova)"
        )
    for item in items:
        if _text(item, "rasd:ResourceType") == "10":
            sub = _text(item, "rasd:ResourceSubType")
            dev = VMWARE_NICS.get(sub.lower(), sub)
            mac = _text(item, "rasd:Address") or "generated MAC"
            view.lines.append(f"ethernet0 {dev} ({sub}), {mac}")
            if dev not in GUEST_VMWARE_NICS:
                view.warnings.append(f"VMware NIC {sub}: the guest has no driver for it")
    extra = {
        e.get(f"{{{NS['vmw']}}}key"): e.get(f"{{{NS['vmw']}}}value")
        for e in doc.iterfind(".//vmw:ExtraConfig", NS)
    }
    if extra.get(PERFCTR, "").upper() == "TRUE":
        view.lines.append(
            f"{PERFCTR} = TRUE from ExtraConfig (ovftool keeps it only with "
            "--allowExtraConfig; otherwise add it by hand, README 'VMware')"
        )
    else:
        view.warnings.append(f"VMware: no {PERFCTR} ExtraConfig: 'perfcounter-not enabled!!!'")
    if manifest_algo == "SHA1":
        view.lines.append("manifest SHA-1: accepted by vCenter 5.x and later")
    else:
        view.lines.append(
            f"manifest {manifest_algo}: vSphere 6.5 and later (vCenter 5.x takes SHA-1 only: "
            "the -sha1.ova)"
        )
    return view


def proxmox_view(ovf: bytes) -> View:
    """Proxmox VE's import (hypervisors.proxmox.importer), with what it loses."""
    view = View('as Proxmox VE imports it (GUI "Import" from an import storage)')
    vm = read_import(ovf)
    view.lines.append(
        f"name {vm.name}, {vm.cores} core(s), memory {vm.memory_mib} MiB, {vm.bios}, "
        f"net {', '.join(vm.nics) or 'none'}"
    )
    if any(name.startswith("scsi") for name in vm.disks):
        view.lines.append(f"SCSI controller {vm.scsihw} (LSI 53C895A: Proxmox's default)")
    for name, disk in vm.disks.items():
        view.lines.append(f"{name} <- {disk.href} {_mib(disk.size)}")
        if disk.size is None:
            view.warnings.append(f"Proxmox VE finds no size for {disk.href}")
    for lost, winner in vm.lost:
        view.warnings.append(
            f"Proxmox VE imports {winner.href} as {winner.name} in place of {lost.href}: "
            f"{lost.href} is lost (for Proxmox VE use the -proxmox.ova)"
        )
    view.lines.append(f"boot order {';'.join(vm.boot_order)}")
    return view


_PS_DISK_RE = re.compile(r"File = '([^']+)';\s*Controller = (\d+); Location = (\d+)")
_PS_MEM_RE = re.compile(r"\[int\]\$MemoryMiB = (\d+)")


def hyperv_view(files: dict[str, Path], sizes: dict[str, int]) -> View:
    """Hyper-V: what Import-IPVA.ps1 creates, then what the Import wizard makes of the XML."""
    view = View("as Hyper-V gets it (Import-IPVA.ps1; Import Virtual Machine wizard)")
    script = files.get("Import-IPVA.ps1")
    if script is None:
        view.warnings.append("Hyper-V: no Import-IPVA.ps1")
    else:
        _hyperv_script(script, files, sizes, view)
    configs = [n for n in files if n.startswith(vmconfig.VM_FOLDER + "/") and n.endswith(".xml")]
    if not configs:
        view.warnings.append(
            "Hyper-V: no 'Virtual Machines' folder, so the Import Virtual Machine wizard finds "
            "nothing: create the VM with Import-IPVA.ps1 (README 'Hyper-V')"
        )
    for name in configs:
        _hyperv_config(name, files, sizes, view)
    return view


def _hyperv_script(script: Path, files: dict[str, Path], sizes: dict[str, int], view: View) -> None:
    text = script.read_bytes().decode("utf-8-sig")
    mem = _PS_MEM_RE.search(text)
    legacy = "IsLegacy = $true" in text
    view.lines.append(
        f"script: Generation {'1' if '-Generation 1' in text else '?'}, memory "
        f"{mem[1] if mem else '?'} MiB static, "
        f"{'Legacy Network Adapter (DEC 21140, tulip)' if legacy else 'synthetic NIC'}"
    )
    if not legacy:
        view.warnings.append("Hyper-V: synthetic NIC, which the guest has no driver for")
    for name, ctl, loc in _PS_DISK_RE.findall(text):
        member = f"{vmconfig.VHD_FOLDER}/{name}"
        view.lines.append(f"script: IDE {ctl}/{loc} {name} {_mib(sizes.get(Path(member).name))}")
        if member not in files:
            view.warnings.append(f"Hyper-V: {member} is not in the package")


def _hyperv_config(name: str, files: dict[str, Path], sizes: dict[str, int], view: View) -> None:
    doc = etree.parse(str(files[name])).getroot()
    version = doc.findtext("properties/version")
    gen = "1" if doc.findtext("properties/subtype") == "0" else "2"
    dynamic = doc.findtext("settings/memory/bank/dynamic_memory_enabled") == "True"
    view.lines.append(
        f"wizard: {name}: '{doc.findtext('properties/name')}', configuration version "
        f"{int(version) >> 8}.{int(version) & 0xFF} (Generation {gen}), memory "
        f"{doc.findtext('settings/memory/bank/size')} MiB "
        f"{'dynamic' if dynamic else 'static'}"
        f", {doc.findtext('settings/processors/count')} vCPU, COM1 "
        f"{doc.findtext(f'_{vmconfig.SERIAL}_/port0/connection') or 'none'}"
    )
    if version != str(vmconfig.CONFIG_VERSION):
        view.warnings.append(f"Hyper-V: {name} has configuration version {version}, not 5.0")
    for ctl in doc.iterfind(f"_{vmconfig.IDE}_/*"):
        for drive in ctl:
            if drive.findtext("type") != "VHD":
                continue
            path = drive.findtext("pathname") or ""
            file = path.rsplit("\\", 1)[-1]
            member = f"{vmconfig.VHD_FOLDER}/{file}"
            slot = f"{ctl.tag.removeprefix('controller')}/{drive.tag.removeprefix('drive')}"
            view.lines.append(f"wizard: IDE {slot} {member} {_mib(sizes.get(Path(member).name))}")
            if member not in files:
                view.warnings.append(
                    f"Hyper-V: {name} IDE {slot} wants {member}: not in the package"
                )
    nics = [c for c in doc if c.find("MacAddress") is not None or c.find("SwitchName") is not None]
    if not nics:
        view.warnings.append(
            "Hyper-V: the wizard's VM has no network adapter: add one with "
            "Add-VMNetworkAdapter -VMName <name> -IsLegacy $true -SwitchName <switch> "
            "(or create the VM with Import-IPVA.ps1)"
        )


def libvirt_view(xml: Path, sizes: dict[str, int]) -> View:
    """A domain XML: disks by target and address, NIC model; the files it points at."""
    view = View(f"as libvirt defines {xml.name} (virsh define / ipva-libvirt-install.sh)")
    doc = etree.parse(str(xml)).getroot()
    controllers = [
        f"{c.get('type')} {c.get('model', '')}".strip() for c in doc.iterfind(".//controller")
    ]
    view.lines.append(
        f"memory {doc.findtext('memory')} {doc.find('memory').get('unit', 'KiB')}, "
        f"{doc.findtext('vcpu')} vCPU, machine {doc.find('os/type').get('machine')}, "
        f"controllers {', '.join(controllers)}"
    )
    dirs = set()
    for disk in doc.iterfind(".//devices/disk"):
        src = Path(disk.find("source").get("file"))
        target, addr = disk.find("target"), disk.find("address")
        where = f"{target.get('bus')} {target.get('dev')}"
        if addr is not None:
            where += f" (bus {addr.get('bus')} target {addr.get('target')} unit {addr.get('unit')})"
        view.lines.append(f"{where} {src.name} {_mib(sizes.get(src.name))}")
        dirs.add(str(src.parent))
        if src.name not in sizes:
            view.warnings.append(f"libvirt: {src.name} is not beside {xml.name}")
    for model in doc.iterfind(".//interface/model"):
        view.lines.append(f"NIC {model.get('type')}")
    view.lines.append(
        f"disks expected in {', '.join(sorted(dirs))}: the install script copies them there"
    )
    return view


def vmx_view(cfg: dict[str, str], bundle: Path) -> View:
    view = View("as Workstation/Player opens it")
    view.lines.append(
        f"virtualHW.version {cfg.get('virtualHW.version')}, {cfg.get('numvcpus')} vCPU, "
        f"memory {cfg.get('memsize')} MiB, ethernet0 {cfg.get('ethernet0.virtualDev')}"
    )
    for key, value in cfg.items():
        if key.startswith("ide") and key.endswith(".fileName"):
            slot = key.split(".")[0]
            kind = cfg.get(f"{slot}.deviceType")
            view.lines.append(f"{slot} {value} ({kind})")
            if kind != "ata-hardDisk":
                view.warnings.append(f"{slot}: deviceType {kind}, not ata-hardDisk")
    view.lines.append(
        f"ESXi cannot run the monolithicSparse disks in {bundle.name}/: on ESXi deploy the OVA, "
        "or convert each disk with vmkfstools -i hd-X.vmdk -d thin (README 'VMware')"
    )
    return view


def proxmox_script_view(script: Path) -> View:
    view = View(f"as Proxmox VE gets it from {script.name} (qm create)")
    text = script.read_text()
    hw = re.search(r"--scsihw (\S+)", text)
    net = re.search(r'NET="(\w+),', text)
    bios = re.search(r"--bios (\S+)", text)
    view.lines.append(
        f"SCSI controller {hw[1] if hw else 'default (lsi)'}, net {net[1] if net else '?'}, "
        f"bios {bios[1] if bios else '?'}, disks scsi0-3 in role order from import-from="
    )
    return view
