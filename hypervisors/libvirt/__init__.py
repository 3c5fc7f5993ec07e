"""libvirt/QEMU target: `libvirt/` with qcow2 disks and `<name>.xml`, a domain with i440fx,
IDE hda–hdd, a pcnet NIC and a serial pty. Disks are referenced under IMAGE_DIR."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from firmware.settings import BuildSettings
from hypervisors.common import disk_name, ordered_disks
from hypervisors.registry import Target, register
from images import convert

IMAGE_DIR = Path("/var/lib/libvirt/images")
IDE_TARGETS = {
    "boot": ("hda", 0, 0),
    "cf": ("hdb", 0, 1),
    "flash": ("hdc", 1, 0),
    "dump": ("hdd", 1, 1),
}


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str):
    el = etree.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def make_domain_xml(settings: BuildSettings, image_dir: Path | None = None) -> bytes:
    image_dir = image_dir or IMAGE_DIR / settings.name
    dom = etree.Element("domain", type="kvm")
    _sub(dom, "name", settings.name)
    _sub(dom, "description", f"innovaphone Virtual Appliance {settings.version}")
    _sub(dom, "memory", str(settings.ram_mib), unit="MiB")
    _sub(dom, "currentMemory", str(settings.ram_mib), unit="MiB")
    _sub(dom, "vcpu", "1")
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "boot", dev="hd")
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "restart")
    devices = _sub(dom, "devices")
    for role, (dev, bus, unit) in IDE_TARGETS.items():
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type="qcow2")
        _sub(disk, "source", file=str(image_dir / disk_name(role, "qcow2")))
        _sub(disk, "target", dev=dev, bus="ide")
        _sub(
            disk, "address", type="drive", controller="0", bus=str(bus), target="0", unit=str(unit)
        )
    _sub(devices, "controller", type="ide", index="0")
    iface = _sub(devices, "interface", type="network")
    if settings.mac:
        _sub(iface, "mac", address=settings.mac)
    _sub(iface, "source", network="default")
    _sub(iface, "model", type="pcnet")
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    return etree.tostring(dom, pretty_print=True)


def make(settings: BuildSettings, disks: dict[str, Path]) -> list[Path]:
    dest = settings.out_dir / "libvirt"
    dest.mkdir(parents=True, exist_ok=True)
    qcow2s = [
        convert.make_qcow2(raw, dest / disk_name(role, "qcow2"))
        for role, raw in ordered_disks(disks)
    ]
    xml = dest / f"{settings.name}.xml"
    xml.write_bytes(make_domain_xml(settings))
    return [xml, *qcow2s]


register(Target("libvirt", "libvirt/QEMU: qcow2 disks and a domain XML (IDE, pcnet)", make))
