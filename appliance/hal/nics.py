"""NICs by PCI id: the supported list, ETH0/ETH1 in PCI order, link state, MAC, counters.

The box has drivers for a few NIC models only; anything else is not a NIC to it (the seed:
`NIC unavailable!`, fixed by offering the expected NIC type). We decide by the PCI vendor and
device id the hypervisor presents — /sys/bus/pci/devices/*/{vendor,device,class} — not by
which Linux driver happened to bind: an rtl8139 is "unavailable" even if a kernel had a
driver for it. ETH0 is the first supported NIC in PCI address order, ETH1 the second.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

PCI_CLASS_NETWORK = 0x02
# the DHCP client's round (hal.vm runs udhcpc so): DHCP_TRIES DISCOVERs DHCP_TRY_S apart,
# then the fallback address (if any) and on asking in the background
DHCP_TRIES = 8
DHCP_TRY_S = 1
# a lease or the fallback is in by then, or the client got no answer at all (a port without
# a fallback): the network's first look ends (`waiting for a DHCP server …`), a renewal too
DHCP_WAIT_S = DHCP_TRIES * DHCP_TRY_S + 2.0


@dataclass(frozen=True)
class NicModel:
    """A NIC model the box drives: its name, its Linux driver, which hypervisor presents it."""

    name: str
    driver: str  # the Linux module (firmware/kernel.py WANTED_MODULES carries it)
    where: str  # which hypervisor presents it


SUPPORTED_NICS: dict[tuple[int, int], NicModel] = {
    (0x1022, 0x2000): NicModel("AMD Am79C970A PCnet-PCI II", "pcnet32", "VMware vlance (default)"),
    (0x1AF4, 0x1000): NicModel("virtio-net (transitional)", "virtio_net", "Proxmox VirtIO"),
    (0x1AF4, 0x1041): NicModel("virtio-net", "virtio_net", "Proxmox VirtIO (modern)"),
    (0x1011, 0x0009): NicModel("DEC 21140 Fast Ethernet", "tulip", "Hyper-V legacy adapter"),
    (0x1011, 0x0019): NicModel("DEC 21143 Fast Ethernet", "tulip", "Hyper-V legacy adapter"),
    # what Proxmox's OVF importer maps the OVA's NIC to, and VMware's other choices
    (0x8086, 0x100E): NicModel("Intel 82540EM (e1000)", "e1000", "Proxmox/QEMU e1000"),
    (0x8086, 0x100F): NicModel("Intel 82545EM (e1000)", "e1000", "VMware e1000"),
    (0x15AD, 0x07B0): NicModel("VMware vmxnet3", "vmxnet3", "VMware/Proxmox vmxnet3"),
}  # fmt: skip


@dataclass(frozen=True)
class PciNic:
    """A network controller on the PCI bus: its address, ids and interface."""

    slot: str  # PCI address, e.g. 0000:00:03.0
    vendor: int
    device: int
    ifname: str | None  # the kernel's interface, None if no driver bound (yet)

    @property
    def pci_id(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"

    @property
    def model(self) -> NicModel | None:
        return SUPPORTED_NICS.get((self.vendor, self.device))


@dataclass(frozen=True)
class Port:
    """ETH0/ETH1: a supported NIC with its interface."""

    name: str
    nic: PciNic

    @property
    def ifname(self) -> str:
        assert self.nic.ifname is not None
        return self.nic.ifname


def parse_pci_slot(slot: str) -> tuple[int, int, int, int]:
    """`0000:00:03.0` → (domain, bus, device, function): the sort key of PCI order."""
    dom, bus, devfn = slot.split(":")
    dev, fn = devfn.split(".")
    return int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16)


def _ifname_of(dev: Path) -> str | None:
    # the netdev hangs below the PCI device (pcnet32, tulip, e1000) or below its virtio
    # child device (virtio-net)
    for net in [dev / "net", *sorted(dev.glob("virtio*/net"))]:
        if net.is_dir():
            names = sorted(p.name for p in net.iterdir())
            if names:
                return names[0]
    return None


def scan_pci_nics(sys_root: Path = Path("/sys")) -> list[PciNic]:
    """Every PCI network controller, supported or not, in PCI address order."""
    found = []
    for dev in (sys_root / "bus/pci/devices").glob("*"):
        try:
            cls = int((dev / "class").read_text(), 16)
            if cls >> 16 != PCI_CLASS_NETWORK:
                continue
            vendor = int((dev / "vendor").read_text(), 16)
            device = int((dev / "device").read_text(), 16)
        except (OSError, ValueError):
            continue
        found.append(PciNic(dev.name, vendor, device, _ifname_of(dev)))
    return sorted(found, key=lambda n: parse_pci_slot(n.slot))


def assign_ports(nics: list[PciNic]) -> list[Port]:
    """ETH0, ETH1: the first two supported NICs (with an interface) in PCI order."""
    usable = [n for n in nics if n.model is not None and n.ifname is not None]
    return [Port(f"ETH{i}", n) for i, n in enumerate(usable[:2])]


# --- state from the kernel -------------------------------------------------------------

COUNTERS = ("rx_packets", "rx_bytes", "rx_errors", "rx_dropped",
            "tx_packets", "tx_bytes", "tx_errors", "tx_dropped")  # fmt: skip


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:  # e.g. speed of a link that is down: EINVAL
        return default


@dataclass(frozen=True)
class LinkState:
    """An interface's link as sysfs tells it: MAC, carrier, speed, duplex, MTU, counters."""

    mac: str
    up: bool  # carrier
    operstate: str
    speed: str  # Mbit/s or "unknown"
    duplex: str
    mtu: int
    counters: dict[str, int]


def read_link_state(ifname: str, sys_root: Path = Path("/sys")) -> LinkState:
    net = sys_root / "class/net" / ifname
    counters = {}
    for c in COUNTERS:
        v = _read(net / "statistics" / c, "0")
        counters[c] = int(v) if v.isdigit() else 0
    speed = _read(net / "speed", "unknown")
    return LinkState(
        mac=_read(net / "address"),
        up=_read(net / "carrier", "0") == "1",
        operstate=_read(net / "operstate", "unknown"),
        speed=speed if speed.lstrip("-").isdigit() and int(speed) > 0 else "unknown",
        duplex=_read(net / "duplex", "unknown"),
        mtu=int(_read(net / "mtu", "0") or 0),
        counters=counters,
    )


SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ_FLAGS = struct.Struct("16sH14x")  # struct ifreq: the name, then ifr_flags


def set_link_up(ifname: str) -> None:
    """Set the interface up, as `ip link set IF up` does, but with two ioctls instead of a
    process (each costs the boot milliseconds under emulation); OSError if there is none."""
    name = ifname.encode()[:15]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, _IFREQ_FLAGS.pack(name, 0))
        flags = _IFREQ_FLAGS.unpack(got)[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name, flags | IFF_UP))


def read_ipv4(ifname: str) -> tuple[str, int] | None:
    """The interface's IPv4 address and prefix length, as the kernel has them (ioctl)."""
    ifreq = struct.pack("16s16x", ifname.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            addr = fcntl.ioctl(s.fileno(), SIOCGIFADDR, ifreq)
            mask = fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, ifreq)
        except OSError:  # EADDRNOTAVAIL: no address
            return None
    ip = socket.inet_ntoa(addr[20:24])
    prefix = bin(struct.unpack("!I", mask[20:24])[0]).count("1")
    return ip, prefix
