"""The web admin of a booted image, through QEMU's forwarded ports (one boot and a reset).

HTTP and HTTPS on 127.0.0.1 reach the guest's 80 and 443 on ETH0; the certificate is the
box's own, made on the first boot and the same after `reset`. A firmware upload (the dist's
16r1sr2 build, `PUT /ipva.bin`) goes into slot B of the boot disk, the reset
starts it with the config kept and it confirms itself (the downgrade is in test_update_vm.py).
"""

from __future__ import annotations

import hashlib
import re
import socket
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "hosted"))
from httpbox import authed, request, tls_client_context  # noqa: E402

pytestmark = pytest.mark.vm


def peer_certificate(url: str) -> bytes:
    host, port = url.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        with tls_client_context().wrap_socket(raw) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der


@pytest.mark.timeout(900)
def test_http_and_https_through_forwarded_ports(
    ipva_machine,
    ipva_dist: Path,
    ipva_firmware,  # type: ignore[no-untyped-def]
) -> None:
    box = ipva_machine("vmware")  # 256 MiB as shipped (test_hardware: 128 MiB refuses updates)
    box.wait_for_prompt()
    log = box.console_log
    assert "HTTP0: web admin on 0.0.0.0:443 (https, TLS 1.2/1.3), 0.0.0.0:80 (http)" in log
    assert "HTTP0: the admin password is the factory default" in log
    # the certificate names the address the guest got, so a browser pointed at it matches
    made = r"HTTPS: new self-signed certificate made for [^\n]*IP:10\.0\.2\.15, SHA-256 "
    assert re.search(made, log)

    info = request(box.http_url, "GET", "/CMD0/box_info.xml", timeout=30)
    sys_ = ET.fromstring(info.body).find("sys")
    assert sys_ is not None
    assert sys_.get("version", "").startswith("16r1sr1 IPVA[") and "HW[IPVA-" in sys_.get(
        "version", ""
    )
    eth0 = sys_.find("eth")
    assert eth0 is not None and eth0.get("addr") == "10.0.2.15/24" and eth0.get("mode") == "dhcp"
    assert len(sys_.get("mac", "")) == 17

    r = authed(box.http_url, "GET", "/!config%20change%20SYS0%20/name%20vmbox")
    assert r.status == 200, r.text
    assert authed(box.http_url, "GET", "/!config%20write").text.startswith("config written")
    import base64

    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:ipva").decode()}
    assert request(box.https_url, "GET", "/!version", headers=basic, timeout=30).status == 200
    first = peer_certificate(box.https_url)
    fingerprint = hashlib.sha256(first).hexdigest().upper()
    assert ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)) in log

    # the whole image through the guest's HTTP stack into slot B (tmpfs spool, /boot rw)
    image = ipva_firmware("16r1sr2", 1601002).read_bytes()
    r = authed(box.http_url, "PUT", "/ipva.bin", image, timeout=300)
    assert r.status == 200 and "written to slot B (IPVA2.BIN)" in r.text, r.text
    fw = ET.fromstring(request(box.http_url, "GET", "/CMD0/box_info.xml", timeout=30).body).find(
        "sys"
    )
    assert fw is not None
    slot_b = fw.find("firmware/slot[@id='B']")
    assert slot_b is not None and slot_b.get("state") == "trial", ET.tostring(fw)
    assert slot_b.get("version") == "16r1sr2"
    r = authed(box.http_url, "PUT", "/ipva.bin", image[:-1], timeout=300)
    assert r.status == 400 and "truncated" in r.text and "nothing was written" in r.text

    box.send_line("reset")
    box.wait_for_console("reset: restarting")
    box.wait_for_prompt()
    assert "new self-signed certificate" not in box.console_log[len(log) :]
    assert peer_certificate(box.https_url) == first  # kept on the flash
    page = authed(box.https_url, "GET", "/general/info")
    assert page.status == 200 and "vmbox" in page.text and "10.0.2.15/24" in page.text
    assert authed(box.http_url, "GET", "/!mod%20cmd%20HTTP0%20info").text.count("<listener") == 2
    # the reset started the uploaded firmware, which confirmed itself once up
    fw = ET.fromstring(request(box.http_url, "GET", "/CMD0/box_info.xml", timeout=30).body).find(
        "sys"
    )
    assert fw is not None
    assert fw.get("version", "").startswith("16r1sr2 IPVA[1601002]"), fw.get("version")
    running = fw.find("firmware")
    assert running is not None and running.get("running") == "B", ET.tostring(fw)
    slot_b = fw.find("firmware/slot[@id='B']")
    assert slot_b is not None and slot_b.get("state") == "confirmed", ET.tostring(fw)
