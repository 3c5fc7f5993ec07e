"""The CRC trailer (appliance.formats.crc): built, parsed back, and a damaged byte refused."""

from __future__ import annotations

import zlib

import construct as cs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.formats.crc import crc32_trailed

Body = cs.Struct("n" / cs.Int32ul, "name" / cs.PascalString(cs.Int8ul, "utf8"))
Record = crc32_trailed(Body)


@given(st.integers(0, 2**32 - 1), st.text(max_size=60))
def test_round_trip_and_layout(n: int, name: str) -> None:
    raw = Record.build({"body": {"value": {"n": n, "name": name}}})
    body = Body.build({"n": n, "name": name})
    assert raw == body + zlib.crc32(body).to_bytes(4, "little")
    parsed = Record.parse(raw)
    assert (parsed.body.value.n, parsed.body.value.name) == (n, name)
    assert Record.build(parsed) == raw


@pytest.mark.parametrize("at", [0, 3, 6, 8, 9, 12])  # the body, and the CRC itself
def test_any_flipped_byte_is_a_checksum_error(at: int) -> None:
    raw = bytearray(Record.build({"body": {"value": {"n": 7, "name": "abcd"}}}))
    raw[at] ^= 0x01
    with pytest.raises(cs.ChecksumError):
        Record.parse(bytes(raw))
