"""IP addressing of ETH0/ETH1 from the active config: DHCP client (default) or static.

ETH0/ETH1 are the first/second supported NIC in PCI order (hal.nics). The DHCP client runs
on DHCP0's /interface (ETH0 by default) unless DHCP0 /mode is off; every other port gets its
static IP0 ETHn /addr /mask, if set. Routes come from IP0 RTn (/dest 0.0.0.0 /mask 0.0.0.0
is the default route).

The box shows its current address on the console after boot and on every change (the seed:
"You will see the current IP-Address in the console-screen of the VM"). The DHCP client is
busybox udhcpc: it renews and rebinds by itself, and on lease loss it deconfigures the
interface; its hook script writes the lease to /run/ipva/dhcp-<if> (removed on loss), which
a watcher thread turns into console lines — new address, renewed lease, lease lost. The same
watcher sends an events.LinkChanged when a port's carrier comes or goes.

The boot does not wait for the lease: the service starts udhcpc and the watcher, and the
prompt comes; the `ETH0 IP address … (dhcp)` line follows under it when the lease is in.
Until each DHCP port has its first lease or fallback the watcher looks every FIRST_POLL_S
(the line comes as promptly as the boot used to wait for it), then every WATCH_INTERVAL_S.
`waiting for a DHCP server …` means what it meant when the boot waited: DHCP_WAIT_S after
the client's start there is neither a lease nor a fallback (a port without a fallback, or a
client that never got going); it is traced then, by the watcher, and the client goes on
asking. Static addresses are set and shown before the prompt (nothing to wait for). What
needs the first address waits for it with `when_addressed` (the web admin, whose
certificate names the box's addresses and whose `HTTP0: web admin on …` line tells the
harness that the box answers on them), not the boot.

`mod cmd ETH0 …`/`ETH1 …` read the kernel's state (sysfs and ioctls), not the config. On a
platform without NICs (hosted) they answer `ETH0: no network interface on this platform`.
Every address shown is also kept in `box.addresses` and sent as `events.AddressChanged`.

The real box's defaults (GNS3's usage notes): a DHCP client on ETH0 that falls back to the
static 192.168.0.1/24 when no server answers, and 192.168.1.1/24 on ETH1 (config.modules.
FACTORY_OBJECTS). The fallback is the DHCP client's: when a round of DISCOVERs got no answer
(hal.nics: 8, 1 s apart) its hook script puts FALLBACK on the port and udhcpc goes on asking
in the background; a lease, whenever it comes, replaces the fallback.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol

from appliance import xmltext
from appliance.config import Config
from appliance.events import Event, LinkChanged, Resumed
from appliance.hal.nics import (
    DHCP_TRIES,
    DHCP_TRY_S,
    DHCP_WAIT_S,
    SUPPORTED_NICS,
    PciNic,
    Port,
    read_ipv4,
    read_link_state,
)
from appliance.hal.types import HaltError, NicConfigError
from appliance.modcmd import Command, Handler, ModCmdError
from appliance.owner import BoxRestarting, join_checked
from appliance.service import BaseService

if TYPE_CHECKING:
    from appliance.box import Box
    from appliance.hal.platform import Platform
    from appliance.trace import TraceFn

WATCH_INTERVAL_S = 1.0
FIRST_POLL_S = 0.1  # until every DHCP port's first lease or fallback (or DHCP_WAIT_S)
WATCH_JOIN_S = 12.0  # a renewal after a pause waits up to the DHCP round (10 s)
NIC_UNAVAILABLE = "NIC unavailable!"
FALLBACK_PORT = "ETH0"  # only the real box's DHCP port falls back (ETH1 has its static)
FALLBACK = "192.168.0.1/24"


class NicPlatform(Protocol):
    """The NIC part of hal.platform.Platform (what the network needs; tests fake it)."""

    def ports(self) -> list[Port]: ...

    def pci_nics(self) -> list[PciNic]: ...

    def start_dhcp(self, ifname: str, fallback: str | None) -> None: ...  # does not wait

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None: ...

    def renew_dhcp(self, ifname: str) -> dict[str, str] | None: ...

    # raises NicConfigError (ip's message) when the kernel refuses a step
    def set_static(
        self, ifname: str, addr: str | None, prefix: int, gateway: str | None
    ) -> None: ...

    def link_up(self, ifname: str) -> bool: ...  # carrier on the interface


PortCommand = Callable[["Network", Port], str]


def prefix_len(mask: str) -> int:
    return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen


def lease_text(lease: dict[str, str]) -> str:
    mask = lease.get("mask", "")
    if mask and not mask.isdigit():  # udhcpc gives a prefix length; a dotted mask is fine too
        mask = str(prefix_len(mask))
    return f"{lease['ip']}/{mask} ({'fallback' if is_fallback(lease) else 'dhcp'})"


def is_fallback(lease: dict[str, str]) -> bool:
    """The hook script's file for the fallback address (no DHCP server answered)."""
    return lease.get("fallback") == "yes"


def default_gateway(cfg: Config) -> str | None:
    for (mod, sub), vals in sorted(cfg.objects.items()):
        if mod == "IP0" and sub.startswith("RT"):
            dest = str(vals.get("dest", "0.0.0.0"))
            mask = str(vals.get("mask", "0.0.0.0"))
            gw = str(vals.get("gateway", "0.0.0.0"))
            if dest == "0.0.0.0" and mask == "0.0.0.0" and gw != "0.0.0.0":
                return gw
    return None


def find_ports(platform: NicPlatform, trace: TraceFn) -> list[Port]:
    """ETH0/ETH1, traced; no supported NIC → HaltError(`NIC unavailable!`), as the box."""
    ports = platform.ports()
    for nic in platform.pci_nics():
        if nic.model is None:
            trace(f"NIC {nic.slot} {nic.pci_id}: not supported")
    for p in ports:
        model = p.nic.model
        assert model is not None
        trace(f"{p.name} {model.name} ({p.nic.pci_id} at {p.nic.slot}, {p.ifname})")
    if not ports:
        supported = ", ".join(sorted({f"{v:04x}:{d:04x}" for v, d in SUPPORTED_NICS}))
        trace(f"NIC: none of the supported NICs found ({supported})")
        raise HaltError(NIC_UNAVAILABLE)
    return ports


class Network:
    """The ports and their addresses; `configure(box)` applies the active config."""

    def __init__(self, platform: NicPlatform) -> None:
        self.platform = platform
        self.ports: list[Port] = []
        self.modes: dict[str, str] = {}  # ETH0 → "dhcp" | "static" | "off"
        self._shown: dict[str, str] = {}
        self._links: dict[str, bool] = {}  # port → carrier, as last seen by the watcher
        self._watcher: threading.Thread | None = None
        self.stopping = threading.Event()  # the box goes down: the watcher ends
        self._renew = threading.Event()  # a pause ended: the watcher renews the leases
        # owner state: the DHCP clients' first look is under way (configure → first_leases'
        # end), and who waits for its end (when_addressed)
        self._first_pending = False
        self._when_addressed: list[Callable[[], None]] = []

    def port(self, name: str) -> Port | None:
        return next((p for p in self.ports if p.name == name.upper()), None)

    def find(self, trace: TraceFn) -> None:
        self.ports = find_ports(self.platform, trace)

    def configure(self, box: Box, *, watch: bool = True) -> None:
        """Addresses from box.active; the DHCP clients are started, not waited for (their
        leases are shown by the watcher). `watch`: start the lease watcher thread (tests
        call first_leases and poll_once themselves instead)."""
        if not self.ports:
            self.find(box.trace)
        cfg = box.active
        dhcp_on = str(cfg.value("DHCP0", "mode")) != "off"
        dhcp_port = str(cfg.value("DHCP0", "interface")) if dhcp_on else None
        gateway = default_gateway(cfg)
        dhcp_ports = []
        for p in self.ports:
            if p.name == dhcp_port:
                dhcp_ports.append(p)
                continue
            addr = str(cfg.value("IP0", "addr", p.name))
            mask = str(cfg.value("IP0", "mask", p.name))
            if addr and addr != "0.0.0.0":
                self._set_static(box, p, addr, mask, gateway)
            else:
                self.modes[p.name] = "off"
                try:
                    self.platform.set_static(p.ifname, None, 0, None)  # link up, no address
                except NicConfigError as e:
                    box.trace(f"{p.name}: link not set up: {e}")
                if p.name == "ETH0":
                    box.trace("ETH0 no address: DHCP0 is off and IP0 ETH0 /addr is not set")
        if dhcp_port and not dhcp_ports:
            box.trace(f"DHCP0 /interface {dhcp_port}: no such NIC; DHCP client not started")
        for p in dhcp_ports:
            self.modes[p.name] = "dhcp"
            fallback = FALLBACK if p.name == FALLBACK_PORT else None
            self.platform.start_dhcp(p.ifname, fallback)
        self._first_pending = bool(dhcp_ports)
        self._links = {p.name: self.platform.link_up(p.ifname) for p in self.ports}
        if self.ports and watch:
            self._watcher = threading.Thread(
                target=self._watch, args=(box, dhcp_ports), name="dhcp-watch", daemon=True
            )
            self._watcher.start()
            box.events.subscribe(lambda event: self._on_event(box, event))

    def when_addressed(self, fn: Callable[[], None]) -> None:
        """On the owner: call `fn` (on the owner) once every DHCP port has shown its first
        lease or fallback, or DHCP_WAIT_S passed without (`waiting for a DHCP server …`
        said); at once if that is so already, or there is no DHCP port. Not called if the
        box goes down first: the caller's stop has to end its own wait."""
        if self._first_pending:
            self._when_addressed.append(fn)
        else:
            fn()

    def first_leases(self, box: Box, ports: list[Port], wait_s: float | None = None) -> None:
        """The watcher's first phase: a look at the lease files every FIRST_POLL_S until
        each port has its first lease or fallback (shown, on the owner), or `wait_s`
        (DHCP_WAIT_S) has passed (the ports without: `waiting for a DHCP server …`); then
        when_addressed's callers go on. Ends early when the network stops."""
        deadline = time.monotonic() + (DHCP_WAIT_S if wait_s is None else wait_s)
        pending = list(ports)
        while pending:
            got: dict[str, dict[str, str] | None] = {
                p.name: lease for p in pending if (lease := self.platform.dhcp_lease(p.ifname))
            }
            if got:
                box.owner.call(partial(self._leases, box, got))
                pending = [p for p in pending if p.name not in got]
            if not pending or time.monotonic() >= deadline:
                break
            if self.stopping.wait(FIRST_POLL_S):
                return
        box.owner.call(partial(self._addressed, box, [p.name for p in pending]))

    def _addressed(self, box: Box, waiting: list[str]) -> None:
        for port in waiting:
            box.trace(f"{port} waiting for a DHCP server …")
        self._first_pending = False
        waiters, self._when_addressed = self._when_addressed, []
        for fn in waiters:
            fn()

    def _on_event(self, box: Box, event: Event) -> None:
        if isinstance(event, Resumed) and self.dhcp_ports():
            # the renewal waits for the server's answer: the watcher's thread does it, not
            # the emitting (owner) thread
            self._renew.set()

    def renew(self, box: Box) -> None:
        """Renew every DHCP lease now (after a pause: the lease may have run out, or the
        VM may be on another host's network) and say so; the box learns the address as a
        job on its owner, as from the watcher."""
        for p in self.dhcp_ports():
            lease = self.platform.renew_dhcp(p.ifname)
            if not lease:
                box.trace(f"{p.name} DHCP lease not renewed yet: no answer (the client retries)")
                continue
            box.trace(f"{p.name} DHCP lease renewed: {lease_text(lease)}")
            try:
                box.owner.call(partial(self._leases, box, {p.name: lease}))
            except BoxRestarting:
                return

    def _set_static(self, box: Box, p: Port, addr: str, mask: str, gateway: str | None) -> None:
        """IP0 ETHn /addr /mask and the default route on its net; the console shows the
        address only once the kernel has it, else ip's reason and what to check."""
        gw = gateway if gateway and _same_net(addr, mask, gateway) else None
        prefix = prefix_len(mask)
        route_error: NicConfigError | None = None
        try:
            self.platform.set_static(p.ifname, addr, prefix, gw)
        except NicConfigError as e:
            if e.what != "route":
                self.modes[p.name] = "off"
                box.trace(f"{p.name}: address not set: {e}; check IP0 {p.name} /addr /mask")
                return
            route_error = e  # the address is there: show it, then the route's problem
        self.modes[p.name] = "static"
        self._show(box, p.name, f"{addr}/{prefix} (static)")
        if route_error is not None:
            box.trace(f"{p.name}: default route via {gw} not set: {route_error}; check IP0 RT")

    def _show(self, box: Box, port: str, text: str) -> None:
        if self._shown.get(port) != text:
            self._shown[port] = text
            box.set_address(port, text)
            box.trace(f"{port} IP address {text}")

    def _show_lease(self, box: Box, port: str, lease: dict[str, str]) -> None:
        text = lease_text(lease)
        if is_fallback(lease) and self._shown.get(port) != text:
            box.trace(
                f"{port} no DHCP server answered in {DHCP_TRIES * DHCP_TRY_S} s: "
                f"fallback to {text.split()[0]}, still asking for a lease"
            )
        self._show(box, port, text)

    def dhcp_ports(self) -> list[Port]:
        return [p for p in self.ports if self.modes.get(p.name) == "dhcp"]

    def poll_once(self, box: Box, ports: list[Port]) -> None:
        """One look at the DHCP client's lease files (read here, in the caller's thread):
        a new address or lease is shown, a lost lease is said once; the box learns it as
        a job on its owner. The watcher thread calls it every WATCH_INTERVAL_S."""
        leases = {p.name: self.platform.dhcp_lease(p.ifname) for p in ports}
        box.owner.call(lambda: self._leases(box, leases))

    def _leases(self, box: Box, leases: dict[str, dict[str, str] | None]) -> None:
        for port, lease in leases.items():
            if lease:
                self._show_lease(box, port, lease)
            elif port in self._shown:
                self._shown.pop(port)
                box.set_address(port, None)
                box.trace(f"{port} DHCP lease lost: no address until a server answers")

    def poll_links(self, box: Box) -> None:
        """One look at every port's carrier: a change is an events.LinkChanged (not traced:
        the console shows addresses, as before), emitted on the box's owner."""
        links = {p.name: self.platform.link_up(p.ifname) for p in self.ports}
        box.owner.call(lambda: self._carriers(box, links))

    def _carriers(self, box: Box, links: dict[str, bool]) -> None:
        for port, up in links.items():
            if self._links.get(port) != up:
                self._links[port] = up
                box.events.emit(LinkChanged(port, up))

    def _watch(self, box: Box, ports: list[Port]) -> None:
        # the next boot starts its own watcher; BoxRestarting: this box is going down
        try:
            self.first_leases(box, ports)
            while not self.stopping.is_set():
                if self._renew.is_set():
                    self._renew.clear()
                    self.renew(box)
                self.poll_once(box, ports)
                self.poll_links(box)
                self.stopping.wait(WATCH_INTERVAL_S)
        except BoxRestarting:
            return

    def stop(self) -> str | None:
        """End the watcher and join it; the sentence for the trace if it did not end."""
        self.stopping.set()
        return join_checked(self._watcher, WATCH_JOIN_S)


def _same_net(addr: str, mask: str, gw: str) -> bool:
    net = ipaddress.IPv4Network(f"{addr}/{mask}", strict=False)
    return ipaddress.IPv4Address(gw) in net


# --- the service and mod cmd ETH0 / ETH1 ----------------------------------------------

PORT_NAMES = ("ETH0", "ETH1")


class NetworkService(BaseService):
    name = "network"
    config_modules: tuple[str, ...] = ("IP0", "DHCP0", "DNS0")

    def __init__(self) -> None:
        self.network: Network | None = None  # after probe()
        self.has_nics = False
        self._trace: TraceFn | None = None

    def probe(self, platform: Platform, trace: TraceFn) -> None:
        """ETH0/ETH1 by PCI id; where the box needs a NIC (the VM) none stops the boot
        with `NIC unavailable!`."""
        self.network = Network(platform)
        if platform.needs_nic:
            self.network.find(trace)
        else:
            self.network.ports = platform.ports()
        self.has_nics = bool(self.network.ports)

    def start(self, box: Box) -> None:
        self._trace = box.trace
        if self.network is not None and self.network.ports:
            self.network.configure(box)

    def when_addressed(self, fn: Callable[[], None]) -> None:
        """On the owner: `fn` once the DHCP clients' first leases are in (Network.
        when_addressed); at once without NICs."""
        if self.network is None:
            fn()
        else:
            self.network.when_addressed(fn)

    def stop(self) -> None:
        if self.network is not None:
            late = self.network.stop()
            if late and self._trace is not None:
                self._trace(f"network: {late}")

    def commands(self) -> list[Command]:
        out: list[Command] = []
        for name in PORT_NAMES:
            out += [
                Command(name, "info", "NIC, link state, MAC, address and counters (XML)",
                        self._handler(name, eth_info)),
                Command(name, "link", "link state: up|down, speed, duplex",
                        self._handler(name, eth_link)),
                Command(name, "mac", "MAC address", self._handler(name, eth_mac)),
                Command(name, "addr", "the IPv4 address/prefix the interface has now",
                        self._handler(name, eth_addr)),
                Command(name, "counters", "packet/byte/error counters since boot",
                        self._handler(name, eth_counters)),
            ]  # fmt: skip
        return out

    def _handler(self, name: str, fn: PortCommand) -> Handler:
        def run(box: Box, args: list[str]) -> str:
            network, port = self.port_of(name)
            return fn(network, port)

        return run

    def port_of(self, name: str) -> tuple[Network, Port]:
        if self.network is None or not self.has_nics:
            raise ModCmdError(f"{name}: no network interface on this platform")
        port = self.network.port(name)
        if port is None:
            raise ModCmdError(f"{name}: no such NIC on this box")
        return self.network, port


def eth_info(network: Network, port: Port) -> str:
    st = read_link_state(port.ifname)
    ip = read_ipv4(port.ifname)
    model = port.nic.model
    attrs = {
        "name": port.name,
        "if": port.ifname,
        "pci": port.nic.slot,
        "id": port.nic.pci_id,
        "model": model.name if model else "?",
        "driver": model.driver if model else "?",
        "mac": st.mac,
        "link": "up" if st.up else "down",
        "speed": st.speed,
        "duplex": st.duplex,
        "mtu": str(st.mtu),
        "mode": network.modes.get(port.name, "off"),
        "addr": f"{ip[0]}/{ip[1]}" if ip else "",
    }
    attrs.update({k.replace("_", "-"): str(v) for k, v in st.counters.items()})
    return xmltext.info("eth", attrs)


def eth_link(network: Network, port: Port) -> str:
    st = read_link_state(port.ifname)
    return f"{'up' if st.up else 'down'} speed={st.speed} duplex={st.duplex}"


def eth_mac(network: Network, port: Port) -> str:
    return read_link_state(port.ifname).mac


def eth_addr(network: Network, port: Port) -> str:
    ip = read_ipv4(port.ifname)
    return f"{ip[0]}/{ip[1]}" if ip else "no address"


def eth_counters(network: Network, port: Port) -> str:
    st = read_link_state(port.ifname)
    return " ".join(f"{k.replace('_', '-')}={v}" for k, v in st.counters.items())
