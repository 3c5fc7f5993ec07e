"""Network service on a fake NIC platform: static/DHCP per port, lease loss, NIC unavailable!"""

from __future__ import annotations

import time
from typing import Any

import pytest

from appliance.config import Config
from appliance.hal.nics import PciNic, Port, assign_ports
from appliance.hal.platform import HaltError
from appliance.services import network as net


class FakeNics:
    def __init__(self, n: int = 2) -> None:
        ids = [(0x1022, 0x2000), (0x1AF4, 0x1000)][:n]
        self.nics = [PciNic(f"0000:00:0{i + 3}.0", v, d, f"eth{i}") for i, (v, d) in enumerate(ids)]
        self.lease: dict[str, dict[str, str] | None] = {}
        self.static: list[tuple[Any, ...]] = []

    def ports(self) -> list[Port]:
        return assign_ports(self.nics)

    def pci_nics(self) -> list[PciNic]:
        return self.nics

    def start_dhcp(self, ifname: str) -> dict[str, str] | None:
        return self.lease.get(ifname)

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None:
        return self.lease.get(ifname)

    def set_static(self, *args: Any) -> None:
        self.static.append(args)


class FakeBox:
    def __init__(self, cfg: Config) -> None:
        self.active = cfg
        self.lines: list[str] = []
        self.restart_request: str | None = None

    def trace(self, text: str, tag: int = 30) -> None:
        self.lines.append(text)


def config(*changes: tuple[tuple[str, str], dict[str, Any]]) -> Config:
    cfg = Config.factory()
    for key, values in changes:
        cfg = cfg.with_object(key, values)
    return cfg


def test_seed_static_config_on_eth0() -> None:
    cfg = config(
        (("IP0", "ETH0"), {"addr": "192.168.0.10", "mask": "255.255.255.0"}),
        (("IP0", "RT0"), {"gateway": "192.168.0.1"}),
        (("DHCP0", ""), {"mode": "off"}),
    )
    plat, box = FakeNics(), FakeBox(cfg)
    net.Network(plat).configure(box)
    assert plat.static[0] == ("eth0", "192.168.0.10", 24, "192.168.0.1")
    assert "ETH0 IP address 192.168.0.10/24 (static)" in box.lines


def test_dhcp_on_eth1_and_lease_loss_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net, "WATCH_INTERVAL_S", 0.01)
    cfg = config((("DHCP0", ""), {"interface": "ETH1"}))
    plat, box = FakeNics(), FakeBox(cfg)
    plat.lease["eth1"] = {"ip": "10.0.2.15", "mask": "24"}
    network = net.Network(plat)
    network.configure(box)
    assert "ETH1 IP address 10.0.2.15/24 (dhcp)" in box.lines
    assert network.modes == {"ETH0": "off", "ETH1": "dhcp"}
    plat.lease["eth1"] = None  # udhcpc's deconfig removed the lease file
    deadline = time.monotonic() + 2
    while not any("lease lost" in line for line in box.lines) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "ETH1 DHCP lease lost: no address until a server answers" in box.lines
    plat.lease["eth1"] = {"ip": "10.0.2.16", "mask": "255.255.255.0"}
    while not any("10.0.2.16" in line for line in box.lines) and time.monotonic() < deadline:
        time.sleep(0.01)
    box.restart_request = "reset"
    assert "ETH1 IP address 10.0.2.16/24 (dhcp)" in box.lines


def test_no_supported_nic_halts() -> None:
    plat = FakeNics(0)
    plat.nics = [PciNic("0000:00:03.0", 0x10EC, 0x8139, "eth0")]
    box = FakeBox(Config.factory())
    with pytest.raises(HaltError, match="^NIC unavailable!$"):
        net.Network(plat).configure(box)
    assert "NIC 0000:00:03.0 10ec:8139: not supported" in box.lines
