"""A LAN for a GNS3 node's ETH0, on GNS3's own link mechanism (each adapter is a QEMU UDP
socket netdev; GNS3's ubridge would connect it): a relay here in the test, then a
"NAT router" — a guest-less QEMU whose user network (DHCP server, 192.168.0.2) and that UDP
socket share a hub. The relay can hold back DHCP (UDP 67/68), so the box sees a LAN with no
DHCP server until `allow_dhcp()`; the router forwards 127.0.0.1:http_port to
192.168.0.1:80 (the box's fallback address). `restrict=on`: nothing leaves the host.
"""

from __future__ import annotations

import select
import socket
import subprocess
import threading
from pathlib import Path

from hypervisors.qemu.accel import QEMU

DHCP_PORTS = {67, 68}
FALLBACK = "192.168.0.1"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_dhcp(frame: bytes) -> bool:
    """An Ethernet frame carrying IPv4/UDP to or from port 67 or 68."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return False
    udp = 14 + (frame[14] & 0x0F) * 4
    sport, dport = frame[udp : udp + 2], frame[udp + 2 : udp + 4]
    return bool({int.from_bytes(sport, "big"), int.from_bytes(dport, "big")} & DHCP_PORTS)


class Lan:
    def __init__(self, box_sends_to: int, box_listens_on: int, log: Path) -> None:
        self.http_port = free_port()
        self.dhcp_held = 0  # DHCP frames held back so far
        self._dhcp = threading.Event()
        self._stop = threading.Event()
        self._box = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._box.bind(("127.0.0.1", box_sends_to))
        self._box_addr = ("127.0.0.1", box_listens_on)
        self._hub = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._hub.bind(("127.0.0.1", 0))
        self._hub_addr = ("127.0.0.1", free_port(socket.SOCK_DGRAM))
        router = [
            QEMU, "-machine", "none", "-nodefaults", "-display", "none",
            "-netdev", "user,id=u0,restrict=on,net=192.168.0.0/24,host=192.168.0.2,"
            f"dhcpstart=192.168.0.15,hostfwd=tcp:127.0.0.1:{self.http_port}-{FALLBACK}:80",
            "-netdev", f"socket,id=s0,udp=127.0.0.1:{self._hub.getsockname()[1]},"
            f"localaddr=127.0.0.1:{self._hub_addr[1]}",
            "-netdev", "hubport,id=p0,hubid=0,netdev=u0",
            "-netdev", "hubport,id=p1,hubid=0,netdev=s0",
        ]  # fmt: skip
        self._log = log.open("wb")
        self.router = subprocess.Popen(
            router, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._thread = threading.Thread(target=self._relay, name="lan-relay", daemon=True)
        self._thread.start()

    def allow_dhcp(self) -> None:
        """A DHCP server appears on the LAN (the router's answers get through)."""
        self._dhcp.set()

    def _relay(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._box, self._hub], [], [], 0.2)
            for sock in ready:
                frame = sock.recv(65536)
                if is_dhcp(frame) and not self._dhcp.is_set():
                    self.dhcp_held += 1
                    continue
                if sock is self._box:
                    self._hub.sendto(frame, self._hub_addr)
                else:
                    self._box.sendto(frame, self._box_addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.router.kill()
        self.router.wait(timeout=30)
        self._box.close()
        self._hub.close()
        self._log.close()
