"""The running box: platform, disks, flash, the three configs, identity, restart requests.

Configs (see appliance/config/model.py):
    running  what `config change/add/rem` edited           (lost on reset unless written)
    active   what the services use; `config activate` moves live-applicable changes here
    saved    what `config write` stored in VARS; every boot starts with running=active=saved

Every method either completes or raises BoxError with nothing changed: the console shell
turns that into one line and carries on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from appliance.config import (
    Activation,
    BackupHeader,
    Config,
    Op,
    RestoreError,
    activate,
    apply_op,
    commit_changes,
    diff_count,
    load_from_vars,
    make_backup,
    parse_backup,
)
from appliance.hal.block import BlockDevice
from appliance.hal.platform import DiskRole, Platform
from appliance.services.crashdump import CrashInfo, write_crash_record
from appliance.version import BUILD, FIRMWARE_VERSION, PRODUCT

Trace = Callable[[str], None]
# VARS keys besides the config that a factory reset erases (the HTTPS key pair,
# appliance/services/http/cert.py)
FACTORY_RESET_DROPS = ("X509:",)


class BoxError(Exception):
    """A box operation was refused; the message says why and what to do."""


class PartialRestoreError(BoxError):
    """A restore stored the config but not all FLASHDIR items (flash full, write error).

    Unlike RestoreError something did change: `line` is the file's line of the first item
    not written; the items before it and the config are on the flash."""

    def __init__(self, line: int, cause: Exception) -> None:
        super().__init__(
            f"config restored; FLASHDIR items from line {line} on not written: {cause}"
        )
        self.line = line


def check_flashdir_line(line: str) -> str | None:
    """What is wrong with a backup's `mod cmd FLASHDIR0 add-item <id> <attrs>` line."""
    words = line.split(" ", 5)
    if len(words) < 6 or [w.lower() for w in words[2:4]] != ["flashdir0", "add-item"]:
        return "only mod cmd FLASHDIR0 add-item <id> <attrs> lines belong in a backup"
    if not words[4].isdigit() or int(words[4]) > 0xFFFFFFFF:
        return f"bad FLASHDIR item id {words[4]!r}: a number 0..4294967295"
    return None


class Box:
    def __init__(
        self,
        platform: Platform,
        disks: Mapping[DiskRole, BlockDevice],
        flash: Any | None,
        trace: Trace,
        *,
        saved: Config | None = None,
        flash_device: BlockDevice | None = None,
        ram_bytes: int | None = None,
    ) -> None:
        self.platform = platform
        self.disks = dict(disks)
        self.flash = flash  # appliance.flash.Flash, or None if the flash disk is unusable
        # kept even when the mount failed: `mod cmd FLASHMAN0 reset all` formats it and
        # sets self.flash (appliance/flash/commands.py), so a junk disk can be repaired
        self.flash_device = flash_device if flash_device is not None else disks.get(DiskRole.FLASH)
        # the usable RAM the flash is sized from (FLASHDIR's share), as at mount time
        self.ram_bytes = ram_bytes if ram_bytes is not None else platform.memory_info().usable
        self.trace = trace
        self.version = FIRMWARE_VERSION
        self.build = BUILD
        self.bootcode_build: int = getattr(platform, "bootcode_build", BUILD)
        self.booted_at = time.monotonic()
        self.saved = saved if saved is not None else Config.factory()
        self.running = self.saved
        self.active = self.saved
        self.restart_request: str | None = None  # "reset" | "reboot"

    # identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.active.value("SYS0", "name")) or PRODUCT

    @property
    def hw(self) -> str:
        return getattr(self.platform, "hw_id", f"{PRODUCT}-{self.platform.name}")

    def version_line(self) -> str:
        return (
            f"{self.version} {PRODUCT}[{self.build}], Bootcode[{self.bootcode_build}], "
            f"HW[{self.hw}]"
        )

    # config --------------------------------------------------------------------------
    def change(self, op: Op) -> str:
        """`config change|add|rem`: edits the running config only."""
        self.running, message = apply_op(self.running, op)
        return message

    def activate(self) -> Activation:
        result = activate(self.running, self.active)
        self.active = result.active
        return result

    def unwritten(self) -> int:
        return diff_count(self.running, self.saved)

    def _vars(self) -> Any:
        if self.flash is None:
            raise BoxError(
                "no flash: the flash disk (IDE 1:0) is not mounted, see the boot trace; "
                "format it with mod cmd FLASHMAN0 reset all (erases the disk)"
            )
        return self.flash.vars

    def _store(self, config: Config) -> None:
        vars = self._vars()
        try:
            vars.commit(commit_changes(list(vars.keys()), config))  # one atomic commit
        except Exception as e:  # FlashError family; the old saved config is still intact
            raise BoxError(f"config write failed, saved config unchanged: {e}") from e
        self.saved = config

    def write(self) -> str:
        """`config write`: the running config becomes the saved one, in one VARS commit."""
        self._store(self.running)
        n = len(self.saved.objects)
        return f"config written to flash ({n} object{'s' if n != 1 else ''})"

    def factory_reset(self) -> None:
        """Forget the saved config and the box's own keys (the HTTPS certificate: a new
        one is made at the next boot), in one commit; running/active follow at reset."""
        vars = self._vars()
        changes = commit_changes(list(vars.keys()), Config.factory())
        changes |= {k: None for k in vars.keys() if k.startswith(FACTORY_RESET_DROPS)}
        try:
            vars.commit(changes)
        except Exception as e:  # FlashError family; the old saved config is still intact
            raise BoxError(f"factory reset failed, saved config unchanged: {e}") from e
        self.saved = Config.factory()

    def backup_header(self) -> BackupHeader:
        return BackupHeader(self.version, self.build, self.bootcode_build, self.hw)

    def backup_text(self) -> str:
        """The saved config as the box's backup file (what a download gives), followed by
        the FLASHDIR items as `mod cmd FLASHDIR0 add-item` lines."""
        items = self.flash.flashdir.backup_lines() if self.flash is not None else []
        return make_backup(self.saved, self.backup_header(), items)

    def restore_text(self, text: str) -> Config:
        """Check a whole backup file, then store it as the saved config in one commit.

        Everything that can be checked is checked before anything is written: a bad line
        raises RestoreError (its line number + reason), a failed config commit BoxError;
        either way nothing changed. FLASHDIR items are put after the config commit, one by
        one (another flash owner, so not in the same transaction): if one fails (flash
        full …) PartialRestoreError names its line — the config and the earlier items are
        stored. The running config follows at the next `reset`, as after an upload on the
        box. (The console has no way to send a file; this is for the HTTP upload.)
        """
        backup = parse_backup(text, check_extra=check_flashdir_line)
        if backup.extra and self.flash is None:
            raise RestoreError(
                backup.extra_at[0],
                "FLASHDIR items need the flash, which is not mounted (see the boot trace)",
            )
        items = [
            (at, int(words[4]), words[5])
            for at, words in zip(
                backup.extra_at, (x.split(" ", 5) for x in backup.extra), strict=True
            )
        ]
        self._store(backup.config)  # BoxError: saved config unchanged
        for at, item_id, attrs in items:
            try:
                self.flash.flashdir.put(item_id, attrs)
            except Exception as e:  # FlashFullError, OSError …: say what is stored
                raise PartialRestoreError(at, e) from e
        return backup.config

    def load_saved(self) -> None:
        """Read the saved config from VARS (boot); damaged entries are traced and skipped."""
        if self.flash is not None:
            self.saved = load_from_vars(self.flash.vars, self.trace)
        self.running = self.active = self.saved

    # restarts ------------------------------------------------------------------------
    def request_reset(self) -> None:
        self.restart_request = "reset"

    def request_reboot(self) -> None:
        """Forced watchdog trap: leave a crash record, as an unsolicited trap would."""
        dump = self.disks.get(DiskRole.DUMP)
        if dump is not None:
            try:
                write_crash_record(
                    dump,
                    CrashInfo(
                        time=int(time.time()),
                        uptime_ms=int((time.monotonic() - self.booted_at) * 1000),
                        build=self.build,
                        version=self.version,
                        reason="watchdog trap (reboot command)",
                        reported=False,
                    ),
                )
            except (OSError, ValueError) as e:
                self.trace(f"reboot: no crash record written: {e}")
        self.restart_request = "reboot"

    def close(self) -> None:
        close_disks(self.disks)


def close_disks(disks: Mapping[DiskRole, BlockDevice]) -> None:
    """Close what can be closed (files; in-memory test disks have no close)."""
    for dev in disks.values():
        close = getattr(dev, "close", None)
        if close:
            close()


__all__ = ["Box", "BoxError", "PartialRestoreError", "RestoreError", "close_disks"]
