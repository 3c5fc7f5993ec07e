"""Firmware upload over HTTP, hosted on 127.0.0.1: `PUT /ipva.bin` (curl -T) and the
Maintenance/Upload form install into the other slot, a reset starts it, box_info.xml,
General/Info and `version` show both slots; every bad upload leaves the boot disk as it was."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpbox import (
    PASSWORD,
    USER,
    HostedHttpBox,
    authed,
    challenge_for,
    digest_header,
    firmware_image,
    request,
    stand_in_payload,
    with_boot_disk,
)
from test_http import curl, needs_curl

from appliance.formats.ipvabin import HEADER_SIZE, Header
from appliance.hal.block import FileBlockDevice
from appliance.hal.bootctl import BootControl, SlotState, read_boot_control
from appliance.hal.bootfiles import ImageBootFiles
from appliance.services.http.firmware import MAX_FORM, MAX_PUT
from appliance.services.update.install import MAX_IMAGE
from tests.signing import signing_cases

SR2 = firmware_image("16r1sr2", 1601002)
BOUNDARY = "----ipva-fw-test"


@pytest.fixture
def box(tmp_path: Path) -> Iterator[HostedHttpBox]:
    b = HostedHttpBox(with_boot_disk(tmp_path / "box"))
    yield b
    b.close()


def boot_img(box: HostedHttpBox) -> bytes:
    return (box.directory / "boot.img").read_bytes()


def record(box: HostedHttpBox) -> BootControl:
    path = box.directory / "boot.img"
    with FileBlockDevice(path, readonly=True) as dev:
        rec = read_boot_control(dev)
    assert rec is not None
    return rec


def box_info(box: HostedHttpBox) -> ET.Element:
    r = request(box.http_url, "GET", "/CMD0/box_info.xml")
    assert r.status == 200
    fw = ET.fromstring(r.body).find("sys/firmware")
    assert fw is not None
    return fw


def slots(box: HostedHttpBox) -> dict[str, dict[str, str]]:
    return {s.get("id", ""): dict(s.attrib) for s in box_info(box).findall("slot")}


def form(image: bytes, *, reset: bool = False, filename: str = "ipva.bin") -> tuple[bytes, dict]:
    """The Upload page's firmware form as a browser sends it (the checkbox after the file)."""
    parts = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="firmware"; '
        f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode() + image
    if reset:
        parts += (
            f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="reset"\r\n\r\nyes'
        ).encode()
    body = parts + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def read_all(s: socket.socket) -> bytes:
    """The answer up to the server's close (these answers end with Connection: close)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def wait_for_new_box(box: HostedHttpBox, before: object) -> None:
    deadline = time.monotonic() + 30
    while box.runtime.box is before or box.runtime.box is None:
        assert time.monotonic() < deadline, "the box did not reset"
        time.sleep(0.05)


def wait_trace(box: HostedHttpBox, text: str) -> None:
    deadline = time.monotonic() + 30
    while text not in box.console.text():
        assert time.monotonic() < deadline, f"{text!r} not in the trace:\n{box.console.text()}"
        time.sleep(0.05)


# -- good uploads ------------------------------------------------------------------------


def test_put_installs_into_the_other_slot_and_a_reset_starts_it(box: HostedHttpBox) -> None:
    assert slots(box)["A"] == {
        "id": "A", "file": "IPVA.BIN", "version": "16r1sr1", "build": "1601001",
        "state": "confirmed", "running": "true", "signed": "signed (test)",
    }  # fmt: skip
    assert slots(box)["B"]["state"] == "empty" and box_info(box).get("running") == "A"
    r = authed(box.http_url, "PUT", "/ipva.bin", SR2)
    assert r.status == 200, r.text
    assert "firmware 16r1sr2 build 1601002 written to slot B (IPVA2.BIN)" in r.text
    assert "reset the box to start it" in r.text
    assert b"".join(ImageBootFiles(box.directory / "boot.img").read("IPVA2.BIN")) == SR2
    rec = record(box)
    assert (rec.active, rec.state, rec.good) == (1, SlotState.TRIAL, 0)
    # visible everywhere: box_info.xml, General/Info, version
    assert slots(box)["B"] == {
        "id": "B", "file": "IPVA2.BIN", "version": "16r1sr2", "build": "1601002",
        "state": "trial", "running": "false", "signed": "signed (test)",
    }  # fmt: skip
    assert "into slot B: waiting for a reset" in box_info(box).get("last-update", "")
    info = request(box.http_url, "GET", "/general/info").text
    assert '<tr id="slot-B"><td>B</td><td>IPVA2.BIN</td>' in info
    assert "starts at the next reset (2 tries)" in info and "waiting for a reset" in info
    version = box.console_line("version")
    assert "slot A (IPVA.BIN): 16r1sr1 build 1601001, running" in version
    assert "slot B (IPVA2.BIN): 16r1sr2 build 1601002, starts at the next reset" in version
    assert "UP0: firmware 16r1sr2 build 1601002 written to slot B" in box.console.text()

    box.console_line("config change SYS0 /name kept")
    box.console_line("config write")
    box.console_line("reset")  # the hosted boot plays the bootcode: slot B on trial
    assert box_info(box).get("running") == "B"
    wait_trace(box, "is confirmed: it is the known-good firmware now")
    assert slots(box)["B"]["state"] == "confirmed" and slots(box)["B"]["running"] == "true"
    assert slots(box)["A"]["state"] == "previous"
    assert "16r1sr2 build 1601002 started and confirmed" in box_info(box).get("last-update", "")
    assert "config change SYS0 /name kept" in box.console_line("config show")

    # and back down to sr1, with ?reset: into slot A, started at once
    before = box.runtime.box
    sr1 = firmware_image("16r1sr1", 1601001, payload_size=99_000)
    r = authed(box.http_url, "PUT", "/ipva.bin?reset", sr1)
    assert r.status == 200 and "written to slot A (IPVA.BIN)" in r.text, r.text
    assert "resetting now" in r.text
    wait_for_new_box(box, before)
    assert box.runtime.platform.running_slot() == 0
    assert "config change SYS0 /name kept" in box.console_line("config show")


@needs_curl
def test_curl_digest_put_as_the_readme_says(box: HostedHttpBox, tmp_path: Path) -> None:
    f = tmp_path / "ipva.bin"
    f.write_bytes(SR2)
    # `-T file http://box/` puts to /ipva.bin: curl appends the file's name
    r = curl("--digest", "-u", f"{USER}:{PASSWORD}", "-T", str(f), f"{box.http_url}/")
    assert r.returncode == 0 and "written to slot B (IPVA2.BIN)" in r.stdout, r
    assert slots(box)["B"]["version"] == "16r1sr2"
    r = curl("-f", "--digest", "-u", f"{USER}:wrong", "-T", str(f), f"{box.http_url}/ipva.bin")
    assert r.returncode != 0


def test_the_upload_form_installs_and_its_checkbox_resets(box: HostedHttpBox) -> None:
    page = authed(box.http_url, "GET", "/maintenance/upload")
    assert 'action="/maintenance/upload/firmware?csrf=' in page.text
    assert 'name="firmware"' in page.text
    body, hdr = form(SR2, reset=False)
    r = authed(box.http_url, "POST", "/maintenance/upload/firmware", body, headers=hdr)
    assert r.status == 200 and "written to slot B (IPVA2.BIN)" in r.text, r.text
    assert "reset the box to start it" in r.text and "<h1>Maintenance / Upload</h1>" in r.text
    assert box.runtime.platform.running_slot() == 0

    before = box.runtime.box
    body, hdr = form(firmware_image("16r1sr2", 1601002, payload_size=77_000), reset=True)
    r = authed(box.http_url, "POST", "/maintenance/upload/firmware", body, headers=hdr)
    assert r.status == 200 and 'id="resetting"' in r.text, r.text
    wait_for_new_box(box, before)
    assert box.runtime.platform.running_slot() == 1


# -- the login, methods, the size limit --------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("PUT", "/ipva.bin", SR2), ("POST", "/ipva.bin", SR2),
     ("POST", "/maintenance/upload/firmware", form(SR2)[0])],
)  # fmt: skip
def test_no_upload_without_the_login(
    box: HostedHttpBox, method: str, path: str, body: bytes
) -> None:
    before = boot_img(box)
    r = request(box.http_url, method, path, body, form(SR2)[1])
    assert r.status == 401
    r = authed(box.http_url, method, path, body, password="wrong", headers=form(SR2)[1])
    assert r.status == 401
    assert boot_img(box) == before


def test_wrong_methods(box: HostedHttpBox) -> None:
    assert request(box.http_url, "GET", "/ipva.bin").status == 405
    assert request(box.http_url, "DELETE", "/ipva.bin").status == 405
    assert request(box.http_url, "GET", "/maintenance/upload/firmware").status == 405
    assert authed(box.http_url, "GET", "/ipva.bin").status == 405


def test_oversize_by_content_length_is_refused_before_the_body(box: HostedHttpBox) -> None:
    before = boot_img(box)
    host, port = box.http_url.split("://")[1].split(":")
    for method, path, limit in (
        ("PUT", "/ipva.bin", MAX_PUT),
        ("POST", "/maintenance/upload/firmware", MAX_FORM),
    ):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {limit + 1}\r\n"
            s.sendall(head.encode() + b"\r\nIPVABIN\x1a")  # no body follows: answered at once
            answer = read_all(s)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert b"the most for a firmware image" in answer
        assert f"{limit + 1} bytes, more than the {limit}" in box.console.text()
    assert boot_img(box) == before


def raw_put(box: HostedHttpBox, rest: bytes) -> socket.socket:
    """A logged-in `PUT /ipva.bin` written by hand: `rest` is the headers' end and the body."""
    auth = digest_header(challenge_for(box.http_url), "PUT", "/ipva.bin")
    host, port = box.http_url.split("://")[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(
        f"PUT /ipva.bin HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n".encode() + rest
    )
    return s


def test_a_body_without_content_length_is_411(box: HostedHttpBox) -> None:
    with raw_put(box, b"Transfer-Encoding: chunked\r\n\r\n4\r\nIPVA\r\n0\r\n\r\n") as s:
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 411 ") and b"Content-Length" in answer, answer


# -- bad images: a clear error, the boot disk unchanged ----------------------------------


def _oversize_header() -> bytes:
    fields = {"flags": 0, "build": 1601009, "version": "16r1sr9", "header_version": 2,
              "payload_length": MAX_IMAGE, "payload_sha256": "0" * 64}  # fmt: skip
    header = Header.build({"checked": {"body": {"value": fields}}, "signature": ""})
    return header.ljust(HEADER_SIZE, b"\0")


def _corrupt() -> bytes:
    bad = bytearray(SR2)
    bad[HEADER_SIZE + 1000] ^= 0xFF
    return bytes(bad)


BAD_IMAGES = [
    ("truncated", SR2[:-1000], "truncated: "),
    ("header only", SR2[:HEADER_SIZE], "truncated: 4096 bytes"),
    ("corrupt", _corrupt(), "checksum wrong! Loading failed for image=IPVA    BIN"),
    ("foreign", b"\x7fELF" + bytes(200_000), "not an IPVA firmware image (no IPVABIN magic)"),
    # refused at its first bytes, 24 MB still to come: the box reads them away so that the
    # client gets the answer (a closed connection would reset the client's send)
    ("foreign large", b"\x7fELF" + bytes(24 << 20), "not an IPVA firmware image"),
    ("oversize", _oversize_header() + bytes(100_000), "more than the 33554432 a firmware slot"),
    ("trailing", SR2 + b"extra", "trailing data after the"),
    ("empty", b"", "0 bytes, too short for a header"),
    # the keyring (the test key) did not sign these: refused at the header, with the reason
    *signing_cases("16r1sr2", 1601002, stand_in_payload("16r1sr2")),
]


@pytest.mark.parametrize(("what", "image", "message"), BAD_IMAGES, ids=[b[0] for b in BAD_IMAGES])
@pytest.mark.parametrize("way", ["put", "form"])
def test_a_bad_image_is_refused_and_the_boot_disk_is_unchanged(
    box: HostedHttpBox, way: str, what: str, image: bytes, message: str
) -> None:
    before = boot_img(box)
    if way == "put":
        r = authed(box.http_url, "PUT", "/ipva.bin", image)
        assert r.status == 400 and r.text.startswith("error: "), r.text
    else:
        body, hdr = form(image, reset=True)
        r = authed(box.http_url, "POST", "/maintenance/upload/firmware", body, headers=hdr)
        assert r.status == 400 and 'class="error" id="result"' in r.text, r.text
    assert message in r.text and "nothing was written" in r.text, r.text
    assert "failed: " in box.console.text() and message in box.console.text()
    assert message in box_info(box).get("last-update", "")
    assert boot_img(box) == before  # slots and the boot-control record
    assert box.runtime.platform.running_slot() == 0


def test_form_mistakes(box: HostedHttpBox) -> None:
    before = boot_img(box)
    body, hdr = form(b"", filename="")  # Upload pressed with no file chosen
    r = authed(box.http_url, "POST", "/maintenance/upload/firmware", body, headers=hdr)
    assert r.status == 400 and "choose the firmware file (ipva.bin) first" in r.text
    r = authed(box.http_url, "POST", "/maintenance/upload/firmware", SR2,
               headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert r.status == 400 and "multipart/form-data" in r.text
    part = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="firmware"; filename="a.bin"'
            "\r\n\r\n"
        ).encode()
        + SR2
        + b"\r\n"
    )
    two = part + part.replace(b"a.bin", b"b.bin") + f"--{BOUNDARY}--\r\n".encode()
    r = authed(box.http_url, "POST", "/maintenance/upload/firmware", two, headers=hdr)
    assert r.status == 400 and "one firmware file per upload" in r.text, r.text
    assert boot_img(box) == before


def test_an_upload_that_breaks_off_writes_nothing(box: HostedHttpBox) -> None:
    before = boot_img(box)
    with raw_put(box, f"Content-Length: {len(SR2)}\r\n\r\n".encode() + SR2[: len(SR2) // 2]):
        wait_trace(box, "UP0: receiving firmware from ipva.bin")
    wait_trace(box, f"the upload broke off after {len(SR2) // 2} of {len(SR2)} bytes")
    wait_trace(box, "nothing was written")
    assert boot_img(box) == before


# -- one copy of the image, and none during a reset ----------------------------------------

_OPENS: list[str] = []
_WATCHED: list[str] = []
_HOOKED: list[bool] = []


def _audit(event: str, args: tuple) -> None:
    """Files opened in the watched directory (the open event, any mode)."""
    if event == "open" and _WATCHED and isinstance(args[0], (str, os.PathLike)):
        path = os.fspath(args[0])
        if isinstance(path, str) and path.startswith(_WATCHED[0]):
            _OPENS.append(path)


@pytest.mark.parametrize("way", ["put", "form"])
def test_the_image_is_spooled_once(
    box: HostedHttpBox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """Temp files are RAM in the guest (tmpfs): the installer's spool (one directory of
    pieces) must be the only one. Werkzeug's own form parsing would spool the file first (a
    second copy)."""
    if not _HOOKED:
        sys.addaudithook(_audit)  # process-wide, for good; inert unless a directory is watched
        _HOOKED.append(True)
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    big = firmware_image("16r1sr2", 1601002, payload_size=3 << 20)
    body, hdr = form(big) if way == "form" else (big, {})
    path = "/maintenance/upload/firmware" if way == "form" else "/ipva.bin"
    _OPENS.clear()
    _WATCHED[:] = [str(spool)]
    try:
        r = authed(box.http_url, "PUT" if way == "put" else "POST", path, body, headers=hdr)
    finally:
        _WATCHED.clear()
    assert r.status == 200 and "written to slot B" in r.text, r.text
    spools = {Path(p).relative_to(spool).parts[0] for p in _OPENS}
    assert len(spools) == 1 and spools.pop().startswith("ipva-update-"), _OPENS
    assert len(_OPENS) > 3, _OPENS  # its pieces (1 MiB each) were seen


class _Slow(http.server.BaseHTTPRequestHandler):
    """An update server that sends the first bytes of ipva.bin, then waits for `go`."""

    started = threading.Event()
    go = threading.Event()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Length", str(len(SR2)))
        self.end_headers()
        self.wfile.write(SR2[:8192])
        self.wfile.flush()
        type(self).started.set()
        type(self).go.wait(30)
        try:
            self.wfile.write(SR2[8192:])
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def test_an_upload_during_a_reset_is_503_and_writes_nothing(box: HostedHttpBox) -> None:
    """The reset waits (≤ 5 s) for an `UP0 prot` download still under way; an upload
    arriving meanwhile is answered 503 at once, and neither of them writes."""
    _Slow.started.clear()
    _Slow.go.clear()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    before_img = boot_img(box)
    before = box.runtime.box
    auth = digest_header(challenge_for(box.http_url), "PUT", "/ipva.bin")
    url = box.http_url
    try:
        fetch = f"http://127.0.0.1:{srv.server_address[1]}/ipva.bin"
        assert "fetching" in box.console_line(f"mod cmd UP0 prot {fetch} reset 3")
        assert _Slow.started.wait(30)
        resetting = threading.Thread(target=box.console_line, args=("reset",), daemon=True)
        resetting.start()
        deadline = time.monotonic() + 5
        while request(url, "GET", "/general/info").status != 503:  # the restart has begun
            assert time.monotonic() < deadline, "the reset did not begin"
        r = request(url, "PUT", "/ipva.bin", SR2, {"Authorization": auth})
        assert r.status == 503 and "restarting" in r.text, (r.status, r.text)
        assert r.headers["Retry-After"] == "5"
    finally:
        _Slow.go.set()
        srv.shutdown()
        srv.server_close()
    resetting.join(30)
    wait_for_new_box(box, before)
    wait_trace(box, "stopped: the box is restarting; nothing was written")
    assert boot_img(box) == before_img
    assert slots(box)["B"]["state"] == "empty"


def test_the_form_parser_never_holds_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 MiB through the streaming form parser: Python's heap never holds more than a few
    chunks of it (tracemalloc's peak), whatever the file's size."""
    import tracemalloc

    from appliance.services.http.firmware import CHUNK, FirmwareForm, body_chunks

    body, _ = form(b"", reset=True)
    sep = b"\r\n--" + BOUNDARY.encode()
    head, tail = body.split(sep, 1)
    size = 8 << 20
    piece = bytes(range(256)) * (CHUNK // 256)

    class Body(io.RawIOBase):
        """head, 8 MiB of file, tail, produced on demand (never in memory at once)."""

        def __init__(self) -> None:
            self.parts = iter([head, *([piece] * (size // CHUNK)), sep + tail])
            self.rest = b""

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            while len(self.rest) < n:
                nxt = next(self.parts, None)
                if nxt is None:
                    break
                self.rest += nxt
            out, self.rest = self.rest[:n], self.rest[n:]
            return out

    total = len(head) + size + len(sep) + len(tail)
    tracemalloc.start()
    try:
        f = FirmwareForm(body_chunks(Body(), total), BOUNDARY.encode())  # type: ignore[arg-type]
        assert f.open() == "ipva.bin"
        got = 0
        digest = hashlib.sha256()
        for chunk in f.chunks():
            got += len(chunk)
            digest.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == size and f.fields == {"reset": "yes"}
    assert digest.hexdigest() == hashlib.sha256(piece * (size // CHUNK)).hexdigest()
    assert peak < 1 << 20, peak  # < 1 MiB for an 8 MiB file


@pytest.mark.parametrize("way", ["put", "form"])
def test_a_refused_upload_is_read_away_in_chunks_not_at_once(
    box: HostedHttpBox, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """cheroot reads the rest of a body the app left in one read (all of it in RAM): the
    app reads a refused image's rest itself, a chunk at a time, and the client still gets
    the answer."""
    import cheroot.server

    from appliance.services.http.firmware import CHUNK

    reads: list[int] = []
    real = cheroot.server.KnownLengthRFile.read

    def read(self: cheroot.server.KnownLengthRFile, size: int | None = None) -> bytes:
        data = real(self, size)
        reads.append(len(data))
        return data

    monkeypatch.setattr(cheroot.server.KnownLengthRFile, "read", read)
    image = b"\x7fELF" + bytes(12 << 20)
    if way == "put":
        r = authed(box.http_url, "PUT", "/ipva.bin", image, timeout=60)
    else:
        body, hdr = form(image)
        r = authed(box.http_url, "POST", "/maintenance/upload/firmware", body, headers=hdr,
                   timeout=60)  # fmt: skip
    assert r.status == 400 and "not an IPVA firmware image" in r.text, r.text
    assert sum(reads) >= len(image) and max(reads) <= CHUNK, max(reads)
