"""OVF descriptors validate against DSP8023 1.1.1 (lxml and xmllint, offline); broken ones
do not; the Proxmox variant survives Proxmox's importer rules."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lxml import etree

from firmware.settings import BuildSettings
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
    assert vmw == {"firmware": "bios", "monitor_control.pseudo_perfctr": "TRUE"}
    # vmw: elements come after the last Item
    hw = doc.find(".//ovf:VirtualHardwareSection", NS)
    tags = [etree.QName(c).localname for c in hw]
    assert tags.index("Config") > max(i for i, t in enumerate(tags) if t == "Item")


def test_proxmox_importer_rules() -> None:
    """Re-enact PVE/GuestImport/OVF.pm: key = controller type + AddressOnParent."""
    doc = _ovf("proxmox")
    pve = {"5": "ide", "6": "scsi", "20": "sata"}
    by_id = {
        i.findtext("rasd:InstanceID", namespaces=NS): i for i in doc.iterfind(".//ovf:Item", NS)
    }
    keys = []
    for d in _items(doc, 17):
        parent = by_id[d.findtext("rasd:Parent", namespaces=NS)]
        keys.append(
            pve[parent.findtext("rasd:ResourceType", namespaces=NS)]
            + d.findtext("rasd:AddressOnParent", namespaces=NS)
        )
    assert keys == ["scsi0", "scsi1", "scsi2", "scsi3"]  # unique, in role order
    assert _items(doc, 4)[0].findtext("rasd:VirtualQuantity", namespaces=NS) == "256"  # read as MiB
    assert _items(doc, 10)[0].findtext("rasd:ResourceSubType", namespaces=NS).lower() in (
        "e1000",
        "e1000e",
        "vmxnet3",
    )
    # the vmw prefix is declared at the root, so the importer's vmw:Config XPath resolves
    assert doc.nsmap["vmw"] == VMW


def test_static_mac_and_name() -> None:
    doc = _ovf(mac="00:90:33:aa:bb:cc", name="pbx1")
    assert _items(doc, 10)[0].findtext("rasd:Address", namespaces=NS) == "00:90:33:aa:bb:cc"
    assert doc.findtext(".//ovf:VirtualSystem/ovf:Name", namespaces=NS) == "pbx1"
