"""`/DRIVE/CF0/…` on the hosted box: the CF card's files over HTTP behind the admin login.

The card is made and filled with dosfstools and mtools before the box boots (so what the
box serves is checked against another FAT implementation's view of the same image), the
box mounts it at boot. Names are upper case or long: pyfatfs (the hosted FAT) ignores the
lower-case flags mtools sets on short names (the VM's vfat honours them)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosted.httpbox import HostedHttpBox, authed, request

LOG_TEXT = b"Dec  2 18:00:00 IPVA: config write: 3 saved objects\n" * 40
BLOB = bytes(range(256)) * 300  # binary, several clusters


def mtools(*argv: str) -> bytes:
    out = subprocess.run(list(argv), capture_output=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def box(tmp_path: Path) -> Iterator[HostedHttpBox]:
    directory = tmp_path / "box"
    directory.mkdir()
    image = directory / "cf.img"
    with image.open("wb") as f:
        f.truncate(64 << 20)
    mtools("mkfs.fat", "-n", "IPVACF", str(image))
    (tmp_path / "LOG0.0").write_bytes(LOG_TEXT)
    (tmp_path / "blob.bin").write_bytes(BLOB)
    mtools("mmd", "-i", str(image), "::/LOG")
    mtools("mcopy", "-i", str(image), str(tmp_path / "LOG0.0"), "::/LOG/LOG0.0")
    mtools("mcopy", "-i", str(image), str(tmp_path / "blob.bin"), "::/support-blob.bin")
    b = HostedHttpBox(directory)
    yield b
    b.close()


def test_the_cf_files_need_the_login(box: HostedHttpBox) -> None:
    for path in ("/DRIVE/CF0/", "/DRIVE/CF0/LOG/LOG0.0", "/DRIVE/CF0/../cfg.txt"):
        r = request(box.http_url, "GET", path)
        assert r.status == 401, path
        assert b"config write" not in r.body


def test_listing_and_files_are_what_mtools_reads(box: HostedHttpBox, tmp_path: Path) -> None:
    root = authed(box.http_url, "GET", "/DRIVE/CF0/")
    assert root.status == 200 and root.headers["Content-Type"].startswith("text/html")
    assert f">{len(BLOB)}<" in root.text  # the size column
    sub = authed(box.http_url, "GET", "/DRIVE/CF0/LOG/")
    assert re.findall(r'href="([^"]+)"', sub.text) == ["../", "LOG0.0"]
    files = {name: authed(box.http_url, "GET", f"/DRIVE/CF0/{name}")
             for name in ("LOG/LOG0.0", "support-blob.bin")}  # fmt: skip
    # a directory without its slash is sent to it (the listing's links are relative)
    r = authed(box.http_url, "GET", "/DRIVE/CF0/LOG")
    assert r.status == 301 and r.headers["Location"].endswith("/DRIVE/CF0/LOG/")
    box.close()  # mtools refuses a FAT that is mounted (pyfatfs marks it in use)
    image = str(tmp_path / "box" / "cf.img")
    links = re.findall(r'href="([^"]+)"', root.text)
    listed = mtools("mdir", "-b", "-i", image, "::/").decode().split()
    assert sorted(links) == sorted(x.removeprefix("::/") for x in listed)
    assert sorted(links) == ["LOG/", "support-blob.bin"]
    for name, answer in files.items():
        assert answer.status == 200, answer.text
        assert answer.body == mtools("mtype", "-i", image, f"::/{name}")
    assert files["support-blob.bin"].body == BLOB
    for answer in files.values():  # an HTML file on the card could not act as the admin
        assert answer.headers["Content-Security-Policy"].startswith("sandbox;")
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/DRIVE/CF0/../cfg.txt",
        "/DRIVE/CF0/LOG/../../cfg.txt",
        "/DRIVE/CF0/%2e%2e/cfg.txt",
        "/DRIVE/CF0/LOG/%2E%2E/%2E%2E/etc/passwd",
        "/DRIVE/CF0/LOG%5c..%5c..%5cetc",
        "/DRIVE/CF0/./LOG/LOG0.0",
    ],
)
def test_paths_that_leave_the_card_are_refused(box: HostedHttpBox, path: str) -> None:
    r = authed(box.http_url, "GET", path)
    assert r.status == 400, (path, r.status, r.text)
    assert r.text.startswith("error: ") and "nothing outside the compact flash" in r.text


def test_missing_files_unmounted_card_and_writes_answer_clearly(box: HostedHttpBox) -> None:
    r = authed(box.http_url, "GET", "/DRIVE/CF0/LOG/LOG9.9")
    assert r.status == 404 and r.text == "error: CF0/LOG/LOG9.9: no such file or directory\n"
    head = authed(box.http_url, "HEAD", "/DRIVE/CF0/support-blob.bin")
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == str(len(BLOB))
    r = authed(box.http_url, "PUT", "/DRIVE/CF0/new.txt", b"x")
    assert r.status == 405 and r.text.startswith("error: "), r.text
    assert box.console_line("mod cmd CF0 unmount") == "CF0 unmounted"
    r = authed(box.http_url, "GET", "/DRIVE/CF0/LOG/LOG0.0")
    assert r.status == 409 and "not mounted (mod cmd CF0 mount" in r.text
