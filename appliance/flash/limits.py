"""FLASHMAN0's sizes, how the flash area is shared out among the owners, and its errors.

Sizes (from the seed, ipva-concept.wiki)
----------------------------------------
- Segment 64 KiB. A blank disk is formatted with a 64 MiB flash area (1024 segments; the
  100 MB disk exists only because VMware cannot make smaller disks); ``reset all`` formats the
  whole disk, at most 512 MiB (8192 segments).
- ``RESERVE`` = 113 segments (or a ninth of a small flash) belong to no owner's maximum; they
  are FLASHMAN's spare and compaction headroom. With VARS' configured 10 this makes the
  FLASHDIR request on a standard 64 MiB flash 1024 - 113 - 10 = 901, the seed's
  ``fdir: segments=901->224(14.0MB)``. (The seed's 512 MiB example shows ``configured 8079``
  = 8192 - 113, i.e. without VARS' 10; we keep one rule and get 8069 there.)
- RAM rule: the seed says the flash content is held three times in RAM at start-up
  (flash manager, flash directory, PBX), so FLASHDIR is granted
  ``(ram - RAM_BASE) // (3 * 64 KiB) - VARS maximum`` segments at most, where
  ``RAM_BASE`` = 18 MiB is what the runtime needs for itself. With the seed's
  ``mem(64946176)=61.93MB`` this gives (64946176 - 18 MiB) // 192 KiB - 10 = 224 -> the
  seed's ``901->224(14.0MB)``; the full 901 needs >= 188.6 MiB, i.e. a 192 MB VM after the
  VMM's share, matching "900 segments at 192MB or more". An owner that already owns more
  segments than granted (RAM was reduced) keeps all its data but cannot grow.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.flash.format import HEADER_AREA, SEGMENT_SIZE

KiB = 1024
MiB = 1024 * KiB
SEG = SEGMENT_SIZE
USABLE = SEG - HEADER_AREA
STANDARD_AREA = 64 * MiB
MAX_AREA = 512 * MiB
MIN_SEGMENTS = 16
RESERVE = 113
VARS_CONFIGURED = 10
RAM_BASE = 18 * MiB
RAM_COPIES = 3
SPARE = 1


class FlashError(Exception):
    """Base of the flash errors; the message is fit for the console."""


class WrongDiskError(FlashError):
    """The flash disk holds something that is neither blank nor FLASHMAN."""


class FlashFullError(FlashError):
    """An owner cannot take more data; nothing stored before is lost."""


@dataclass(frozen=True)
class Limits:
    """How the flash area is shared out (see the module docstring)."""

    segments: int
    reserve: int
    vars_configured: int
    ldap_configured: int
    ldap_granted: int


def plan_limits(segments: int, ram_bytes: int) -> Limits:
    reserve = max(2, min(RESERVE, segments // 9))
    vars_conf = VARS_CONFIGURED
    ldap_conf = max(1, segments - reserve - vars_conf)
    by_ram = (ram_bytes - RAM_BASE) // (RAM_COPIES * SEG) - vars_conf
    return Limits(segments, reserve, vars_conf, ldap_conf, max(1, min(ldap_conf, by_ram)))
