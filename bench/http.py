"""The HTTP admin: requests/s hosted, and what it costs in RAM in a 128 MiB guest.

Hosted (127.0.0.1, one keep-alive client thread, REQUESTS requests each, median of RUNS,
each run a fresh process):
    floor            the same cheroot listener (same limits) serving a static "ok"
    box_info.xml     /CMD0/box_info.xml (no login)
    config show      /!config show, logged in with Digest SHA-256 (a new nc per request)
    console          a console line's latency, idle and while LOAD_THREADS web clients
                     (half /!config show, half box_info.xml) keep the box's owner busy
With IPVA_BENCH_HTTP_BASELINE=<git rev> the same measurement runs, interleaved, against
that revision's appliance (a worktree under .cache/): the table gets a this/baseline column.

VM (128 MiB, vmware profile, TCG): free memory at the prompt (`mod cmd MEM info` free=,
the kernel's MemAvailable) with HTTP+HTTPS on (factory config), then with both listeners
off (HTTP0 /port 0 /https-port 0, written, reset: the HTTP stack is not even imported);
the difference is the admin's RAM cost. Both boots in the same run, same image.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REQUESTS = 400
RUNS = 3
CONSOLE_LINES = 60
LOAD_THREADS = 4
VM_RAM_MIB = 128


def _ok_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


def _rate(port: int, path: str, header: Any = None, n: int = REQUESTS) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    t0 = time.perf_counter()
    for i in range(n):
        conn.request("GET", path, headers=header(i) if header else {})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, (path, r.status)
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def measure() -> dict[str, float]:
    """One hosted box, this process: requests/s of each endpoint, then the console's
    latency idle and while LOAD_THREADS web clients keep the box busy."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "hosted"))
    from httpbox import HostedHttpBox, challenge_for, digest_header

    from appliance.services.http.listen import Bind
    from appliance.services.http.server import Listener

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ipva-bench-http-") as tmp:
        box = HostedHttpBox(Path(tmp) / "box")
        floor = Listener(Bind("127.0.0.1", 0), _ok_app)
        floor.start()
        try:
            port = int(box.http_url.rsplit(":", 1)[1])
            path = "/!config%20show"
            ch = challenge_for(box.http_url)  # one nonce, nc counting up, as browsers do
            nc = iter(range(1, 1 << 30))

            def authed(i: int) -> dict[str, str]:
                return {"Authorization": digest_header(ch, "GET", path, nc=next(nc), cnonce="b")}

            out["floor"] = _rate(floor.port, "/")
            out["box_info"] = _rate(port, "/CMD0/box_info.xml")
            out["config show"] = _rate(port, path, authed)
            out["console idle ms"] = _console_ms(box.runtime)
            stop = threading.Event()
            served = [0]
            failed: list[BaseException] = []

            def client(endpoint: str) -> None:
                mine = challenge_for(box.http_url)  # its own nonce and nc, as a browser's
                count = iter(range(1, 1 << 30))

                def header(i: int) -> dict[str, str]:
                    auth = digest_header(mine, "GET", path, nc=next(count), cnonce="c")
                    return {"Authorization": auth}

                try:
                    while not stop.is_set():
                        _rate(port, endpoint, header if endpoint == path else None, n=20)
                        served[0] += 20
                except BaseException as e:  # said below: the figures would mean nothing
                    failed.append(e)

            clients = [
                threading.Thread(target=client, args=(p,), daemon=True)
                for p in [path, "/CMD0/box_info.xml"] * (LOAD_THREADS // 2)
            ]
            t0 = time.perf_counter()
            for c in clients:
                c.start()
            while served[0] < 20 * len(clients) and not failed:  # all of them going
                time.sleep(0.01)
            out["console loaded ms"] = _console_ms(box.runtime)
            stop.set()
            for c in clients:
                c.join(30)
            if failed:
                raise RuntimeError(f"a web client failed: {failed[0]!r}")
            out["web under load"] = served[0] / (time.perf_counter() - t0)
        finally:
            floor.stop()
            box.close()
    return out


def _console_ms(runtime: Any, n: int = CONSOLE_LINES) -> float:
    """Median milliseconds of a console line (`mod cmd TRACE show 1`) as typed."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        runtime.execute("mod cmd TRACE show 1")
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _measure_in(code: Path | None) -> dict[str, float]:
    """measure() in a fresh process, with the appliance of `code` (None: this checkout)."""
    here = Path(__file__).resolve()
    env = dict(os.environ)
    paths = [str(code)] if code is not None else [str(here.parents[1])]
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    # run_path: this file as __main__ without its folder on sys.path (bench/http.py would
    # hide the standard library's http package)
    run = (
        "import runpy, sys; sys.argv[1:] = ['--measure']; "
        f"runpy.run_path({str(here)!r}, run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", run], env=env, capture_output=True, text=True,
        timeout=600, cwd=paths[0], check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"measure in {paths[0]} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _baseline_checkout(rev: str) -> Path:
    """A worktree of `rev` (kept under .cache/, made once)."""
    repo = Path(__file__).parents[1]
    sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev],
                         capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    where = repo / ".cache" / f"bench-http-{sha}"
    if not (where / "appliance").is_dir():
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(where), sha],
                       check=True, capture_output=True)  # fmt: skip
    return where


def bench_hosted() -> None:
    rev = os.environ.get("IPVA_BENCH_HTTP_BASELINE")
    kinds: dict[str, Path | None] = {"this": None}
    if rev:
        kinds[f"baseline {rev}"] = _baseline_checkout(rev)
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for _ in range(RUNS):  # interleaved, so a drift of the machine hits both alike
        for kind, code in kinds.items():
            runs[kind].append(_measure_in(code))
    rows = [
        ("floor", 'static "ok" (cheroot floor), req/s'),
        ("box_info", "/CMD0/box_info.xml, req/s"),
        ("config show", "/!config show (Digest), req/s"),
        ("console idle ms", "console line, idle, ms"),
        ("console loaded ms", f"console line, {LOAD_THREADS} web clients, ms"),
        ("web under load", f"{LOAD_THREADS} web clients together, req/s"),
    ]
    print(f"hosted, {REQUESTS} requests a rate, {CONSOLE_LINES} console lines, {RUNS} runs "
          "(median; each run a fresh process, kinds interleaved)")  # fmt: skip
    head = "".join(f"{k:>22}" for k in kinds)
    print(f"{'':<44}{head}" + ("     this/baseline" if rev else ""))
    for key, label in rows:
        values = [statistics.median(r[key] for r in runs[k]) for k in kinds]
        cells = "".join(f"{v:>22.1f}" for v in values)
        ratio = f"{values[0] / values[1]:>18.2f}" if rev and values[1] else ""
        print(f"{label:<44}{cells}{ratio}")


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


if __name__ == "__main__" and sys.argv[1:] == ["--measure"]:
    print(json.dumps(measure()))
