"""IP addressing of ETH0/ETH1 from the active config: DHCP client (default) or static.

The box shows its current address on the console after boot and on every change (the seed:
"You will see the current IP-Address in the console-screen of the VM"). The DHCP client is
busybox udhcpc (it renews and rebinds by itself); its hook script writes the lease to
/run/ipva/dhcp-<if>, which a watcher thread turns into console lines.
"""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import time
from typing import Any, Protocol

WATCH_INTERVAL_S = 1.0


class NicPlatform(Protocol):
    def interfaces(self) -> list[str]: ...

    def start_dhcp(self, ifname: str) -> dict[str, str] | None: ...

    def dhcp_lease(self, ifname: str) -> dict[str, str] | None: ...


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=False, capture_output=True)


def prefix_len(mask: str) -> int:
    return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen


class Network:
    """Attached to the VM platform as `platform.network`; boot calls `configure(box)`."""

    def __init__(self, platform: NicPlatform) -> None:
        self.platform = platform
        self._watcher: threading.Thread | None = None
        self._shown: dict[str, str] = {}

    def configure(self, box: Any) -> None:
        nics = self.platform.interfaces()
        if not nics:
            box.trace("NIC unavailable!")
            return
        cfg = box.active
        ifname = nics[0]
        if str(cfg.value("DHCP0", "mode")) == "off":
            addr = str(cfg.value("IP0", "addr", "ETH0"))
            mask = str(cfg.value("IP0", "mask", "ETH0"))
            _ip("link", "set", ifname, "up")
            _ip("-4", "addr", "flush", "dev", ifname)
            if addr and addr != "0.0.0.0":
                _ip("addr", "add", f"{addr}/{prefix_len(mask)}", "dev", ifname)
                gw = str(cfg.value("IP0", "gateway", "RT0") or "")
                if gw and gw != "0.0.0.0":
                    _ip("route", "replace", "default", "via", gw, "dev", ifname)
                self._show(box, "ETH0", f"{addr}/{mask} (static)")
            else:
                box.trace("ETH0 no address: DHCP0 is off and IP0 ETH0 /addr is not set")
            return
        lease = self.platform.start_dhcp(ifname)
        if lease:
            self._show(box, "ETH0", f"{lease['ip']}/{lease.get('mask', '')} (dhcp)")
        else:
            box.trace("ETH0 waiting for a DHCP server …")
        self._watcher = threading.Thread(
            target=self._watch, args=(box, ifname), name="dhcp-watch", daemon=True
        )
        self._watcher.start()

    def _show(self, box: Any, port: str, text: str) -> None:
        if self._shown.get(port) != text:
            self._shown[port] = text
            box.trace(f"{port} IP address {text}")

    def _watch(self, box: Any, ifname: str) -> None:
        while box.restart_request is None:
            lease = self.platform.dhcp_lease(ifname)
            if lease:
                self._show(box, "ETH0", f"{lease['ip']}/{lease.get('mask', '')} (dhcp)")
            elif "ETH0" in self._shown:
                self._shown.pop("ETH0")
                box.trace("ETH0 DHCP lease lost")
            time.sleep(WATCH_INTERVAL_S)
