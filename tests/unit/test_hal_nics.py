"""NICs by PCI id: the supported table, PCI order, ETH0/ETH1, link state from sysfs."""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from pathlib import Path

import pytest

from appliance.hal.nics import (
    IFF_UP,
    SIOCGIFFLAGS,
    SUPPORTED_NICS,
    assign_ports,
    parse_pci_slot,
    read_ipv4,
    read_link_state,
    scan_pci_nics,
    set_link_up,
)


def make_pci(root: Path, slot: str, vendor: int, device: int, cls: int, net: str | None,
             virtio: bool = False) -> None:  # fmt: skip
    dev = root / "bus/pci/devices" / slot
    dev.mkdir(parents=True)
    (dev / "vendor").write_text(f"0x{vendor:04x}\n")
    (dev / "device").write_text(f"0x{device:04x}\n")
    (dev / "class").write_text(f"0x{cls:06x}\n")
    if net:
        (dev / ("virtio0/net" if virtio else "net") / net).mkdir(parents=True)


def test_supported_table_has_the_issue_ids() -> None:
    for ids in [(0x1022, 0x2000), (0x1AF4, 0x1000), (0x1AF4, 0x1041), (0x1011, 0x0009),
                (0x1011, 0x0019)]:  # fmt: skip
        assert ids in SUPPORTED_NICS
    assert (0x10EC, 0x8139) not in SUPPORTED_NICS  # rtl8139: "NIC unavailable!"


def test_ports_in_pci_order_skip_unsupported_and_other_classes(tmp_path: Path) -> None:
    make_pci(tmp_path, "0000:00:1f.0", 0x1022, 0x2000, 0x020000, "eth2")  # pcnet, last slot
    make_pci(tmp_path, "0000:00:03.0", 0x10EC, 0x8139, 0x020000, "eth0")  # rtl8139
    make_pci(tmp_path, "0000:00:04.0", 0x1AF4, 0x1000, 0x020000, "eth1", virtio=True)
    make_pci(tmp_path, "0000:00:01.1", 0x8086, 0x7010, 0x010180, None)  # IDE controller
    nics = scan_pci_nics(tmp_path)
    assert [n.slot for n in nics] == ["0000:00:03.0", "0000:00:04.0", "0000:00:1f.0"]
    ports = assign_ports(nics)
    assert [(p.name, p.ifname, p.nic.pci_id) for p in ports] == [
        ("ETH0", "eth1", "1af4:1000"),
        ("ETH1", "eth2", "1022:2000"),
    ]


def test_only_unsupported_nics_gives_no_port(tmp_path: Path) -> None:
    make_pci(tmp_path, "0000:00:03.0", 0x10EC, 0x8139, 0x020000, "eth0")
    assert assign_ports(scan_pci_nics(tmp_path)) == []


def test_pci_slot_order_is_numeric() -> None:
    assert parse_pci_slot("0000:00:0a.0") > parse_pci_slot("0000:00:09.7")
    assert parse_pci_slot("0000:01:00.0") > parse_pci_slot("0000:00:1f.0")


def test_link_state_from_sysfs(tmp_path: Path) -> None:
    net = tmp_path / "class/net/eth0"
    (net / "statistics").mkdir(parents=True)
    (net / "address").write_text("52:54:00:12:34:56\n")
    (net / "carrier").write_text("1\n")
    (net / "operstate").write_text("up\n")
    (net / "speed").write_text("-1\n")  # virtio: unknown
    (net / "mtu").write_text("1500\n")
    (net / "statistics/rx_packets").write_text("7\n")
    st = read_link_state("eth0", tmp_path)
    assert (st.mac, st.up, st.speed, st.mtu) == ("52:54:00:12:34:56", True, "unknown", 1500)
    assert st.counters["rx_packets"] == 7 and st.counters["tx_bytes"] == 0


def test_loopback_address_via_ioctl() -> None:
    assert read_ipv4("lo") in (("127.0.0.1", 8), None)  # None in a netns without lo up
    assert read_ipv4("nosuchif0") is None


def test_set_link_up_leaves_an_up_link_up_and_names_a_missing_one() -> None:
    """The ioctl pair that replaced `ip link set IF up` (hal/vm.py start_dhcp): on this
    host's loopback (up already: nothing written) and on a name no interface has."""
    set_link_up("lo")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0))
    assert struct.unpack("16sH14x", got)[1] & IFF_UP
    with pytest.raises(OSError) as e:
        set_link_up("ipvanone0")
    assert e.value.errno == errno.ENODEV
