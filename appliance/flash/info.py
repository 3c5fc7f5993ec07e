"""``mod cmd FLASHMAN0 info`` — what each number means
---------------------------------------------------
``segments=N, segment-size=0x10000 (64k)``: N = segments in the flash area (all owners, free
and reserve). (The seed's line shows 675 next to an owner maximum of 8079 segments, so its N
cannot be the area size of that box; we show the area size.) Then one line per owner::

    LDAP - used Uk avail Ak owned Ok (segments S) maximum Mk (segments E, configured C)

- used U: segment headers + live records of the owner, KiB rounded up;
- avail A: unwritten bytes in the owner's head segment, KiB rounded down (the last
  ``SEAL_RESERVE`` = 1 KiB of it is kept for the segment's seal); owned - used - avail is
  dirty space (and seals) that compaction reclaims;
- owned O / segments S: segments the owner holds, O = S * 64;
- configured C: the owner's configured maximum in segments (VARS 10; LDAP what the flash
  size leaves, see above); segments E: the effective maximum after the RAM rule (= C for
  VARS); maximum M = E * 64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from appliance.flash.format import HEADER_AREA, OWNER_LDAP, OWNER_VARS
from appliance.flash.limits import SEG, KiB
from appliance.flash.segments import Owner


def format_info(segments: int, owners: Mapping[int, Owner]) -> str:
    """`mod cmd FLASHMAN0 info`, in the seed's format."""
    lines = [f"segments={segments}, segment-size=0x{SEG:x} ({SEG // KiB}k)"]
    for oid in (OWNER_LDAP, OWNER_VARS):
        o = owners[oid]
        n = len(o.segs)
        used = math.ceil((n * HEADER_AREA + o.live) / KiB)
        avail = (SEG - o.segs[-1].end) // KiB if o.segs else 0
        lines.append(
            f"{o.name} - used {used}k avail {avail}k owned {n * SEG // KiB}k "
            f"(segments {n}) maximum {o.maximum * SEG // KiB}k "
            f"(segments {o.maximum}, configured {o.configured})"
        )
    return "\n".join(lines)
