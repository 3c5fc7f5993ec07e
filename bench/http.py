"""The HTTP admin: requests/s hosted, and what it costs in RAM in a 128 MiB guest.

Hosted (127.0.0.1, one keep-alive client thread, REQUESTS requests each, median of RUNS):
    floor            the same cheroot listener (same limits) serving a static "ok"
    box_info.xml     /CMD0/box_info.xml (no login)
    config show      /!config show, logged in with Digest SHA-256 (a new nc per request)
The ratio floor/endpoint is what our application (routing, login, the box) costs on top of
cheroot on this machine today.

VM (128 MiB, vmware profile, TCG): free memory at the prompt (`mod cmd MEM info` free=,
the kernel's MemAvailable) with HTTP+HTTPS on (factory config), then with both listeners
off (HTTP0 /port 0 /https-port 0, written, reset: the HTTP stack is not even imported);
the difference is the admin's RAM cost. Both boots in the same run, same image.
"""

from __future__ import annotations

import http.client
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REQUESTS = 400
RUNS = 3
VM_RAM_MIB = 128


def _ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


def _rate(port: int, path: str, header: Any = None) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.perf_counter()
    for i in range(REQUESTS):
        conn.request("GET", path, headers=header(i) if header else {})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, (path, r.status)
    elapsed = time.perf_counter() - t0
    conn.close()
    return REQUESTS / elapsed


def bench_hosted() -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "hosted"))
    from httpbox import HostedHttpBox, challenge_for, digest_header

    from appliance.services.http.listen import Bind
    from appliance.services.http.server import Listener

    with tempfile.TemporaryDirectory(prefix="ipva-bench-http-") as tmp:
        box = HostedHttpBox(Path(tmp) / "box")
        floor = Listener(Bind("127.0.0.1", 0), _ok_app)
        floor.start()
        try:
            port = int(box.http_url.rsplit(":", 1)[1])
            path = "/!config%20show"
            results: dict[str, list[float]] = {"floor": [], "box_info": [], "config show": []}
            for _ in range(RUNS):
                results["floor"].append(_rate(floor.port, "/"))
                results["box_info"].append(_rate(port, "/CMD0/box_info.xml"))
                ch = challenge_for(box.http_url)  # one nonce, nc counting up, as browsers do
                results["config show"].append(
                    _rate(
                        port,
                        path,
                        lambda i, ch=ch: {
                            "Authorization": digest_header(ch, "GET", path, nc=i + 1, cnonce="b")
                        },
                    )
                )
        finally:
            floor.stop()
            box.close()
    base = statistics.median(results["floor"])
    print(f"hosted, {REQUESTS} requests x {RUNS} runs, one keep-alive client (median req/s)")
    print(f"{'endpoint':<34}{'req/s':>9}{'vs floor':>10}")
    for name, label in (
        ("floor", 'static "ok" (cheroot floor)'),
        ("box_info", "/CMD0/box_info.xml"),
        ("config show", "/!config show (Digest SHA-256)"),
    ):
        rate = statistics.median(results[name])
        print(f"{label:<34}{rate:>9.0f}{rate / base:>9.2f}x")


def _free_kib(machine: Any) -> int:
    out = machine.command("mod cmd MEM info")
    m = re.search(r"free=(\d+)k", out)
    if not m:
        raise RuntimeError(f"no free= in mod cmd MEM info: {out!r}")
    return int(m[1])


def bench_vm() -> None:
    from hypervisors.qemu.machine import Machine
    from hypervisors.qemu.profiles import dist_disks, get_profile

    dist = Path(__file__).parents[1] / "dist"
    disks = dist_disks(dist)
    if not all(d.exists() for d in disks):
        print("VM part skipped: no dist/ (run ipva build)")
        return
    profile = get_profile("vmware", ram_mib=VM_RAM_MIB)
    with (
        tempfile.TemporaryDirectory(prefix="ipva-bench-http-vm-") as tmp,
        Machine(profile, disks, Path(tmp)) as m,
    ):
        m.start()
        m.wait_for_prompt()
        time.sleep(5)  # let the boot's last allocations settle
        with_http = _free_kib(m)
        for line in ("config change HTTP0 /port 0 /https-port 0", "config write"):
            m.command(line)
        m.send_line("reset")
        m.wait_for_console("reset: restarting")
        m.wait_for_prompt()
        time.sleep(5)
        without = _free_kib(m)
    print(f"\nVM {VM_RAM_MIB} MiB, free memory at the prompt (MemAvailable)")
    print(f"  HTTP+HTTPS on   {with_http / 1024:7.1f} MiB")
    print(f"  both off        {without / 1024:7.1f} MiB")
    print(f"  the admin costs {(without - with_http) / 1024:7.1f} MiB")


def main() -> None:
    bench_hosted()
    bench_vm()
