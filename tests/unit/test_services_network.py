"""Network service on a fake NIC platform: static/DHCP per port, lease loss, NIC unavailable!"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from appliance.config import Config
from appliance.events import AddressChanged, Events, LinkChanged, Resumed
from appliance.hal.nics import PciNic, Port, assign_ports
from appliance.hal.types import HaltError, NicConfigError
from appliance.owner import BoxOwner
from appliance.services import network as net


class FakeNics:
    def __init__(self, n: int = 2) -> None:
        ids = [(0x1022, 0x2000), (0x1AF4, 0x1000)][:n]
        self.nics = [PciNic(f"0000:00:0{i + 3}.0", v, d, f"eth{i}") for i, (v, d) in enumerate(ids)]
        self.lease: dict[str, dict[str, str] | None] = {}
        self.static: list[tuple[Any, ...]] = []
        self.refuse: NicConfigError | None = None  # what the kernel says to set_static
        self.down: set[str] = set()  # interfaces without carrier
        self.fallbacks: dict[str, str | None] = {}  # start_dhcp's fallback per interface
        self.renewed: list[str] = []

    def ports(self) -> list[Port]:
        return assign_ports(self.nics)

    def pci_nics(self) -> list[PciNic]:
        return self.nics

    def start_dhcp(self, ifname: str, fallback: str | None) -> None:
        self.fallbacks[ifname] = fallback

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None:
        return self.lease.get(ifname)

    def renew_dhcp(self, ifname: str) -> dict[str, str] | None:
        self.renewed.append(ifname)
        return self.lease.get(ifname)

    def link_up(self, ifname: str) -> bool:
        return ifname not in self.down

    def set_static(self, *args: Any) -> None:
        self.static.append(args)
        if self.refuse is not None:
            raise self.refuse


class FakeBox:
    def __init__(self, cfg: Config) -> None:
        self.active = cfg
        self.lines: list[str] = []
        self.restart_request: str | None = None
        self.addresses: dict[str, str] = {}
        self.events = Events()
        self.seen: list[Any] = []
        self.events.subscribe(self.seen.append)
        self.owner = BoxOwner()  # the test's thread owns it

    def trace(self, text: str, tag: int = 30) -> None:
        self.lines.append(text)

    def set_address(self, port: str, text: str | None) -> None:  # as Box.set_address
        self.owner.check("address change")
        if text is None:
            self.addresses.pop(port, None)
        else:
            self.addresses[port] = text
        self.events.emit(AddressChanged(port, text))


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


def test_dhcp_on_eth1_and_lease_loss_is_shown() -> None:
    cfg = config((("DHCP0", ""), {"interface": "ETH1"}))
    plat, box = FakeNics(), FakeBox(cfg)
    plat.lease["eth1"] = {"ip": "10.0.2.15", "mask": "24"}
    network = net.Network(plat)
    network.configure(box, watch=False)
    assert network.modes == {"ETH0": "off", "ETH1": "dhcp"}
    ports = network.dhcp_ports()
    network.first_leases(box, ports)  # the watcher's first look (it has the lease at once)
    assert box.lines[-1] == "ETH1 IP address 10.0.2.15/24 (dhcp)"
    assert [p.name for p in ports] == ["ETH1"]
    shown = len(box.lines)
    network.poll_once(box, ports)  # renewed, same address: nothing new on the console
    assert len(box.lines) == shown
    plat.lease["eth1"] = None  # udhcpc's deconfig removed the lease file
    network.poll_once(box, ports)
    network.poll_once(box, ports)  # said once, not on every look
    assert box.lines[shown:] == ["ETH1 DHCP lease lost: no address until a server answers"]
    plat.lease["eth1"] = {"ip": "10.0.2.16", "mask": "255.255.255.0"}
    network.poll_once(box, ports)
    assert box.lines[-1] == "ETH1 IP address 10.0.2.16/24 (dhcp)"
    # the box's addresses and the event hook follow every change the console showed
    assert box.addresses == {"ETH1": "10.0.2.16/24 (dhcp)"}
    assert box.seen == [
        AddressChanged("ETH1", "10.0.2.15/24 (dhcp)"),
        AddressChanged("ETH1", None),
        AddressChanged("ETH1", "10.0.2.16/24 (dhcp)"),
    ]


def test_eth0_falls_back_to_192_168_0_1_and_a_later_lease_wins() -> None:
    """The real box's defaults: no DHCP server → 192.168.0.1/24 (the hook script's file says
    fallback=yes), said on the console with the timeout; a lease found later replaces it."""
    plat, box = FakeNics(), FakeBox(Config.factory())
    plat.lease["eth0"] = {"ip": "192.168.0.1", "mask": "24", "fallback": "yes"}
    network = net.Network(plat)
    network.configure(box, watch=False)
    assert plat.fallbacks == {"eth0": "192.168.0.1/24"}
    network.first_leases(box, network.dhcp_ports())
    assert box.lines[-2:] == [
        "ETH0 no DHCP server answered in 8 s: fallback to 192.168.0.1/24, still asking for a lease",
        "ETH0 IP address 192.168.0.1/24 (fallback)",
    ]
    shown = len(box.lines)
    network.poll_once(box, network.dhcp_ports())  # the next rounds keep it: said once
    assert len(box.lines) == shown
    plat.lease["eth0"] = {"ip": "10.0.2.15", "mask": "24", "router": "10.0.2.2"}
    network.poll_once(box, network.dhcp_ports())
    assert box.lines[shown:] == ["ETH0 IP address 10.0.2.15/24 (dhcp)"]
    assert box.addresses["ETH0"] == "10.0.2.15/24 (dhcp)"


def test_only_eth0_falls_back() -> None:
    plat, box = FakeNics(), FakeBox(config((("DHCP0", ""), {"interface": "ETH1"})))
    network = net.Network(plat)
    network.configure(box, watch=False)
    assert plat.fallbacks == {"eth1": None}
    network.first_leases(box, network.dhcp_ports(), wait_s=0)  # DHCP_WAIT_S, no answer
    assert box.lines[-1] == "ETH1 waiting for a DHCP server …"


def test_factory_settings_give_eth1_192_168_1_1() -> None:
    plat, box = FakeNics(), FakeBox(Config.factory_settings())
    net.Network(plat).configure(box, watch=False)
    assert plat.static == [("eth1", "192.168.1.1", 24, None)]
    assert "ETH1 IP address 192.168.1.1/24 (static)" in box.lines


def test_the_watcher_thread_ends_when_the_box_goes_down_and_stop_joins_it() -> None:
    plat, box = FakeNics(), FakeBox(config())
    plat.lease["eth0"] = {"ip": "10.0.2.15", "mask": "24"}  # its first look ends at once
    network = net.Network(plat)
    network.configure(box)
    watcher = network._watcher
    assert watcher is not None and watcher.is_alive()
    box.owner.close()  # the box goes down: the watcher's next hand-over fails, it ends
    watcher.join(timeout=30)
    assert not watcher.is_alive()
    assert network.stop() is None  # joined within its bound: nothing for the trace


def test_stop_ends_the_watcher_of_a_running_box() -> None:
    plat, box = FakeNics(), FakeBox(config())
    network = net.Network(plat)
    network.configure(box)
    watcher = network._watcher
    assert watcher is not None and watcher.is_alive()
    assert network.stop() is None
    assert not watcher.is_alive()


def test_after_a_resume_the_dhcp_leases_are_renewed_and_said() -> None:
    cfg = config((("DHCP0", ""), {"interface": "ETH1"}))
    plat, box = FakeNics(), FakeBox(cfg)
    plat.lease["eth1"] = {"ip": "10.0.2.15", "mask": "24"}
    network = net.Network(plat)
    network.configure(box)
    box.events.emit(AddressChanged("ETH0", None))  # other events: nothing renewed
    box.events.emit(Resumed(12.5))
    wait = 0
    while "ETH1 DHCP lease renewed: 10.0.2.15/24 (dhcp)" not in box.lines and wait < 300:
        threading.Event().wait(0.01)
        wait += 1
    assert "ETH1 DHCP lease renewed: 10.0.2.15/24 (dhcp)" in box.lines
    assert plat.renewed == ["eth1"]  # only the DHCP port
    plat.lease["eth1"] = None  # no answer: said, and udhcpc keeps trying
    network.renew(box)
    assert box.lines[-1] == "ETH1 DHCP lease not renewed yet: no answer (the client retries)"


def test_no_supported_nic_halts() -> None:
    plat = FakeNics(0)
    plat.nics = [PciNic("0000:00:03.0", 0x10EC, 0x8139, "eth0")]
    box = FakeBox(Config.factory())
    with pytest.raises(HaltError, match="^NIC unavailable!$"):
        net.Network(plat).configure(box)
    assert "NIC 0000:00:03.0 10ec:8139: not supported" in box.lines


SEED_STATIC = (
    (("IP0", "ETH0"), {"addr": "192.168.0.10", "mask": "255.255.255.0"}),
    (("IP0", "RT0"), {"gateway": "192.168.0.1"}),
    (("DHCP0", ""), {"mode": "off"}),
)


def test_an_address_the_kernel_refuses_is_not_shown_as_set() -> None:
    plat, box = FakeNics(), FakeBox(config(*SEED_STATIC))
    plat.refuse = NicConfigError(
        "address", "ip addr add 192.168.0.10/24 dev eth0: RTNETLINK answers: File exists"
    )
    network = net.Network(plat)
    network.configure(box)
    assert not any("IP address" in line for line in box.lines)
    assert (
        "ETH0: address not set: ip addr add 192.168.0.10/24 dev eth0: RTNETLINK answers: "
        "File exists; check IP0 ETH0 /addr /mask"
    ) in box.lines
    assert network.modes["ETH0"] == "off"


def test_a_refused_route_is_said_after_the_address() -> None:
    plat, box = FakeNics(), FakeBox(config(*SEED_STATIC))
    plat.refuse = NicConfigError("route", "ip route replace …: Network unreachable")
    network = net.Network(plat)
    network.configure(box)
    i = box.lines.index("ETH0 IP address 192.168.0.10/24 (static)")
    assert box.lines[i + 1] == (
        "ETH0: default route via 192.168.0.1 not set: ip route replace …: "
        "Network unreachable; check IP0 RT"
    )
    assert network.modes["ETH0"] == "static"


def test_link_changes_are_events_not_console_lines() -> None:
    plat, box = FakeNics(), FakeBox(config((("DHCP0", ""), {"mode": "off"})))
    network = net.Network(plat)
    network.configure(box, watch=False)
    lines, seen = len(box.lines), len(box.seen)
    network.poll_links(box)
    assert box.seen[seen:] == []  # no change yet
    plat.down.add("eth1")
    network.poll_links(box)
    network.poll_links(box)  # said once
    plat.down.clear()
    network.poll_links(box)
    assert box.seen[seen:] == [LinkChanged("ETH1", False), LinkChanged("ETH1", True)]
    assert len(box.lines) == lines


def wait_for(what: str, check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


def test_the_boot_does_not_wait_for_the_lease_and_the_watcher_shows_it_promptly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """configure() starts the client and returns; the first lease is shown by the watcher's
    quick first looks, not at its normal interval; who waits for it goes on after it."""
    monkeypatch.setattr(net, "WATCH_INTERVAL_S", 60.0)  # only the first phase can show it
    plat, box = FakeNics(), FakeBox(config())
    network = net.Network(plat)
    addressed: list[dict[str, str]] = []
    try:
        network.configure(box)
        assert plat.fallbacks == {"eth0": "192.168.0.1/24"}  # started …
        found = len(box.lines)  # the ports' lines (find_ports)
        assert not any("IP address" in ln or "DHCP" in ln for ln in box.lines)  # not waited for
        network.when_addressed(lambda: addressed.append(dict(box.addresses)))
        time.sleep(0.3)  # a few first looks without a lease
        assert addressed == [] and box.addresses == {}
        plat.lease["eth0"] = {"ip": "10.0.2.15", "mask": "24"}
        wait_for("the address line", lambda: addressed)
        assert box.lines[found:] == ["ETH0 IP address 10.0.2.15/24 (dhcp)"]
        assert addressed == [{"ETH0": "10.0.2.15/24 (dhcp)"}]  # after the address is in
        network.when_addressed(lambda: addressed.append({}))  # later: at once
        assert len(addressed) == 2
    finally:
        assert network.stop() is None


def test_without_a_lease_or_fallback_in_dhcp_wait_s_the_watcher_says_it_is_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`waiting for a DHCP server …` keeps its meaning: DHCP_WAIT_S after the client's start
    there is neither a lease nor a fallback. The watcher says it (after the prompt), lets
    who waits for the first address go on, and shows a later lease at its interval."""
    monkeypatch.setattr(net, "DHCP_WAIT_S", 0.3)
    monkeypatch.setattr(net, "WATCH_INTERVAL_S", 0.05)
    plat, box = FakeNics(), FakeBox(config((("DHCP0", ""), {"interface": "ETH1"})))
    network = net.Network(plat)
    addressed = threading.Event()
    try:
        network.configure(box)
        network.when_addressed(addressed.set)
        assert "ETH1 waiting for a DHCP server …" not in box.lines
        assert addressed.wait(5)
        assert box.lines[-1] == "ETH1 waiting for a DHCP server …"
        plat.lease["eth1"] = {"ip": "10.0.2.15", "mask": "24"}
        wait_for("the late lease", lambda: box.lines[-1] == "ETH1 IP address 10.0.2.15/24 (dhcp)")
        assert box.lines.count("ETH1 waiting for a DHCP server …") == 1
    finally:
        assert network.stop() is None


def test_a_box_without_a_dhcp_port_is_addressed_at_once() -> None:
    plat, box = FakeNics(), FakeBox(config(*SEED_STATIC))
    network = net.Network(plat)
    network.configure(box, watch=False)
    called: list[bool] = []
    network.when_addressed(lambda: called.append(True))
    assert called == [True]
    assert "ETH0 IP address 192.168.0.10/24 (static)" in box.lines  # static: before the prompt
