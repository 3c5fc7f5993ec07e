"""The flash service: mounts the flash disk (FLASHMAN0 with VARS and FLASHDIR0 on top) into
`box.flash`, and `mod cmd FLASHMAN0 …` / `mod cmd FLASHDIR0 …`, the console's view of it.

A flash that does not mount (a wrong or damaged disk) does not stop the boot: the box runs
with the factory config and `config write` refused, and keeps the device in
`box.flash_device` so `mod cmd FLASHMAN0 reset all` can format it.

The boot reads the headers and VARS (the config) at once; FLASHDIR0, most of a full flash,
is read on a thread of its own (`flash-ldap`), so a full flash does not hold up the prompt.
A write or a FLASHDIR0 read before it is done waits for it (FlashMan.finish_mount); damage
it finds is traced as it is found; stop() waits for it before the disks close.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from appliance.flash import Flash, FlashDirError, FlashError, format_flash, mount_flash
from appliance.hal.block import BlockDevice
from appliance.modcmd import Command, ModCmdError
from appliance.owner import join_checked
from appliance.service import BaseService
from appliance.trace import Tag

if TYPE_CHECKING:
    from appliance.box import Box

FINISH_JOIN_S = 60.0  # FLASHDIR0 of a full 512 MiB flash under emulation: seconds

# mount function: (flash disk, ram bytes, trace) -> Flash; tests may pass their own
Mount = Callable[[BlockDevice, int, Callable[[str], None]], Flash]


def mount_real_flash(dev: BlockDevice, ram_bytes: int, trace: Callable[[str], None]) -> Flash:
    return mount_flash(dev, ram_bytes=ram_bytes, trace=trace, defer_ldap=True)


class FlashService(BaseService):
    name = "flash"

    def __init__(self, mount: Mount = mount_real_flash) -> None:
        self.mount = mount
        self._finisher: threading.Thread | None = None
        self._trace: Callable[[str], None] | None = None

    def start(self, box: Box) -> None:
        """Mount into box.flash, or leave it None and say why (the box boots on); the
        rest of a deferred mount (FLASHDIR0) on a thread."""
        self._trace = lambda line: box.trace(line, Tag.FLASH)
        dev = box.flash_device
        if dev is None:
            return
        try:
            box.flash = self.mount(dev, box.ram_bytes, lambda s: box.trace(s, Tag.FLASH))
        except ImportError as e:
            box.trace(f"flash: FLASHMAN could not be loaded ({e}); config write is off", Tag.FLASH)
            return
        except (FlashError, OSError, ValueError) as e:  # a wrong or damaged disk: boot on
            box.trace(f"flash: {e}; config write is off until the flash disk is fixed", Tag.FLASH)
            return
        if not box.flash.flashman.mounted:
            self._finisher = threading.Thread(
                target=self._finish, args=(box, box.flash), name="flash-ldap", daemon=True
            )
            self._finisher.start()

    @staticmethod
    def _finish(box: Box, flash: Flash) -> None:
        try:
            flash.flashman.finish_mount()
        except FlashError as e:  # a read error: said once here, then by every write
            box.trace(f"flash: {e}", Tag.FLASH)

    def stop(self) -> None:
        """The disks close next: the FLASHDIR0 read must be done by then (it is a finite
        read of the flash: waited for, and said if it takes longer than FINISH_JOIN_S)."""
        late = join_checked(self._finisher, FINISH_JOIN_S)
        if late and self._trace is not None:
            self._trace(f"flash: {late}; waiting for it before the disks close")
        if self._finisher is not None:
            self._finisher.join()
            self._finisher = None

    def commands(self) -> list[Command]:
        return [
            Command("FLASHMAN0", "info", "segment usage per owner", flashman_info),
            Command(
                "FLASHMAN0",
                "reset",
                "reset all|ldap|vars: format the flash or drop one owner",
                flashman_reset,
            ),
            Command(
                "FLASHDIR0",
                "add-item",
                "add-item <id> <attrs>: add or replace an item",
                flashdir_add_item,
            ),
            Command("FLASHDIR0", "del-item", "del-item <id>: delete an item", flashdir_delete),
            Command("FLASHDIR0", "delete", "delete <id>: delete an item", flashdir_delete),
            Command("FLASHDIR0", "show", "show [<id>]: items as add-item lines", flashdir_show),
            Command("FLASHDIR0", "list", "list: all items as add-item lines", flashdir_show),
        ]


def _flash(box: Box) -> Flash:
    if box.flash is None:
        raise ModCmdError("no flash mounted")
    return box.flash


def flashman_info(box: Box, args: list[str]) -> str:
    return _flash(box).flashman.info()


def flashman_reset(box: Box, args: list[str]) -> str:
    what = args[0].lower() if args else ""
    if what == "all" and box.flash is None:
        # the mount failed (WrongDiskError): the boot keeps the device as box.flash_device
        if box.flash_device is None:
            raise ModCmdError("no flash disk")
        flash = format_flash(
            box.flash_device,
            ram_bytes=box.ram_bytes,
            # FLASHMAN's boot-trace lines carry module tag 081, as at boot
            trace=lambda line: box.trace(line, Tag.FLASH),
        )
        box.flash = flash
        return f"flash formatted, {len(flash.flashman.segments)} segments"
    flash = _flash(box)
    if what == "all":
        flash.flashman.reset_all()
        return f"flash formatted, {len(flash.flashman.segments)} segments"
    if what == "ldap":
        flash.flashdir.reset()
        return "LDAP reset"
    if what == "vars":
        flash.vars.reset()
        return "VARS reset"
    raise ModCmdError("usage: mod cmd FLASHMAN0 reset all|ldap|vars")


def _item_id(word: str) -> int:
    try:
        return int(word)
    except ValueError:
        raise ModCmdError(f"bad item id {word!r}") from None


def flashdir_add_item(box: Box, args: list[str]) -> str:
    if len(args) < 2:
        raise ModCmdError("usage: mod cmd FLASHDIR0 add-item <id> <attrs>")
    try:
        _flash(box).flashdir.put(_item_id(args[0]), " ".join(args[1:]))
    except FlashDirError as exc:
        raise ModCmdError(str(exc)) from None
    return ""


def flashdir_delete(box: Box, args: list[str]) -> str:
    if len(args) != 1:
        raise ModCmdError("usage: mod cmd FLASHDIR0 del-item <id>")
    if not _flash(box).flashdir.delete(_item_id(args[0])):
        raise ModCmdError(f"no item {args[0]}")
    return ""


def flashdir_show(box: Box, args: list[str]) -> str:
    fdir = _flash(box).flashdir
    if args:
        attrs = fdir.get(_item_id(args[0]))
        if attrs is None:
            raise ModCmdError(f"no item {args[0]}")
        return f"mod cmd FLASHDIR0 add-item {args[0]} {attrs}"
    return "\n".join(fdir.backup_lines())
