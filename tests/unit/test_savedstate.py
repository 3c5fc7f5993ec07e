"""Saved states fit only the QEMU, hardware and disks they were made with: the fingerprint,
and what a state that does not fit says (no QEMU run: `qemu-system-x86_64 --version` only)."""

from __future__ import annotations

import os
from pathlib import Path

from hypervisors.qemu.machine import Machine
from hypervisors.qemu.profiles import get_profile
from hypervisors.qemu.savedstate import SavedState


def disks(tmp_path: Path) -> list[Path]:
    out = []
    for role in ("boot", "cf", "flash", "dump"):
        path = tmp_path / f"{role}.img"
        path.write_bytes(b"\0" * 4096)
        out.append(path)
    return out


def fingerprint(tmp_path: Path, **profile: object) -> dict[str, object]:
    images = [tmp_path / f"{role}.img" for role in ("boot", "cf", "flash", "dump")]
    machine = Machine(get_profile("vmware", **profile), images, accel="tcg", http_port=1234)
    try:
        return machine.fingerprint()
    finally:
        machine.cleanup()


def saved(tmp_path: Path, want: dict[str, object]) -> SavedState:
    state = SavedState(tmp_path / "state")
    state.path.mkdir()
    for index in range(4):
        state.disk(index).write_bytes(b"")
    state.stream.write_bytes(b"QEVM")
    state.write_meta(want, 9.5)
    return state


def test_a_state_fits_the_same_machine_whatever_its_ports(tmp_path: Path) -> None:
    disks(tmp_path)
    want = fingerprint(tmp_path)
    state = saved(tmp_path, want)
    assert state.unusable(want) is None
    other_ports = Machine(get_profile("vmware"), [tmp_path / f"{r}.img" for r in
                          ("boot", "cf", "flash", "dump")], accel="tcg", http_port=999)  # fmt: skip
    assert state.unusable(other_ports.fingerprint()) is None
    other_ports.cleanup()
    assert not state.stale()


def test_other_hardware_disks_or_files_missing_are_said(tmp_path: Path) -> None:
    disks(tmp_path)
    want = fingerprint(tmp_path)
    state = saved(tmp_path, want)
    why = state.unusable(fingerprint(tmp_path, ram_mib=128))
    assert why == "made for other hardware, disks or QEMU: hardware: saved with '256', now '128'"
    os.utime(tmp_path / "flash.img", ns=(0, 0))  # the disk was rebuilt
    why = state.unusable(fingerprint(tmp_path))
    assert why is not None and f"disk 2 ({tmp_path / 'flash.img'}): mtime_ns differ" in why
    assert state.stale()
    state.stream.unlink()
    assert state.unusable(want) == f"{state.path} lacks state.mig"
    (state.path / "meta.json").unlink()
    assert "no readable meta.json" in str(state.unusable(want))
