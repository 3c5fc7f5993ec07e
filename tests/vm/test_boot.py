"""The walking skeleton under QEMU: boot to the prompt, reset, and the bootcode's checks.

Each test boots its own virtual machine (TCG here), from qcow2 overlays of the session's
dist/ or from a deliberately broken copy of the boot disk.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from appliance.hosted import run_hosted
from appliance.version import BUILD
from firmware.initramfs import make_cpio_zstd
from hypervisors.qemu.machine import Machine
from hypervisors.qemu.timeouts import retry
from images.bootdisk import delete_boot_file, read_boot_file, write_boot_file

pytestmark = pytest.mark.vm

IMAGE_FAILED = "Loading failed for image=IPVA    BIN"
TRACE_LINE = re.compile(r"^0:0000:\d{3}:4 - ", re.M)
VGA_TEXT = 0xB8000  # VGA text-mode memory: cells of (char, attribute), 80 per row
VGA_TEXT_SIZE = 0x8000  # vgacon scrolls by moving the start address within these 32 KiB
VGA_TIMEOUT = 15.0
NO_REBOOT_WATCH_S = 12  # longer than /init's restart delay and a SYSLINUX round trip
DHCP_LINE = re.compile(r"0:0000:030:4 - ETH0 IP address 10\.0\.2\.15/24 \(dhcp\)")
LEASE_AFTER_PROMPT_S = 10.0  # QEMU's DHCP answers at once: well under a second, even on TCG


def vga_text(machine: Machine, tmp_path: Path) -> str:
    """What the VGA console (tty1) printed, read from the guest's text memory over QMP."""
    dump = tmp_path / "vga.bin"
    machine.qmp("pmemsave", val=VGA_TEXT, size=VGA_TEXT_SIZE, filename=str(dump))
    cells = dump.read_bytes()[::2]
    return "\n".join(cells[i : i + 80].decode("cp437").rstrip() for i in range(0, len(cells), 80))


def wait_for_vga(machine: Machine, tmp_path: Path, *texts: str) -> str:
    """tty1 is served by its own thread: give it a moment after the serial console."""

    def attempt(last_try: bool) -> str | None:
        screen = vga_text(machine, tmp_path)
        if all(t in screen for t in texts) or last_try:
            return screen
        return None

    screen = retry(attempt, VGA_TIMEOUT, "text on the VGA console")
    missing = [t for t in texts if t not in screen]
    assert not missing, f"not on the VGA console: {missing}\n{screen}"
    return screen


def type_on_keyboard(machine: Machine, text: str) -> None:
    """Key presses on the VM's PS/2 keyboard (QMP send-key): lower-case letters, digits,
    space and newline."""
    names = {" ": "spc", "\n": "ret"}
    for ch in text:
        key = names.get(ch, ch)
        machine.qmp("send-key", keys=[{"type": "qcode", "data": key}])


def broken_disks(ipva_dist: Path, tmp_path: Path) -> list[Path]:
    disks = [ipva_dist / "disks" / f"{r}.img" for r in ("boot", "cf", "flash", "dump")]
    boot = tmp_path / "boot.img"
    shutil.copyfile(disks[0], boot)
    return [boot, *disks[1:]]


def assert_stopped_for_good(machine: Machine) -> None:
    """The message stays: no SYSLINUX banner again (no reboot loop), QEMU still running."""
    banners = machine.console_log.count("SYSLINUX")
    time.sleep(NO_REBOOT_WATCH_S)
    assert machine.is_running()
    assert machine.console_log.count("SYSLINUX") == banners


def test_boots_to_prompt_with_address_then_reset(ipva_machine, tmp_path: Path) -> None:
    box = ipva_machine("vmware")
    # the prompt does not wait for the DHCP lease: its line comes under the prompt, soon
    prompt = box.wait_for_prompt(web_admin=False)
    lease = box.wait_for_console(DHCP_LINE, LEASE_AFTER_PROMPT_S, what="the lease's line")
    box.wait_for_prompt()  # and the web admin's line, which waits for the address
    log = box.console_log
    assert prompt.start() < lease.start() < log.index("HTTP0: web admin on ", lease.end()), log
    assert "IPVA bootcode 16r1sr1" in log
    assert re.search(r"0:0000:030:4 - mem\(\d+\)=\d+\.\d\dMB", log)
    assert len(TRACE_LINE.findall(log)) >= 4
    # the same trace and the prompt are on the VGA console too
    wait_for_vga(box, tmp_path, "10.0.2.15", "IPVA>")
    # an admin at the hypervisor's console types there: the PS/2 keyboard reaches tty1's
    # shell (the kernel's i8042/atkbd), and the answer appears on that screen only
    type_on_keyboard(box, "version\n")
    wait_for_vga(box, tmp_path, "IPVA> version", "slot A (IPVA.BIN)")
    assert "16r1sr1" in box.command("version")
    banners = box.console_log.count("SYSLINUX")
    box.send_line("reset")
    box.wait_for_console("SYSLINUX")
    box.wait_for_prompt()
    assert box.console_log.count("SYSLINUX") == banners + 1
    assert re.search(r"ETH0 IP address 10\.0\.2\.15/", box.console_log.split("SYSLINUX")[-1])


def test_flipped_payload_byte_shows_checksum_message(
    ipva_machine, ipva_dist: Path, tmp_path: Path
) -> None:
    disks = broken_disks(ipva_dist, tmp_path)
    firmware = bytearray(read_boot_file(disks[0], "IPVA.BIN"))
    firmware[4096 + len(firmware) // 3] ^= 0x01  # one byte in the payload
    write_boot_file(disks[0], "IPVA.BIN", bytes(firmware))
    box = ipva_machine("vmware", disks=disks)
    box.wait_for_console(re.escape(f"checksum wrong! {IMAGE_FAILED}"))
    assert_stopped_for_good(box)
    wait_for_vga(box, tmp_path, f"checksum wrong! {IMAGE_FAILED}")
    assert "IPVA>" not in box.console_log


def test_missing_firmware_shows_loading_failed(
    ipva_machine, ipva_dist: Path, tmp_path: Path
) -> None:
    disks = broken_disks(ipva_dist, tmp_path)
    delete_boot_file(disks[0], "IPVA.BIN")
    box = ipva_machine("vmware", disks=disks)
    box.wait_for_console(re.escape(IMAGE_FAILED))
    assert_stopped_for_good(box)
    assert "checksum wrong!" not in box.console_log
    wait_for_vga(box, tmp_path, IMAGE_FAILED)
    assert "IPVA>" not in box.console_log


def test_truncated_firmware_shows_loading_failed(
    ipva_machine, ipva_dist: Path, tmp_path: Path
) -> None:
    disks = broken_disks(ipva_dist, tmp_path)
    firmware = read_boot_file(disks[0], "IPVA.BIN")
    write_boot_file(disks[0], "IPVA.BIN", firmware[: len(firmware) // 2])
    box = ipva_machine("vmware", disks=disks)
    box.wait_for_console(re.escape(IMAGE_FAILED))
    assert_stopped_for_good(box)
    assert "IPVA>" not in box.console_log


OTHER_BOOTCODE_BUILD = BUILD + 76  # a bootcode build that is not the firmware's


def with_bootcode_build(ipva_dist: Path, tmp_path: Path, build: int) -> list[Path]:
    """The session's disks, but a boot disk whose initramfs says `build <build>` in
    /etc/bootcode-version: a bootcode of another build than the firmware (IPVA.BIN) on it,
    as after a firmware update that left the bootcode alone."""
    disks = broken_disks(ipva_dist, tmp_path)
    tree = tmp_path / "initramfs"
    tree.mkdir()
    cpio = subprocess.run(
        ["zstd", "-d", "-c"], input=read_boot_file(disks[0], "INITRD.ZST"),
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    subprocess.run(["cpio", "-idm", "--quiet"], input=cpio, cwd=tree, check=True)
    version = tree / "etc/bootcode-version"
    old = version.read_text().split()
    version.write_text(f"{old[0]} build {build}\n")
    make_cpio_zstd(tree, tmp_path / "initrd.zst", int(time.time()), level=3)
    write_boot_file(disks[0], "INITRD.ZST", (tmp_path / "initrd.zst").read_bytes())
    return disks


def mod_commands(help_mod: str) -> list[str]:
    # only the answer's lines: a boot trace line may come while it runs (the web admin's,
    # from its own thread, when `help mod` is typed at once)
    lines = help_mod.splitlines()
    return [" ".join(line.split()[:4]) for line in lines if line.lstrip().startswith("mod cmd ")]


def test_version_line_shows_the_bootcodes_build_and_help_mod_is_as_hosted(
    ipva_machine, ipva_dist: Path, tmp_path: Path
) -> None:
    disks = with_bootcode_build(ipva_dist, tmp_path, OTHER_BOOTCODE_BUILD)
    box = ipva_machine("vmware", disks=disks)
    box.wait_for_prompt()
    ident = f"IPVA[{BUILD}], Bootcode[{OTHER_BOOTCODE_BUILD}], HW[IPVA-vm]"
    assert f"IPVA bootcode 16r1sr1 build {OTHER_BOOTCODE_BUILD}" in box.console_log
    assert f"0:0000:030:4 - IPVA 16r1sr1 {ident}" in box.console_log
    version = box.command("version").strip().splitlines()
    assert version[0] == f"16r1sr1 {ident}"
    # the update service read both slots off the real boot disk (vfat mounted by /init)
    # the suite's build is signed with the development key, and the box says so
    dev = "signed with the DEVELOPMENT key (public: anyone can sign for it)"
    assert f"slot A (IPVA.BIN): 16r1sr1 build {BUILD}, running, {dev}" in version
    assert "slot B (IPVA2.BIN): empty" in version
    backup = box.command("mod cmd CFG0 backup")
    assert re.search(rf"^vars check [0-9a-f]{{32}} # 16r1sr1 {re.escape(ident)}$", backup, re.M)
    # the trace buffer holds the boot trace the console showed
    trace = box.command("mod cmd TRACE show")
    assert f"0:0000:030:4 - IPVA 16r1sr1 {ident}" in trace
    assert "0:0000:081:4 - start flashdir FLASHDIR0" in trace
    # the same module commands as hosted (where ETH0 has no interface, but is listed)
    out = io.BytesIO()
    assert run_hosted(tmp_path / "hosted", io.BytesIO(b"help mod\n"), out) == 0
    hosted = out.getvalue().decode().split("IPVA> help mod\n", 1)[1].split("IPVA> ", 1)[0]
    in_vm = box.command("help mod")
    assert mod_commands(in_vm) == mod_commands(hosted)
    assert "mod cmd ETH0 info" in mod_commands(in_vm)
