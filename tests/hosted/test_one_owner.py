"""One owner for the box's state (appliance/owner.py), under load: writers on the console,
over `/!`, in the web's backup upload and in UP1 scripts, update-state writes and certificate
renewals all at once, for a fixed time; then the flash is mounted again from the disk file:
the saved config is exactly the last one written and FLASHMAN reports no damage. With a
power cut at a random write during that load: the config on the disk is one that was
written (old or new), never a mix, never damage beyond the torn tail.

Also: two firmware installs started together from two paths (one runs, the other is refused
with the reason), a reset during an install's write, and a stop with every service busy."""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from httpbox import (
    HostedHttpBox,
    _Sink,
    authed,
    challenge_for,
    digest_header,
    firmware_image,
    request,
    with_boot_disk,
)
from receivers import FirmwareServer, firmware_server, wait_for

from appliance.boot import Runtime
from appliance.config import Config
from appliance.config.store import load_from_vars
from appliance.events import ConfigWritten, Event
from appliance.flash import Flash, mount_flash
from appliance.hal.block import BlockDevice, FileBlockDevice, MemoryBlockDevice
from appliance.hal.hosted import HostedPlatform
from appliance.owner import BoxRestarting
from appliance.services.http.boxadmin import OwnedVars
from appliance.services.http.cert import CERT_KEY, PRIVATE_KEY, load_or_make

LOAD_S = 6.0  # how long every writer runs at once
RAM = 256 << 20


def remount(image: BlockDevice) -> tuple[Config, list[str]]:
    """The saved config on a flash image as the next boot reads it, and FLASHMAN's lines."""
    lines: list[str] = []
    flash = mount_flash(image, ram_bytes=RAM, trace=lines.append)
    flash.flashman.finish_mount()
    return load_from_vars(flash.vars, lines.append), lines


def damage(lines: list[str]) -> list[str]:
    return [x for x in lines if "damaged" in x or "skipped" in x or "bad" in x]


@dataclass
class Load:
    """Every writer at once, each in a thread of its own, until `stop`."""

    runtime: Runtime
    http_url: str
    files: FirmwareServer
    stop: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def _loop(self, name: str, step: Callable[[int], None]) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                step(i)
            except BoxRestarting:
                return
            except Exception as e:  # noqa: BLE001 - collected and asserted on below
                self.errors.append(f"{name}: {type(e).__name__}: {e}")
                return
            i += 1
            self.counts[name] = i

    def console(self, i: int) -> None:
        answer = self.runtime.execute(f"config change SYS0 /name console-{i}")
        assert not answer.startswith("error"), answer
        self.runtime.execute("config write")

    def web(self, i: int) -> None:
        for line in (f"config change SYS0 /name web-{i}", "config write"):
            path = "/!" + line.replace(" ", "%20")
            r = authed(self.http_url, "GET", path)
            assert r.status in (200, 400), (r.status, r.text)

    def restore(self, i: int) -> None:
        """The web admin's backup upload (PUT /cfg.txt): a whole saved config at once."""
        backup = authed(self.http_url, "GET", "/cfg.txt").text
        backup = backup.replace(
            "config change SYS0", f"config change SYS0 /location restore-{i}", 1
        )
        r = authed(self.http_url, "PUT", "/cfg.txt", backup.encode())
        assert r.status in (200, 400), (r.status, r.text)

    def scripts(self, i: int) -> None:
        """UP1: a poll now (its script writes the config and the update state)."""
        self.files.files["/script.txt"] = (
            f"config change SYS0 /name script-{i}\r\nconfig write\r\nmod cmd UP1 check ser {i}\r\n"
        ).encode()  # `check` stores UPDATE/CHECK: the update state, from the poll's thread
        self.runtime.execute("mod cmd UP1 poll")
        time.sleep(0.02)

    def update_state(self, i: int) -> None:
        """UP0: a failed fetch, remembered in UPDATE/LAST from the worker's thread."""
        self.runtime.execute(f"mod cmd UP0 prot {self.files.url('/missing.bin')} ser s{i}")
        time.sleep(0.02)

    def certificate(self, i: int) -> None:
        """A renewal: the pair dropped and made again, read and stored through the owner."""
        box = self.runtime.box
        if box is None:
            raise BoxRestarting("gone")
        vars = OwnedVars(box)
        vars.commit({CERT_KEY: None, PRIVATE_KEY: None})
        load_or_make(vars, "stress")

    def start(self) -> None:
        for name in ("console", "web", "restore", "scripts", "update_state", "certificate"):
            t = threading.Thread(target=self._loop, args=(name, getattr(self, name)), name=name)
            self.threads.append(t)
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
            assert not t.is_alive(), f"writer {t.name} did not end"


def start_box(directory: Path, mount: Callable[..., Flash] | None = None) -> tuple[Runtime, str]:
    platform = HostedPlatform(
        directory,
        stdin=io.BytesIO(b""),
        stdout=_Sink(),
        http=("127.0.0.1", 0),  # type: ignore[arg-type]
    )
    runtime = Runtime(platform, newline=b"\n", mount=mount)
    assert runtime.boot()
    box = runtime.box
    assert box is not None
    from appliance.services.http import HttpService

    http = box.service(HttpService)
    assert http is not None and http.wait_started()
    return runtime, http.urls()["http"]


def arm_up1(runtime: Runtime, files: FirmwareServer) -> None:
    files.files["/script.txt"] = b"config change SYS0 /name first\r\n"
    for line in (
        f"config change UP1 /url {files.url('/script.txt')} /poll 60",
        "config activate",
    ):
        assert not runtime.execute(line).startswith("error")


def test_every_writer_at_once_leaves_the_last_config_and_no_damage(tmp_path: Path) -> None:
    directory = with_boot_disk(tmp_path / "box")
    with firmware_server() as files:
        runtime, url = start_box(directory)
        arm_up1(runtime, files)
        load = Load(runtime, url, files)
        load.start()
        time.sleep(LOAD_S)
        load.finish()
        box = runtime.box
        assert box is not None
        runtime.close()
        # the last config written: read once the owner and every service have stopped (an
        # UP1 poll the scripts writer asked for last may still run its script after the
        # writers ended, and its config write comes last: CI saw script-241 after web-238)
        last = box.saved
    assert not load.errors, load.errors
    # every path really wrote, many times, while the others did
    print(f"rounds per writer in {LOAD_S:g} s, all at once: {load.counts}")
    paths = ("console", "web", "restore", "scripts", "update_state", "certificate")
    assert all(load.counts.get(n, 0) >= 3 for n in paths), load.counts
    with FileBlockDevice(directory / "flash.img") as dev:
        saved, lines = remount(dev)
    assert not damage(lines), lines
    assert saved.lines() == last.lines()


class CutFile:
    """The flash file behind a power cut at write number `cut_at`: that write reaches the
    disk torn (a prefix of its sectors), every later one not at all; the box goes on in
    RAM, as a VM whose disk went away would until it notices."""

    def __init__(self, dev: BlockDevice, cut_at: int, seed: int) -> None:
        self.dev = dev
        self.cut_at = cut_at
        self.rng = random.Random(seed)
        self.writes = 0
        self.cut = threading.Event()
        self.ram = bytearray(dev.read(0, dev.size))  # what the box reads back after the cut

    @property
    def size(self) -> int:
        return self.dev.size

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.ram[offset : offset + length])

    def read_strided(self, offset: int, stride: int, length: int, count: int) -> list[bytes]:
        return [self.read(offset + i * stride, length) for i in range(count)]

    def write(self, offset: int, data: bytes) -> None:
        self.ram[offset : offset + len(data)] = data
        n, self.writes = self.writes, self.writes + 1
        if n < self.cut_at:
            self.dev.write(offset, data)
        elif n == self.cut_at:
            sectors = len(data) // 512
            keep = self.rng.randint(0, max(sectors - 1, 0)) * 512
            self.dev.write(offset, data[:keep])  # torn: a prefix of its sectors
            self.cut.set()

    def flush(self) -> None:
        if not self.cut.is_set():
            self.dev.flush()

    def close(self) -> None:
        self.dev.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_power_cut_under_the_load_leaves_old_or_new(tmp_path: Path, seed: int) -> None:
    directory = with_boot_disk(tmp_path / "box")
    rng = random.Random(seed)
    cut_box: list[CutFile] = []

    def mount(dev: BlockDevice, ram_bytes: int, trace: Callable[[str], None]) -> Flash:
        assert not cut_box, "one boot only"
        mount_flash(dev, ram_bytes=ram_bytes, trace=trace)  # a blank disk gets formatted
        cut = CutFile(dev, cut_at=rng.randint(20, 400), seed=seed)
        cut_box.append(cut)
        return mount_flash(cut, ram_bytes=ram_bytes, trace=trace)

    # the configs the box stored, in order (on the owner thread, as each commit returns)
    history: list[tuple[int, Config]] = []
    with firmware_server() as files:
        runtime, url = start_box(directory, mount)
        box = runtime.box
        assert box is not None
        cut = cut_box[0]

        def on_event(event: Event) -> None:
            if isinstance(event, ConfigWritten) and box is not None:
                history.append((cut.writes, box.saved))

        box.owner.call(lambda: box.events.subscribe(on_event))
        arm_up1(runtime, files)
        load = Load(runtime, url, files)
        load.start()
        assert cut.cut.wait(60), f"the load made {cut.writes} writes, no cut at {cut.cut_at}"
        time.sleep(0.3)  # the load runs on past the cut, as the box would not know
        load.finish()
        runtime.close()
    assert not load.errors, load.errors
    with FileBlockDevice(directory / "flash.img", readonly=True) as dev:
        image = MemoryBlockDevice(dev.size)
        image.write(0, dev.read(0, dev.size))
    saved, lines = remount(image)
    assert not damage(lines), lines
    # what survived: the last config whose commit had ended before the cut, or the one
    # whose commit the cut tore (never a mix, never an older one)
    before = [c for n, c in history if n <= cut.cut_at]
    after = [c for n, c in history if n > cut.cut_at]
    candidates = [before[-1] if before else Config.factory()] + after[:1]
    assert saved.lines() in [c.lines() for c in candidates], (cut.cut_at, saved.lines())


def test_two_installs_at_once_one_runs_the_other_is_refused(tmp_path: Path) -> None:
    """An `UP0 prot` download held mid-way by the server, then an upload over HTTP: the
    upload is refused with the install under way named, and so is a second `prot`; once
    the first one has ended, an upload goes through."""
    box = HostedHttpBox(with_boot_disk(tmp_path / "box"))
    new = firmware_image("16r1sr2", 1601002)
    try:
        with firmware_server() as files:
            files.files["/ipva.bin"] = new
            files.hold_at = 1 << 16
            answer = box.console_line(f"mod cmd UP0 prot {files.url('/ipva.bin')} ser 9")
            assert "fetching" in answer, answer
            assert files.held.wait(30)
            auth = digest_header(challenge_for(box.http_url), "PUT", "/ipva.bin")
            r = request(box.http_url, "PUT", "/ipva.bin", new, {"Authorization": auth})
            assert r.status == 400, (r.status, r.text)
            assert "firmware update from http://127.0.0.1" in r.text and "under way" in r.text
            second = box.console_line(f"mod cmd UP0 prot {files.url('/ipva.bin')} ser 10")
            assert second.startswith("error:") and "under way" in second, second
            files.release.set()  # the server ends that download short: the install fails
            wait_for(lambda: box.runtime.box is not None and box.runtime.box.exclusive is None,
                     what="the install's end")  # fmt: skip
        r = authed(box.http_url, "PUT", "/ipva.bin", firmware_image("16r1sr3", 1601003))
        assert r.status == 200, (r.status, r.text)
    finally:
        box.close()


def test_a_reset_during_an_install_s_write_waits_for_it(tmp_path: Path) -> None:
    """The image verified, the slot being written: a `reset` typed then waits for the write,
    its record and UPDATE/PROT, and the box restarts with all of it."""
    box = HostedHttpBox(with_boot_disk(tmp_path / "box"))
    try:
        runtime = box.runtime
        first = runtime.box
        assert first is not None
        from appliance.services.update.service import UpdateService

        update = first.service(UpdateService)
        assert update is not None
        entered, go = threading.Event(), threading.Event()
        real = update._enter_write

        def slow_enter() -> None:
            real()  # protected from here on
            entered.set()
            go.wait(30)

        update._enter_write = slow_enter  # type: ignore[method-assign]
        with firmware_server() as files:
            files.files["/ipva.bin"] = firmware_image("16r1sr2", 1601002)
            box.console_line(f"mod cmd UP0 prot {files.url('/ipva.bin')} ser 77")
            assert entered.wait(30)
            answer = runtime.execute("reset")  # asked while the write is under way
            assert answer.startswith("reset:"), answer
            wait_for(lambda: "reset: waits for the firmware update" in box.console.text(),
                     what="the reset waiting")  # fmt: skip
            assert runtime.box is first, "the reset did not wait for the install"
            go.set()
            wait_for(lambda: runtime.box is not None and runtime.box is not first,
                     what="the restart after the install")  # fmt: skip
        text = box.console.text()
        assert text.index("written to slot B") < text.rindex("config: 0 saved objects loaded")
        assert "serial 77 is installed already" in box.console_line(
            "mod cmd UP0 prot http://127.0.0.1:9/ipva.bin ser 77"
        )
    finally:
        box.close()


def test_stop_with_every_service_busy_ends_every_thread(tmp_path: Path) -> None:
    """Close the runtime while a download is held mid-way, a poll's script waits for it,
    web requests and console lines keep coming: close returns, every thread of the box is
    gone, nothing reached the crash hook, and the flash mounts without damage."""
    directory = with_boot_disk(tmp_path / "box")
    before = set(threading.enumerate())  # other tests' boxes may have left theirs
    crashes: list[BaseException | None] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: crashes.append(args.exc_value)
    try:
        with firmware_server() as files:
            runtime, url = start_box(directory)
            files.files["/ipva.bin"] = firmware_image("16r1sr2", 1601002)
            files.hold_at = 1 << 16
            files.files["/script.txt"] = (
                f"mod cmd UP0 prot {files.url('/ipva.bin')} ser 5\r\n"
                "config change SYS0 /name after-install\r\nconfig write\r\n"
            ).encode()
            for line in (f"config change UP1 /url {files.url('/script.txt')} /poll 60",
                         "config activate"):  # fmt: skip
                runtime.execute(line)
            assert files.held.wait(30)
            load = Load(runtime, url, files)
            for name in ("console", "web"):
                t = threading.Thread(target=load._loop, args=(name, getattr(load, name)))
                load.threads.append(t)
                t.start()
            time.sleep(0.5)
            closing = threading.Thread(target=runtime.close)
            closing.start()
            closing.join(90)
            assert not closing.is_alive(), "close() did not return"
            load.finish()
            # the server still holds the download back: the stop aborted it
            names = {t.name for t in set(threading.enumerate()) - before}
            left = {n for n in names if n.startswith(("up0-", "up1-", "http-", "box-owner",
                                                      "flash-"))}  # fmt: skip
            files.release.set()
    finally:
        threading.excepthook = old_hook
    assert not left, left
    assert crashes == [], crashes
    with FileBlockDevice(directory / "flash.img") as dev:
        _, lines = remount(dev)
    assert not damage(lines), lines
