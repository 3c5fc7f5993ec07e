"""Firmware identity, in the innovaphone scheme (major 'r' release 'sr' service release)."""

from __future__ import annotations

import re
from dataclasses import dataclass

PRODUCT = "IPVA"
FIRMWARE_VERSION = "16r1sr1"
BUILD = 1601001  # the box shows builds as plain numbers, e.g. IPVA[1601001]

_VERSION_RE = re.compile(r"^(\d{1,3})r(\d{1,2})(?:sr(\d{1,3}))?$")


@dataclass(frozen=True, order=True)
class FirmwareVersion:
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
