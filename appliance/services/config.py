"""The config service: loads the saved config from the flash at boot (`config: N saved
objects loaded`), owns CFG0 and its module commands (`mod cmd CFG0 backup`, `factory-reset`).

The configs themselves live on the box (appliance/box.py); the schema in appliance/config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.config import saved_objects
from appliance.modcmd import Command, ModCmdError
from appliance.service import BaseService

if TYPE_CHECKING:
    from appliance.box import Box


class ConfigService(BaseService):
    name = "config"
    config_modules: tuple[str, ...] = ("ADMIN0",)  # the account that guards config changes

    def start(self, box: Box) -> None:
        box.load_saved()
        # what VARS holds: a box without a saved config runs its factory settings
        n = saved_objects(box.flash.vars) if box.flash is not None else len(box.saved.objects)
        box.trace(f"config: {n} saved object{'s' if n != 1 else ''} loaded")

    def commands(self) -> list[Command]:
        return [
            Command("CFG0", "backup", "print the saved config as a backup file", backup),
            Command(
                "CFG0",
                "factory-reset",
                "erase the saved config; reset then starts fresh",
                factory_reset,
            ),
        ]


def backup(box: Box, args: list[str]) -> str:
    if args:
        raise ModCmdError(f"backup takes no arguments, got {args[0]!r}")
    return box.backup_text().rstrip("\n")


def factory_reset(box: Box, args: list[str]) -> str:
    if args != ["yes"]:
        raise ModCmdError(
            "this erases the saved configuration: confirm with mod cmd CFG0 factory-reset yes"
        )
    box.factory_reset()
    return "saved configuration erased: reset to start with factory settings"
