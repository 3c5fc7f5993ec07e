"""Module commands of the configuration itself (`mod cmd CFG0 …`)."""

from __future__ import annotations

from typing import Any

from appliance import modcmd


@modcmd.register("CFG0", "backup", "print the saved config as a backup file")
def _backup(box: Any, args: list[str]) -> str:
    if args:
        raise modcmd.ModCmdError(f"backup takes no arguments, got {args[0]!r}")
    return box.backup_text().rstrip("\n")


@modcmd.register("CFG0", "factory-reset", "erase the saved config; reset then starts fresh")
def _factory_reset(box: Any, args: list[str]) -> str:
    if args != ["yes"]:
        raise modcmd.ModCmdError(
            "this erases the saved configuration: confirm with mod cmd CFG0 factory-reset yes"
        )
    box.factory_reset()
    return "saved configuration erased: reset to start with factory settings"
