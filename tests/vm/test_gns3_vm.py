"""The GNS3 appliance booted as GNS3 boots it: gns3-server's own code (in its venv,
tests/gns3server_env.py) turns dist/gns3/ipva.gns3a into a template and a node and builds the
node's QEMU command line; the test starts that command as gns3-server would after its
ubridge helper (which neither Debian nor PyPI packages, so the link's other end is ours:
tests/vm/lan.py). ETH0's link reaches a LAN whose DHCP server is held back at first.

One boot, in order: the fallback address after the DHCP timeout (and ETH1's static), the
web admin on the fallback address, the console's bytes in UTF-8, then a DHCP server
appears and its lease replaces the fallback.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.version import FIRMWARE_VERSION
from hypervisors.qemu.accel import choose_accel
from hypervisors.qemu.console import ConsoleReader
from hypervisors.qemu.timeouts import BOOT_TIMEOUT, COMMAND_TIMEOUT, SOCKET_TIMEOUT, retry

sys.path.insert(0, str(Path(__file__).parents[1]))
from gns3server_env import run_node_script  # noqa: E402
from vm.lan import Lan  # noqa: E402

pytestmark = pytest.mark.vm

FALLBACK_LINES = (
    "ETH0 no DHCP server answered in 8 s: fallback to 192.168.0.1/24, still asking for a lease",
    "ETH0 IP address 192.168.0.1/24 (fallback)",
)
# udhcpc asks again after a failed round: 20 s pause (its -A default) + 8 DISCOVERs
LEASE_TIMEOUT = 120.0


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    console: ConsoleReader
    raw: bytearray  # the console's bytes as they came
    lan: Lan
    argv: list[str]

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        def seen(last_try: bool) -> re.Match[str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited ({self.proc.returncode}):\n{self.console.text}")
            found = re.search(pattern, self.console.text)
            if not found and not last_try:
                self.console.wait_for_more(len(self.console.text), 1.0)
            return found

        return retry(seen, timeout, what=f"{pattern!r} on the GNS3 node's console")


def _udp_ports(netdev: str) -> tuple[int, int]:
    """(where the box sends, where it listens) from GNS3's `socket,…,udp=…,localaddr=…`."""
    m = re.fullmatch(r"socket,id=gns3-0,udp=127\.0\.0\.1:(\d+),localaddr=127\.0\.0\.1:(\d+)",
                     netdev)  # fmt: skip
    assert m, netdev
    return int(m[1]), int(m[2])


@pytest.fixture(scope="module")
def node(ipva_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    work = tmp_path_factory.mktemp("gns3")
    gns3 = ipva_dist / "gns3"
    rc, answer, err = run_node_script(
        "command", gns3 / "ipva.gns3a", gns3, work / "projects", choose_accel()
    )
    assert rc == 0, err
    argv = answer["argv"]
    eth0 = next(a for a in argv if a.startswith("socket,id=gns3-0,"))
    lan = Lan(*_udp_ports(eth0), work / "router.log")
    raw = bytearray()
    console = ConsoleReader(f"socket://127.0.0.1:{answer['console_port']}", work / "console.log")
    console.on_data.append(raw.extend)
    with (work / "qemu.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=answer["cwd"], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        console.connect(SOCKET_TIMEOUT)
        yield Node(proc, console, raw, lan, argv)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        console.close()
        lan.close()


def test_no_dhcp_server_gives_the_fallback_address_and_eth1_its_static(node: Node) -> None:
    node.wait_for(re.escape(FALLBACK_LINES[1]), BOOT_TIMEOUT)
    node.wait_for(r"IPVA> ", BOOT_TIMEOUT)
    log = node.console.text
    # the timeout, then the address, one trace line after the other: after the prompt (the
    # boot does not wait for DHCP), so the prompt is drawn again under each of them
    fallback = r"\n(?:IPVA> \n)?".join(f"0:0000:030:4 - {re.escape(ln)}" for ln in FALLBACK_LINES)
    assert re.search(fallback, log), log
    assert log.index("IPVA> ") < log.index(FALLBACK_LINES[0])
    assert "ETH1 IP address 192.168.1.1/24 (static)" in log
    assert re.search(r"ETH0 .*\(15ad:07b0 at ", log)  # GNS3's vmxnet3
    assert node.lan.dhcp_held > 0  # the box did ask: the LAN had no server
    # plain QEMU has no VMware counter: one line says what the box keeps time with
    assert "perfcounter-not enabled!!!" not in log
    assert re.search(r"time: KVM/QEMU: .*: keeping time from the kernel's clocksource", log)


def test_the_web_admin_answers_on_the_fallback_address(node: Node) -> None:
    node.wait_for(r"HTTP0: web admin on ", BOOT_TIMEOUT)
    url = f"http://127.0.0.1:{node.lan.http_port}/general/info"  # → 192.168.0.1:80

    def page(last_try: bool) -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return str(r.read().decode())
        except OSError:
            if last_try:
                raise
            return None

    assert FIRMWARE_VERSION in retry(page, COMMAND_TIMEOUT, what=f"{url} via 192.168.0.1")


def test_the_console_prints_utf8(node: Node) -> None:
    node.console.write(b"config change IP0\r")
    node.wait_for(r"e\.g\. config change IP0 ETH0 /", COMMAND_TIMEOUT)
    node.wait_for(r"/…\n", COMMAND_TIMEOUT)
    assert "config change IP0 ETH0 /…".encode() in node.raw
    assert b"\\u2026" not in node.raw


def test_a_dhcp_server_appearing_later_wins(node: Node) -> None:
    node.lan.allow_dhcp()
    node.wait_for(re.escape("ETH0 IP address 192.168.0.15/24 (dhcp)"), LEASE_TIMEOUT)
