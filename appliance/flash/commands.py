"""`mod cmd FLASHMAN0 …` and `mod cmd FLASHDIR0 …`: the console's view of the flash.

Handlers find the mounted flash at ``box.flash`` (an `appliance.flash.Flash`).
"""

from __future__ import annotations

from typing import Any

from appliance.flash.flashdir import FlashDirError
from appliance.modcmd import ModCmdError, register


def _flash(box: Any) -> Any:
    flash = getattr(box, "flash", None)
    if flash is None:
        raise ModCmdError("no flash mounted")
    return flash


@register("FLASHMAN0", "info", "segment usage per owner")
def flashman_info(box: Any, args: list[str]) -> str:
    return _flash(box).flashman.info()


TRACE_TAG = 81


@register("FLASHMAN0", "reset", "reset all|ldap|vars: format the flash or drop one owner")
def flashman_reset(box: Any, args: list[str]) -> str:
    what = args[0].lower() if args else ""
    if what == "all" and getattr(box, "flash", None) is None:
        # the mount failed (WrongDiskError): the boot keeps the device as box.flash_device
        dev = getattr(box, "flash_device", None)
        if dev is None:
            raise ModCmdError("no flash disk")
        from appliance.flash import format_flash

        box.flash = format_flash(
            dev,
            ram_bytes=getattr(box, "ram_bytes", 256 << 20),
            # FLASHMAN's boot-trace lines carry module tag 081, as at boot
            trace=lambda line: box.trace(line, TRACE_TAG),
        )
        return f"flash formatted, {len(box.flash.flashman.segments)} segments"
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


@register("FLASHDIR0", "add-item", "add-item <id> <attrs>: add or replace an item")
def flashdir_add_item(box: Any, args: list[str]) -> str:
    if len(args) < 2:
        raise ModCmdError("usage: mod cmd FLASHDIR0 add-item <id> <attrs>")
    try:
        _flash(box).flashdir.put(_item_id(args[0]), " ".join(args[1:]))
    except FlashDirError as exc:
        raise ModCmdError(str(exc)) from None
    return ""


def _delete(box: Any, args: list[str]) -> str:
    if len(args) != 1:
        raise ModCmdError("usage: mod cmd FLASHDIR0 del-item <id>")
    if not _flash(box).flashdir.delete(_item_id(args[0])):
        raise ModCmdError(f"no item {args[0]}")
    return ""


register("FLASHDIR0", "del-item", "del-item <id>: delete an item")(_delete)
register("FLASHDIR0", "delete", "delete <id>: delete an item")(_delete)


def _show(box: Any, args: list[str]) -> str:
    fdir = _flash(box).flashdir
    if args:
        attrs = fdir.get(_item_id(args[0]))
        if attrs is None:
            raise ModCmdError(f"no item {args[0]}")
        return f"mod cmd FLASHDIR0 add-item {args[0]} {attrs}"
    return "\n".join(fdir.backup_lines())


register("FLASHDIR0", "show", "show [<id>]: items as add-item lines")(_show)
register("FLASHDIR0", "list", "list: all items as add-item lines")(_show)
