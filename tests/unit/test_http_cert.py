"""The box's self-signed certificate names its addresses (subjectAltName), checked with the
real `openssl x509`; a kept one is reused while it names them, renewed when the box has an
address it does not name."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from appliance.services.http.cert import CERT_KEY, SAN_KEY, load_or_make

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


class DictVars:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def keys(self) -> Iterable[str]:
        return list(self.data)

    def commit(self, updates: Mapping[str, bytes | None]) -> None:
        for k, v in updates.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v


def san_of(pem: bytes, tmp_path: Path) -> str:
    (tmp_path / "c.pem").write_bytes(pem)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "c.pem")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return out.splitlines()[1].strip()  # the line after "X509v3 Subject Alternative Name:"


def test_the_certificate_names_the_box_and_its_addresses(tmp_path: Path) -> None:
    vars = DictVars()
    cert, note = load_or_make(vars, "branch-7", ["10.0.2.15", "192.168.0.10"])
    san = san_of(cert.cert_pem, tmp_path)
    assert san == (
        "DNS:branch-7, DNS:localhost, IP Address:127.0.0.1, IP Address:10.0.2.15, "
        "IP Address:192.168.0.10"
    )
    assert note.startswith("HTTPS: new self-signed certificate made for DNS:branch-7")
    assert vars.get(SAN_KEY) == cert.san.encode()
    # the same addresses (or fewer): the kept one, no line
    again, note = load_or_make(vars, "branch-7", ["10.0.2.15"])
    assert again.cert_pem == cert.cert_pem and note == ""
    # an address it does not name: a new one, saying why
    renewed, note = load_or_make(vars, "branch-7", ["10.0.2.16"])
    assert renewed.cert_pem != cert.cert_pem and vars.get(CERT_KEY) == renewed.cert_pem
    assert "the one kept did not name 10.0.2.16" in note
    assert "IP Address:10.0.2.16" in san_of(renewed.cert_pem, tmp_path)
