"""A box booted from the shipped disks, polled into line by (a stand-in for) innovaphone's
update server V2 (tests/updateserver.py: update.php's command lines), under QEMU.

The box starts an older build (16r1, 1601000) in slot A; the master is a hosted box on the
host running the shipped build (16r1sr1, 1601001), whose box_info.xml the server reads.
The admin sets only the URL: the box fills it from the first answer (its MAC, hardware id
and address), sends its backup, installs the master's build once, resets into it when
idle, and then polls once per the server's 15-minute interval: nothing more in 90 s.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from images.bootdisk import write_boot_file
from tests.hosted.httpbox import HostedHttpBox
from tests.updateserver import NO_FILES_SIG, update_server
from tests.vm.test_update_vm import GUEST_HOST, UPDATE_TIMEOUT, raw_copies

pytestmark = pytest.mark.vm

OLD = ("16r1", 1601000)
SHIPPED = 1601001
QUIET_S = 90.0


def test_a_shipped_box_is_polled_into_line_by_the_update_server(
    ipva_machine,
    ipva_dist: Path,
    ipva_firmware,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    disks = raw_copies(ipva_dist, tmp_path / "disks")
    write_boot_file(disks[0], "IPVA.BIN", ipva_firmware(*OLD).read_bytes())
    master = HostedHttpBox(tmp_path / "master")
    try:
        with update_server(master.http_url + "/CMD0/box_info.xml", GUEST_HOST) as srv:
            srv.firmware[str(SHIPPED)] = (ipva_dist / "ipva.bin").read_bytes()
            box = ipva_machine("vmware", disks=disks, disk_mode="direct")
            box.wait_for_prompt()
            assert f"\n16r1 IPVA[{OLD[1]}]" in "\n" + box.command("version")
            for line in (f"config change UP1 /url {srv.base}", "config write",
                         "config activate"):  # fmt: skip
                assert not box.command(line).startswith("error"), line

            def in_line() -> list[dict[str, str]]:
                with srv.lock:
                    return [p for p in srv.polls if p.get("PROT") == str(SHIPPED)]

            deadline = time.monotonic() + 60 + 2 * UPDATE_TIMEOUT
            while not in_line():
                assert time.monotonic() < deadline, (srv.polls, box.last_lines(30))
                time.sleep(1)
            poll = in_line()[0]
            assert re.fullmatch(r"[0-9a-f]{12}", poll["sn"]), poll  # #m: the MAC
            assert poll["hwid"] == f"IPVA-vm-{poll['sn']}" and poll["ip"] == "10.0.2.15"
            assert poll["type"] == "ipva" and poll["CHECK"] == NO_FILES_SIG
            # (a trace line, e.g. the second backup's, may come within an answer)
            assert f"\n16r1sr1 IPVA[{SHIPPED}]" in "\n" + box.command("version")
            saved = box.command("config show saved")
            assert "/poll 15" in saved and "polling=0" in saved and "/no-dhcp" in saved
            count = len(srv.polls)
            time.sleep(QUIET_S)
            assert len(srv.polls) == count, srv.polls[count:]  # the next poll: in 15 min
            assert srv.downloads == [f"/fw/{SHIPPED}/ipva.bin"]
            assert len(srv.backups[poll["hwid"]]) == 2  # before and after the UP1 rewrite
            assert srv.errors == []
    finally:
        master.close()
