"""What the alarm tests do with hosted boxes (tests/hosted/test_alarm*.py)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.hosted.httpbox import HostedHttpBox, authed


def cf_image(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / "cf.img"
    with image.open("wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.fat", "-n", "IPVACF", str(image)], check=True, capture_output=True)


def port_of(box: HostedHttpBox) -> int:
    return int(box.http_url.rsplit(":", 1)[1])


def lines(box: HostedHttpBox, *lines: str) -> None:
    for line in lines:
        out = box.console_line(line)
        assert "error" not in out, (line, out)


def events(box: HostedHttpBox) -> ET.Element:
    r = authed(box.http_url, "GET", "/ALARM0/events.xml")
    assert r.status == 200, r.text
    return ET.fromstring(r.body)


def info(box: HostedHttpBox) -> ET.Element:
    return ET.fromstring(box.console_line("mod cmd ALARM0 info"))
