"""The DHCP client's hook script (firmware/bootcode/udhcpc.script) run by sh as udhcpc runs
it, with a stand-in `ip` on PATH that logs its arguments: the fallback address after a
failed round, kept over the next rounds, set again after a lost lease (`bound`, which
replaces it, writes /etc/resolv.conf: the VM test covers it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from firmware.initramfs import BOOTCODE_DIR

SCRIPT = BOOTCODE_DIR / "udhcpc.script"


def run_hook(tmp_path: Path, event: str, **env: str) -> list[str]:
    """One call of the hook as udhcpc makes it; the `ip` commands it ran."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "ip.log"
    fake_ip = bin_dir / "ip"
    fake_ip.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake_ip.chmod(0o755)
    log.write_text("")
    full_env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "interface": "eth0",
        "IPVA_RUN": str(tmp_path),
        **env,
    }
    subprocess.run(["sh", str(SCRIPT), event], env=full_env, check=True, cwd=tmp_path)
    return log.read_text().splitlines()


def test_no_server_gives_the_fallback_once(tmp_path: Path) -> None:
    state = tmp_path / "dhcp-eth0"
    assert run_hook(tmp_path, "leasefail", IPVA_FALLBACK="192.168.0.1/24") == [
        "-4 addr flush dev eth0",
        "addr add 192.168.0.1/24 dev eth0",
    ]
    assert state.read_text() == "ip=192.168.0.1\nmask=24\nfallback=yes\n"
    # udhcpc's next background rounds end in leasefail too: the address stays as it is
    assert run_hook(tmp_path, "leasefail", IPVA_FALLBACK="192.168.0.1/24") == []
    # a lease lost later (deconfig) removes the file: the next failed round sets it again
    run_hook(tmp_path, "deconfig")
    assert not state.exists()
    assert run_hook(tmp_path, "leasefail", IPVA_FALLBACK="192.168.0.1/24")[1:] == [
        "addr add 192.168.0.1/24 dev eth0"
    ]


def test_without_a_fallback_a_failed_round_leaves_no_address(tmp_path: Path) -> None:
    (tmp_path / "dhcp-eth1").write_text("ip=10.0.2.15\nmask=24\n")
    assert run_hook(tmp_path, "leasefail", interface="eth1") == []
    assert not (tmp_path / "dhcp-eth1").exists()
