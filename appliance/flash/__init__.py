"""The flash disk: FLASHMAN0 (segments) with VARS (config) and FLASHDIR0 (objects) on top.

`mount_flash()` is what the flash service (appliance/services/flash.py) calls; its
`mod cmd FLASHMAN0/FLASHDIR0` commands are declared there.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.flash.flashdir import FlashDir, FlashDirError
from appliance.flash.flashman import (
    FlashError,
    FlashFullError,
    FlashMan,
    Trace,
    WrongDiskError,
    plan_limits,
)
from appliance.flash.vars import Vars
from appliance.hal.block import BlockDevice

__all__ = [
    "Flash",
    "FlashDir",
    "FlashDirError",
    "FlashError",
    "FlashFullError",
    "FlashMan",
    "Vars",
    "WrongDiskError",
    "format_flash",
    "mount_flash",
    "plan_limits",
]


@dataclass
class Flash:
    """The mounted flash disk: FLASHMAN0 and the VARS and FLASHDIR0 on top of it."""

    flashman: FlashMan
    vars: Vars
    flashdir: FlashDir


def mount_flash(
    dev: BlockDevice,
    *,
    ram_bytes: int,
    trace: Trace,
    readonly: bool = False,
    defer_ldap: bool = False,
) -> Flash:
    """Mount the flash disk: format it if blank, else rebuild the state by scanning.

    Raises WrongDiskError for a disk that is neither blank nor ours. Damage found while
    scanning does not fail the mount; it is reported through `trace`. `defer_ldap`: the
    FLASHDIR0 segments are read by `flashman.finish_mount()` (or the first use that needs
    them), not now: the box's boot (flashman.py).
    """
    fm = FlashMan(dev, ram_bytes=ram_bytes, trace=trace, readonly=readonly, defer_ldap=defer_ldap)
    return Flash(fm, Vars(fm), FlashDir(fm, trace))


def format_flash(dev: BlockDevice, *, ram_bytes: int, trace: Trace) -> Flash:
    """`!mod cmd FLASHMAN0 reset all` for a disk that does not mount: format the whole disk
    (up to 512 MiB) whatever it holds. Everything on it is lost, by design."""
    fm = FlashMan(dev, ram_bytes=ram_bytes, trace=trace, format_all=True)
    return Flash(fm, Vars(fm), FlashDir(fm, trace))
