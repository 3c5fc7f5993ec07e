"""The CRC trailer: a structure followed by the zlib CRC-32 (u32 little endian) of its bytes.

Every record the box keeps in a raw sector ends this way (the boot-control record, the crash
dump's header and fault arm, the flash segment header); declaring it once keeps the check in
construct: building computes the CRC, parsing raises `construct.ChecksumError` when it is
wrong (after the body itself parsed: a body that does not parse raises its own error first).
"""

from __future__ import annotations

import zlib

import construct as cs


def crc32_trailed(body: cs.Construct) -> cs.Struct:
    """`body` (as `.body.value`, its bytes as `.body.data`), then `crc32` over those bytes.

    Build with `{"body": {"value": {...}}}`; a parsed container builds back to the same bytes.
    """
    return cs.Struct(
        "body" / cs.RawCopy(body),
        "crc32" / cs.Checksum(cs.Int32ul, zlib.crc32, cs.this.body.data),
    )
