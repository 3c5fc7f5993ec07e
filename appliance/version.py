"""Firmware identity, in the innovaphone scheme (major 'r' release 'sr' service release)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PRODUCT = "IPVA"
FIRMWARE_VERSION = "16r1sr1"
BUILD = 1601001  # the box shows builds as plain numbers, e.g. IPVA[1601001]
# The build writes the firmware's identity next to this module in the payload
# (firmware/payload.py): a box updated to another ipva.bin runs that image's runtime, so it
# must learn its version from the image, not from these defaults (the host's, hosted).
STAMP_NAME = "firmware.json"
STAMP_PATH = Path(__file__).with_name(STAMP_NAME)

_VERSION_RE = re.compile(r"^(\d{1,3})r(\d{1,2})(?:sr(\d{1,3}))?$")


@dataclass(frozen=True, order=True)
class FirmwareVersion:
    """A firmware version (`16r1sr1`), ordered by major, release, service release."""

    major: int
    release: int
    service_release: int = 0

    @classmethod
    def parse(cls, text: str) -> FirmwareVersion:
        m = _VERSION_RE.match(text.strip())
        if not m:
            raise ValueError(f"not an innovaphone version (like 16r1sr1): {text!r}")
        return cls(int(m[1]), int(m[2]), int(m[3] or 0))

    def __str__(self) -> str:
        sr = f"sr{self.service_release}" if self.service_release else ""
        return f"{self.major}r{self.release}{sr}"


@dataclass(frozen=True)
class Stamp:
    """What `ipva build` stamped into this firmware's payload."""

    version: str = FIRMWARE_VERSION
    build: int = BUILD
    # test firmware only (`ipva build --fail-at-start`): the runtime exits before the box is
    # up, so it never confirms itself and the bootcode falls back (the update's VM tests)
    fail_at_start: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {"version": self.version, "build": self.build, "fail_at_start": self.fail_at_start},
            sort_keys=True,
        )


def read_stamp(path: Path | None = None) -> Stamp:
    """The payload's stamp (STAMP_PATH unless given); the defaults above where there is
    none (hosted, the source tree)."""
    try:
        raw = json.loads((path or STAMP_PATH).read_text())
    except FileNotFoundError:
        return Stamp()
    return Stamp(str(raw["version"]), int(raw["build"]), bool(raw.get("fail_at_start", False)))
