"""The bootcode's kernel modules: the appended signature comes off, the module stays whole."""

from __future__ import annotations

import pytest

from firmware.kernel import SIGNATURE_MARKER, ModuleSignature, strip_signature
from firmware.run import ToolError

MODULE = b"\x7fELF" + bytes(range(256)) * 8
SIGNATURE = b"\x30\x82" + b"s" * 500  # a PKCS#7 blob's shape; the content is not read


def _signed(module: bytes, signature: bytes = SIGNATURE) -> bytes:
    info = ModuleSignature.build(
        {"algo": 0, "hash": 0, "id_type": 2, "signer_len": 0, "key_id_len": 0,
         "pad": b"\0\0\0", "sig_len": len(signature)}
    )  # fmt: skip
    return module + signature + info + SIGNATURE_MARKER


def test_signature_info_round_trip() -> None:
    raw = _signed(MODULE)[-len(SIGNATURE_MARKER) - 12 : -len(SIGNATURE_MARKER)]
    assert ModuleSignature.sizeof() == 12
    assert ModuleSignature.build(ModuleSignature.parse(raw)) == raw


def test_strips_exactly_the_signature() -> None:
    assert strip_signature(_signed(MODULE)) == MODULE


def test_unsigned_module_unchanged() -> None:
    assert strip_signature(MODULE) == MODULE


def test_signature_longer_than_the_file_refused() -> None:
    data = _signed(MODULE)
    info_end = len(data) - len(SIGNATURE_MARKER)
    broken = data[: info_end - 4] + (len(data) * 2).to_bytes(4, "big") + SIGNATURE_MARKER
    with pytest.raises(ToolError, match="malformed"):
        strip_signature(broken)
