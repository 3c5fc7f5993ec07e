"""libvirt/QEMU target: `libvirt/` with qcow2 disks, two domain XMLs and an install script.

`<name>.xml`: i440fx, IDE hda–hdd, a PCnet NIC and a serial pty, as the box is everywhere.
`<name>-virtio.xml`: the same on one virtio-scsi controller (sda–sdd, targets 0–3) with a
virtio NIC, for QEMUs built without PCnet (RHEL-family `qemu-kvm`).
Disk paths are absolute (libvirt's schema accepts no relative source file): IMAGE_DIR/<name>/.
`<name>-libvirt-install.sh` copies the disks to a directory of the admin's choice (that one
by default), points the XML at them and runs `virsh define`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from lxml import etree

from firmware.settings import BuildSettings
from hypervisors.common import ROLES, disk_name, ordered_disks
from hypervisors.registry import Target, register
from images import convert

IMAGE_DIR = Path("/var/lib/libvirt/images")
IDE_TARGETS = {
    "boot": ("hda", 0, 0),
    "cf": ("hdb", 0, 1),
    "flash": ("hdc", 1, 0),
    "dump": ("hdd", 1, 1),
}
# VirtIO variant: one virtio-scsi controller, the disks as targets 0–3 (unit = LUN 0)
SCSI_TARGETS = {role: (f"sd{'abcd'[n]}", n) for n, role in enumerate(ROLES)}
VARIANTS = ("ide", "virtio")
SCRIPT = "install.sh"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str):
    el = etree.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def domain_file(settings: BuildSettings, variant: str) -> str:
    return f"{settings.name}.xml" if variant == "ide" else f"{settings.name}-{variant}.xml"


def make_domain_xml(
    settings: BuildSettings, image_dir: Path | None = None, variant: str = "ide"
) -> bytes:
    if variant not in VARIANTS:
        raise ValueError(f"unknown libvirt variant {variant!r}; known: {', '.join(VARIANTS)}")
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
    for role in ROLES:
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type="qcow2")
        _sub(disk, "source", file=str(image_dir / disk_name(role, "qcow2")))
        if variant == "ide":
            dev, bus, unit = IDE_TARGETS[role]
            _sub(disk, "target", dev=dev, bus="ide")
            address = dict(controller="0", bus=str(bus), target="0", unit=str(unit))
        else:
            dev, target = SCSI_TARGETS[role]
            _sub(disk, "target", dev=dev, bus="scsi")
            address = dict(controller="0", bus="0", target=str(target), unit="0")
        _sub(disk, "address", type="drive", **address)
    if variant == "ide":
        _sub(devices, "controller", type="ide", index="0")
    else:
        _sub(devices, "controller", type="scsi", index="0", model="virtio-scsi")
    iface = _sub(devices, "interface", type="network")
    if settings.mac:
        _sub(iface, "mac", address=settings.mac)
    _sub(iface, "source", network="default")
    _sub(iface, "model", type="pcnet" if variant == "ide" else "virtio")
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    return etree.tostring(dom, pretty_print=True)


def render_install_script(settings: BuildSettings) -> str:
    text = resources.files(__package__).joinpath(SCRIPT).read_text()
    values = {
        "@NAME@": settings.name,
        "@IMAGE_DIR@": str(IMAGE_DIR / settings.name),
        "@IDE_XML@": domain_file(settings, "ide"),
        "@VIRTIO_XML@": domain_file(settings, "virtio"),
        "@DISKS@": " ".join(disk_name(r, "qcow2") for r in ROLES),
        "@VERSION@": f"{settings.version} ({settings.build})",
    }
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def make(settings: BuildSettings, disks: dict[str, Path]) -> list[Path]:
    dest = settings.out_dir / "libvirt"
    dest.mkdir(parents=True, exist_ok=True)
    qcow2s = [
        convert.make_qcow2(raw, dest / disk_name(role, "qcow2"))
        for role, raw in ordered_disks(disks)
    ]
    xmls = []
    for variant in VARIANTS:
        xml = dest / domain_file(settings, variant)
        xml.write_bytes(make_domain_xml(settings, variant=variant))
        xmls.append(xml)
    script = dest / f"{settings.name}-libvirt-install.sh"
    script.write_text(render_install_script(settings))
    script.chmod(0o755)
    return [*xmls, script, *qcow2s]


register(
    Target(
        "libvirt",
        "libvirt/QEMU: qcow2 disks, domain XMLs (IDE + PCnet; VirtIO), virsh install script",
        make,
    )
)
