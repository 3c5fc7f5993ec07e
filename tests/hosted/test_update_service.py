"""The update service on the hosted runtime, against a real HTTP server on 127.0.0.1: UP0 prot
installs into the other slot once per serial, the next boot tries and confirms it; UP1 runs
a script once per check serial; bad downloads change nothing."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import boot
from appliance.hal.block import FileBlockDevice
from appliance.hal.bootctl import SlotState, read_boot_control
from appliance.hal.bootfiles import ImageBootFiles
from appliance.hal.hosted import HostedPlatform
from firmware import ipvabin
from images.bootdisk import make_boot_disk
from tests.receivers import FirmwareServer, firmware_server
from tests.signing import TEST_KEY, install_keyring, signing_cases


def payload(version: str) -> bytes:
    return hashlib.sha256(version.encode()).digest() * 4000


def image(version: str, build: int) -> bytes:
    return ipvabin.pack(payload(version), version, build, TEST_KEY)


@pytest.fixture
def files() -> Iterator[FirmwareServer]:
    with firmware_server() as srv:
        yield srv


@pytest.fixture
def server(files: FirmwareServer) -> str:
    return files.url("")


@pytest.fixture
def box_dir(tmp_path: Path) -> Path:
    fw = tmp_path / "IPVA.BIN"
    fw.write_bytes(image("16r1sr1", 1601001))
    make_boot_disk(tmp_path / "boot.img", {"IPVA.BIN": fw}, 1700000000, 32)
    fw.unlink()
    install_keyring(tmp_path)
    return tmp_path


class Box:
    """A hosted runtime driven line by line, its trace collected."""

    def __init__(self, directory: Path) -> None:
        self.out = io.BytesIO()
        self.runtime = boot.Runtime(HostedPlatform(directory, stdin=io.BytesIO(), stdout=self.out))
        assert self.runtime.boot()

    def __call__(self, line: str) -> str:
        return self.runtime.execute(line)

    def trace(self) -> str:
        return self.out.getvalue().decode()

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.trace():
            assert time.monotonic() < deadline, f"{text!r} not in the trace:\n{self.trace()}"
            time.sleep(0.05)

    def close(self) -> None:
        self.runtime.close()


def record(directory: Path):  # type: ignore[no-untyped-def]
    with FileBlockDevice(directory / "boot.img", readonly=True) as dev:
        return read_boot_control(dev)


def test_prot_installs_once_per_serial_and_the_next_boot_confirms(
    box_dir: Path, server: str, files: FirmwareServer
) -> None:
    new = image("16r1sr2", 1601002)
    files.files["/fw/ipva.bin"] = new
    box = Box(box_dir)
    try:
        answer = box(f"mod cmd UP0 prot {server}/fw/ipva.bin ser 2")
        assert "UP0: fetching" in answer
        box.wait_for("written to slot B (IPVA2.BIN)")
        assert b"".join(ImageBootFiles(box_dir / "boot.img").read("IPVA2.BIN")) == new
        r = record(box_dir)
        assert r is not None and (r.active, r.state, r.good) == (1, SlotState.TRIAL, 0)
        # the same serial again: nothing fetched
        time.sleep(0.2)  # the worker stores UPDATE/PROT right after the install
        again = box(f"mod cmd UP0 prot {server}/fw/ipva.bin ser 2")
        assert "serial 2 is installed already" in again
        assert files.hits == ["/fw/ipva.bin"]
        info = box("mod cmd UP0 info")
        assert 'id="B" file="IPVA2.BIN" firmware="16r1sr2 build 1601002"' in info
        assert "starts at the next reset (2 tries)" in info
        version = box("version")
        assert "slot B (IPVA2.BIN): 16r1sr2 build 1601002, starts at the next reset" in version
    finally:
        box.close()
    # the next boot "starts" slot B (hosted plays the bootcode) and it confirms itself
    box = Box(box_dir)
    try:
        box.wait_for("is confirmed: it is the known-good firmware now")
        r = record(box_dir)
        assert r is not None and (r.active, r.state, r.good) == (1, SlotState.CONFIRMED, 1)
        assert "slot A (IPVA.BIN): 16r1sr1 build 1601001, previous firmware" in box("version")
        assert "16r1sr2 build 1601002 started and confirmed" in box("version")
    finally:
        box.close()


def test_a_firmware_that_never_confirms_falls_back_by_itself(
    box_dir: Path, server: str, files: FirmwareServer
) -> None:
    files.files["/ipva.bin"] = image("16r1sr2", 1601002)
    box = Box(box_dir)
    try:
        box(f"mod cmd UP0 prot {server}/ipva.bin ser 7")
        box.wait_for("written to slot B")
    finally:
        box.close()
    # two starts of slot B that die before the update service confirms them
    for _ in range(2):
        platform = HostedPlatform(box_dir, stdin=io.BytesIO(), stdout=io.BytesIO())
        for dev in platform.open_disks().values():
            dev.close()
        assert platform.running_slot() == 1
    box = Box(box_dir)
    try:
        box.wait_for("UP0: slot B (IPVA2.BIN) (16r1sr2 build 1601002) did not start")
        r = record(box_dir)
        assert r is not None and (r.active, r.good, r.failed) == (0, 0, 1)
        assert "slot B (IPVA2.BIN): 16r1sr2 build 1601002, did not start" in box("version")
    finally:
        box.close()


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/missing.bin", None, "the server answered 404"),
        ("/junk.bin", b"<html>not firmware</html>", "not an IPVA firmware image"),
        ("/short.bin", image("16r1sr2", 1601002)[:-5], "truncated"),
        # what the keyring (the test key) did not sign
        *[
            (f"/{what.replace(' ', '-')}.bin", body, reason)
            for what, body, reason in signing_cases("16r1sr2", 1601002, payload("16r1sr2"))
        ],
    ],
    # by path: the same in every process (a foreign key's number is random; xdist workers
    # must collect the same ids)
    ids=lambda x: x if isinstance(x, str) and x.startswith("/") else "",
)
def test_a_bad_download_changes_nothing(
    box_dir: Path, server: str, files: FirmwareServer, path: str, body: bytes | None, message: str
) -> None:
    if body is not None:
        files.files[path] = body
    before = (box_dir / "boot.img").read_bytes()
    box = Box(box_dir)
    try:
        box(f"mod cmd UP0 prot {server}{path} reset 1")
        box.wait_for(message)
        box.wait_for("nothing was written")
        assert "last update: " in box("version") and message in box("mod cmd UP0 info")
        # and the same serial may be tried again: a failed update stored no serial
        assert "fetching" in box(f"mod cmd UP0 prot {server}{path} reset 1")
    finally:
        box.close()
    after = (box_dir / "boot.img").read_bytes()
    assert after == before


def test_an_unreachable_server(box_dir: Path) -> None:
    box = Box(box_dir)
    try:
        box("mod cmd UP0 prot http://127.0.0.1:9/ipva.bin reset 1")
        box.wait_for("cannot reach the server")
    finally:
        box.close()


def test_up1_runs_the_script_once_per_check_serial(
    box_dir: Path, server: str, files: FirmwareServer
) -> None:
    files.files["/up/update-ipva.htm"] = (
        b"mod cmd UP1 check ser 5\nconfig change SYS0 /name branch-7\nconfig write\n"
    )
    box = Box(box_dir)
    try:
        assert "error" not in box(f"config change UP1 /url {server}/up/ /poll 0")
        box("config activate")
        # the box's state rides along in the query (a static file server ignores it)
        box.wait_for("UP1: " + server + "/up/update-ipva.htm?PROT=1601001&BOOT=")
        box.wait_for(": ran 3 lines")
        assert "config change SYS0 /name branch-7" in box("config show saved")
        assert "serial 5 is done" in box("mod cmd UP1 check ser 5")
        box("config write")
    finally:
        box.close()
    hits = len(files.hits)
    files.files["/up/update-ipva.htm"] = (
        b"mod cmd UP1 check ser 5\nconfig change SYS0 /name other\nconfig write\n"
    )
    box = Box(box_dir)  # the saved UP1 /url polls at start; serial 5 is done: nothing runs
    try:
        deadline = time.monotonic() + 30
        while len(files.hits) == hits:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        assert "branch-7" in box("config show saved") and "other" not in box("config show saved")
        assert "up to date" in box("mod cmd UP1 info")
    finally:
        box.close()


def test_up1_script_cannot_install_what_the_keyring_did_not_sign(
    box_dir: Path, server: str, files: FirmwareServer
) -> None:
    """The update server's script (UP1) installs through UP0 prot: the same check."""
    before = (box_dir / "boot.img").read_bytes()
    cases = signing_cases("16r1sr2", 1601002, payload("16r1sr2"))
    script = "mod cmd UP1 check ser 9\n" + "".join(
        f"mod cmd UP0 prot {server}/fw{i}.bin reset {i + 1}\n" for i in range(len(cases))
    )
    files.files["/up/update-ipva.htm"] = script.encode()
    box = Box(box_dir)
    try:
        for i, (_what, body, _reason) in enumerate(cases):
            files.files[f"/fw{i}.bin"] = body
        box(f"config change UP1 /url {server}/up/ /poll 0")
        box("config activate")
        for i, (_what, _body, reason) in enumerate(cases):
            box.wait_for(f"update from {server}/fw{i}.bin failed: ")
            box.wait_for(reason)
        assert "nothing was written" in box.trace()
    finally:
        box.close()
    assert (box_dir / "boot.img").read_bytes() == before


def test_a_development_build_says_so(tmp_path: Path) -> None:
    """Signed with the public development key: the trace and `version` say so at start."""
    key = ipvabin.load_signing_key(None)
    fw, other = tmp_path / "IPVA.BIN", tmp_path / "IPVA2.BIN"
    fw.write_bytes(ipvabin.pack(payload("16r1sr1"), "16r1sr1", 1601001, key.secret))
    # slot B: put on the disk by hand, signed with a key the keyring lacks
    other.write_bytes(ipvabin.pack(payload("16r1sr2"), "16r1sr2", 1601002, TEST_KEY))
    make_boot_disk(tmp_path / "boot.img", {"IPVA.BIN": fw, "IPVA2.BIN": other}, 1700000000, 32)
    fw.unlink()
    other.unlink()
    install_keyring(tmp_path, key.secret, "development")
    box = Box(tmp_path)
    try:
        dev = "signed with the DEVELOPMENT key (public: anyone can sign for it)"
        assert f"UP0: firmware in slot A (IPVA.BIN) is {dev}" in box.trace()
        assert f"slot A (IPVA.BIN): 16r1sr1 build 1601001, running, {dev}" in box("version")
        assert f'signed="{dev}"' in box("mod cmd UP0 info")
        assert (
            f"slot B (IPVA2.BIN): 16r1sr2 build 1601002, previous firmware (the fallback if the "
            f"running one fails its check), refused by the keyring: signed with key "
            f"{TEST_KEY.keynum.hex()}, which this box does not trust"
        ) in box("version")
    finally:
        box.close()


def test_console_arguments_are_checked(box_dir: Path) -> None:
    box = Box(box_dir)
    try:
        assert "unknown final 'now'" in box("mod cmd UP0 prot http://x/ipva.bin now 1")
        assert "not an http:// or https:// URL" in box("mod cmd UP0 prot ftp://x/f reset 1")
        assert "usage: mod cmd UP0 prot" in box("mod cmd UP0 prot")
        assert "ser needs the serial" in box("mod cmd UP0 prot http://x/ipva.bin ser")
        assert "bad hour '25'" in box("mod cmd UP1 times /allow 1,25")
        assert "polls at hours 0,1,22" in box("mod cmd UP1 times /allow 22,0,1 /initial 5")
        assert 'allow="0,1,22" initial="5"' in box("mod cmd UP1 info")
        assert "no script URL" in box("mod cmd UP1 poll")
        assert "is not an http:// or https:// URL" in box("config change UP1 /url ftp://x/")
    finally:
        box.close()
