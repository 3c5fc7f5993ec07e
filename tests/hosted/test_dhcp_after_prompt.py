"""The boot does not wait for the DHCP lease: the prompt comes, the address line follows
under it when the lease is in, and the web admin (its certificate, its `web admin on` line)
waits for that address, not the boot (appliance/services/network.py).

The real runtime on real image files, hosted, with one fake NIC whose DHCP client's lease
the test hands over when it likes (`LeasePlatform`).
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from httpbox import _Sink

from appliance.boot import Runtime
from appliance.hal.hosted import HostedPlatform
from appliance.hal.nics import PciNic, Port, assign_ports
from appliance.services.http import UP_PREFIX, HttpService

WAIT_S = 20
ADDRESS_LINE = "0:0000:030:4 - ETH0 IP address 10.0.2.15/24 (dhcp)"
LEASE = {"ip": "10.0.2.15", "mask": "24", "router": "10.0.2.2"}


@dataclass
class LeasePlatform(HostedPlatform):
    """Hosted with one PCnet NIC (ETH0); its DHCP client's lease is `lease` (None: no
    answer yet); addresses are not really set."""

    lease: dict[str, str] | None = None
    started: list[str] = field(default_factory=list)  # start_dhcp's interfaces
    nics: list[PciNic] = field(
        default_factory=lambda: [PciNic("0000:00:03.0", 0x1022, 0x2000, "eth0")]
    )

    def pci_nics(self) -> list[PciNic]:
        return self.nics

    def ports(self) -> list[Port]:
        return assign_ports(self.nics)

    def start_dhcp(self, ifname: str, fallback: str | None) -> None:
        self.started.append(ifname)

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None:
        return self.lease

    def set_static(self, ifname: str, addr: str | None, prefix: int, gateway: str | None) -> None:
        pass

    def link_up(self, ifname: str) -> bool:
        return True


def until(what: str, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        time.sleep(0.02)


def test_the_prompt_comes_before_the_lease_and_the_address_line_under_it(tmp_path: Path) -> None:
    console = _Sink()
    read, write = os.pipe()
    platform = LeasePlatform(
        tmp_path / "box",
        stdin=io.FileIO(read, "rb"),
        stdout=console,  # type: ignore[arg-type]
        http=("127.0.0.1", 0),
        https=("127.0.0.1", 0),
    )
    runtime = Runtime(platform, newline=b"\n")  # hosted: every service starts in the boot
    try:
        assert runtime.boot(), console.text()  # returns with the lease held back
        assert platform.started == ["eth0"]
        serving = threading.Thread(target=runtime.serve_consoles, daemon=True)
        serving.start()
        until("the prompt", lambda: console.text().endswith("IPVA> "))
        time.sleep(0.5)  # the watcher has looked a few times: still no lease
        text = console.text()
        assert "IP address" not in text and "waiting for a DHCP server" not in text, text
        # the web admin's start waits for the address its certificate names
        assert UP_PREFIX not in text, text
        box = runtime.box
        assert box is not None and box.addresses == {}
        platform.lease = LEASE  # the server answers
        service = box.service(HttpService)
        assert service is not None and service.wait_started(WAIT_S)
        text = console.text()
        address = text.index(ADDRESS_LINE)
        assert text.index("IPVA> ") < address < text.index(UP_PREFIX), text
        assert box.addresses == {"ETH0": "10.0.2.15/24 (dhcp)"}
        assert service.listeners is not None and service.listeners.certificate is not None
        assert "IP:10.0.2.15" in service.listeners.certificate.san.split(", ")
        # each late line went under the prompt, which was drawn again below it
        assert re.search(re.escape(ADDRESS_LINE) + r"\nIPVA> ", text), text
    finally:
        os.close(write)  # end of input: the session ends
        runtime.close()
