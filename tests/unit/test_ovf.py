"""OVF descriptors validate against DSP8023 1.1.1 (lxml and xmllint, offline); broken ones
do not; what Proxmox's importer makes of each variant (its rules modelled in
hypervisors.proxmox.importer): no lost disk in the Proxmox variant, sizes in `byte * 2^20`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lxml import etree

from firmware.settings import BuildSettings
from hypervisors.proxmox.importer import capacity_factor, read_import
from hypervisors.vmware.ovf import OVF, RASD, ROLES, VMW, OvfDisk, make_ovf

SCHEMA = (
    Path(__file__).resolve().parents[2].parent / "shared" / "schemas" / "ovf" / "dsp8023_1.1.1.xsd"
)
NS = {"ovf": OVF, "rasd": RASD, "vmw": VMW}


@pytest.fixture(autouse=True)
def _schema_present() -> None:
    # a missing schema must fail, not skip: CI has shared/ beside the clone
    assert SCHEMA.is_file(), f"{SCHEMA} missing: the OVF schemas live in ../shared/schemas/ovf"


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def _disks() -> list[OvfDisk]:
    return [OvfDisk(r, f"hd-{r}.vmdk", 70_000 + i, (i + 1) << 20) for i, r in enumerate(ROLES)]


def _ovf(variant: str = "vmware", **kw: object) -> etree._Element:
    return etree.fromstring(make_ovf(BuildSettings(**kw), _disks(), variant=variant))


@pytest.mark.parametrize("variant", ["vmware", "proxmox"])
def test_valid_lxml(schema: etree.XMLSchema, variant: str) -> None:
    doc = _ovf(variant, mac="00:90:33:01:02:03")
    assert schema.validate(doc), schema.error_log


@pytest.mark.parametrize("variant", ["vmware", "proxmox"])
def test_valid_xmllint(tmp_path: Path, variant: str) -> None:
    f = tmp_path / "ipva.ovf"
    f.write_bytes(make_ovf(BuildSettings(), _disks(), variant=variant))
    r = subprocess.run(
        ["xmllint", "--nonet", "--noout", "--schema", str(SCHEMA), str(f)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "validates" in r.stderr


def _items(doc: etree._Element, rtype: int) -> list[etree._Element]:
    return [
        i
        for i in doc.iterfind(".//ovf:Item", NS)
        if i.findtext("rasd:ResourceType", namespaces=NS) == str(rtype)
    ]


def test_wrong_rasd_order_fails(schema: etree.XMLSchema) -> None:
    doc = _ovf()
    item = _items(doc, 17)[0]
    first = item[0]
    item.remove(first)
    item.append(first)  # AddressOnParent last: out of the schema's order
    assert not schema.validate(doc)


@pytest.mark.parametrize("bad", ["disk", "-1", "70000"])
def test_bad_resource_type_fails(schema: etree.XMLSchema, bad: str) -> None:
    doc = _ovf()
    _items(doc, 17)[0].find("rasd:ResourceType", NS).text = bad
    assert not schema.validate(doc)


def test_vmware_hardware() -> None:
    doc = _ovf(vmx_version=13)
    assert doc.findtext(".//{*}VirtualSystemType") == "vmx-13"
    mem = _items(doc, 4)[0]
    assert mem.findtext("rasd:AllocationUnits", namespaces=NS) == "byte * 2^20"
    assert mem.findtext("rasd:VirtualQuantity", namespaces=NS) == "256"
    assert _items(doc, 3)[0].findtext("rasd:VirtualQuantity", namespaces=NS) == "1"
    ide = {
        i.findtext("rasd:InstanceID", namespaces=NS): i.findtext("rasd:Address", namespaces=NS)
        for i in _items(doc, 5)
    }
    assert sorted(ide.values()) == ["0", "1"]
    slots = [
        (
            ide[d.findtext("rasd:Parent", namespaces=NS)],
            d.findtext("rasd:AddressOnParent", namespaces=NS),
            d.findtext("rasd:Description", namespaces=NS),
        )
        for d in _items(doc, 17)
    ]
    assert slots == [
        ("0", "0", "hd-boot"),
        ("0", "1", "hd-cf"),
        ("1", "0", "hd-flash"),
        ("1", "1", "hd-dump"),
    ]
    assert _items(doc, 10)[0].findtext("rasd:ResourceSubType", namespaces=NS) == "PCNet32"
    vmw = {
        e.get(f"{{{VMW}}}key"): e.get(f"{{{VMW}}}value")
        for e in doc.iterfind(".//vmw:*", NS)
        if e.get(f"{{{VMW}}}key")
    }
    assert vmw == {
        "firmware": "bios",
        "monitor_control.pseudo_perfctr": "TRUE",
        "sched.cpu.latencySensitivity": "high",  # the wiki's "Voice Quality Issues"
    }
    memory = _items(doc, 4)[0]
    assert memory.findtext("rasd:Reservation", namespaces=NS) == "256"  # all of it
    # vmw: elements come after the last Item
    hw = doc.find(".//ovf:VirtualHardwareSection", NS)
    tags = [etree.QName(c).localname for c in hw]
    assert tags.index("Config") > max(i for i, t in enumerate(tags) if t == "Item")


def test_capacity_units_are_what_proxmox_parses() -> None:
    doc = _ovf("proxmox")
    for disk, expected in zip(doc.iterfind(".//ovf:Disk", NS), _disks(), strict=True):
        units = disk.get(f"{{{OVF}}}capacityAllocationUnits")
        assert units == "byte * 2^20"
        assert int(disk.get(f"{{{OVF}}}capacity")) * capacity_factor(units) == expected.capacity


@pytest.mark.parametrize(
    ("units", "factor"),
    [
        ("byte * 2^20", 1 << 20),
        ("byte*2^30", 1 << 30),
        ("  byte * 10^3 ", 1000),
        ("byte", None),  # what we used to write: Proxmox found no disk sizes
        ("MegaBytes", None),
        ("byte * 2^", None),
    ],
)
def test_proxmox_capacity_parsing(units: str, factor: int | None) -> None:
    assert capacity_factor(units) == factor


def test_proxmox_import_of_the_proxmox_variant() -> None:
    """Controller type + AddressOnParent give scsi0–3, unique, in role order, with sizes."""
    vm = read_import(make_ovf(BuildSettings(), _disks(), variant="proxmox"))
    assert list(vm.disks) == ["scsi0", "scsi1", "scsi2", "scsi3"] and not vm.lost
    assert [d.href for d in vm.disks.values()] == [f"hd-{r}.vmdk" for r in ROLES]
    assert [d.size for d in vm.disks.values()] == [d.capacity for d in _disks()]
    assert vm.boot_order[0] == "scsi0"
    assert (vm.cores, vm.memory_mib, vm.bios, vm.nics) == ("1", "256", "seabios", ["e1000"])
    assert vm.scsihw == "lsi"  # no scsihw in the import: Proxmox's default, LSI 53C895A


def test_proxmox_import_of_the_vmware_variant_loses_two_disks() -> None:
    """IDE 0:0/1:0 both become ide0 and 0:1/1:1 both ide1: flash and dump replace boot, CF."""
    vm = read_import(make_ovf(BuildSettings(), _disks(), variant="vmware"))
    assert {n: d.href for n, d in vm.disks.items()} == {
        "ide0": "hd-flash.vmdk",
        "ide1": "hd-dump.vmdk",
    }
    assert [(lost.href, won.href) for lost, won in vm.lost] == [
        ("hd-boot.vmdk", "hd-flash.vmdk"),
        ("hd-cf.vmdk", "hd-dump.vmdk"),
    ]
    assert vm.nics == ["e1000"]  # PCNet32 is not one it keeps


def test_proxmox_import_rules_on_a_foreign_ovf() -> None:
    """The rules on an OVF we did not write: SATA, vmxnet3, plain "byte", EFI, memory in GiB."""
    ovf = f"""<Envelope xmlns="{OVF}" xmlns:ovf="{OVF}" xmlns:rasd="{RASD}" xmlns:vmw="{VMW}">
      <References><File ovf:id="f1" ovf:href="a.vmdk"/><File ovf:id="f2" ovf:href="b.vmdk"/>
      </References>
      <DiskSection>
        <Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="8"
              ovf:capacityAllocationUnits="byte * 2^30"/>
        <Disk ovf:diskId="d2" ovf:fileRef="f2" ovf:capacity="4096"
              ovf:capacityAllocationUnits="byte"/>
      </DiskSection>
      <VirtualSystem ovf:id="x"><Name>my vm!</Name><VirtualHardwareSection>
        <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType>
          <rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
        <Item><rasd:AllocationUnits>byte * 2^30</rasd:AllocationUnits>
          <rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType>
          <rasd:VirtualQuantity>4</rasd:VirtualQuantity></Item>
        <Item><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>20</rasd:ResourceType></Item>
        <Item><rasd:AddressOnParent>1</rasd:AddressOnParent><rasd:HostResource>ovf:/disk/d1</rasd:HostResource>
          <rasd:InstanceID>4</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
        <Item><rasd:AddressOnParent>2</rasd:AddressOnParent><rasd:HostResource>/disk/d2</rasd:HostResource>
          <rasd:InstanceID>5</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>
        <Item><rasd:InstanceID>6</rasd:InstanceID><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
          <rasd:ResourceType>10</rasd:ResourceType></Item>
        <vmw:Config vmw:key="firmware" vmw:value="efi"/>
      </VirtualHardwareSection></VirtualSystem></Envelope>"""
    vm = read_import(ovf.encode())
    assert vm.name == "my-vm"
    assert {n: d.size for n, d in vm.disks.items()} == {"sata1": 8 << 30, "sata2": None}
    assert (vm.cores, vm.memory_mib, vm.bios, vm.nics) == ("2", "4", "ovmf", ["vmxnet3"])


def test_static_mac_and_name() -> None:
    doc = _ovf(mac="00:90:33:aa:bb:cc", name="pbx1")
    assert _items(doc, 10)[0].findtext("rasd:Address", namespaces=NS) == "00:90:33:aa:bb:cc"
    assert doc.findtext(".//ovf:VirtualSystem/ovf:Name", namespaces=NS) == "pbx1"
