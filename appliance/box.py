"""The running box: platform, disks, flash, the three configs, identity, trace, services.

Configs (see appliance/config/model.py):
    running  what `config change/add/rem` edited           (lost on reset unless written)
    active   what the services use; `config activate` moves live-applicable changes here
    saved    what `config write` stored in VARS; every boot starts with running=active=saved

Every method either completes or raises BoxError with nothing changed: the console shell
turns that into one line and carries on.

What services, commands and the web UI read from a box (all declared in __init__):
    platform: Platform              the hardware (appliance/hal/platform.py)
    disks: dict[DiskRole, BlockDevice]
    flash: Flash | None             the mounted flash (None: not usable, see the boot trace)
    flash_device: BlockDevice | None    the flash disk even when the mount failed
    ram_bytes: int                  the usable RAM the flash is sized from
    trace: TraceBuffer              call it to trace; .text() is the buffer (/log.txt)
    events: Events                  subscribe to ConfigWritten, AddressChanged … (events.py)
    services: tuple[Service, ...]   in boot order
    commands: CommandTable          their `mod cmd` commands
    version, build, bootcode_build, hw, name     identity; version_line()
    running, active, saved: Config
    reset_required: list[str]       what `config activate` could not apply live, until reset
    addresses: dict[str, str]       "ETH0" → "10.0.2.15/24 (dhcp)", kept by the network service
    restart_request: RestartKind | None
    owner: BoxOwner                 the one thread that may change any of this (owner.py)
Methods: change(op), activate(), write(), unwritten(), factory_reset(), backup_text(),
restore_text(text), check_admin(user, password), uptime_ms(), request_reset(),
request_reboot(), get_var(key), commit_vars(changes), set_address(port, text), close().

One owner: every method that changes the box checks that it runs on the owner thread
(`owner.check`, NotOwner otherwise). Console lines, web requests and script lines get there
as jobs; a service's own thread hands its change over with `box.owner.call(fn)`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from appliance.config import (
    Activation,
    BackupHeader,
    Config,
    Op,
    RestoreError,
    activate,
    apply_op,
    commit_changes,
    describe_op,
    diff_count,
    load_from_vars,
    make_backup,
    parse_backup,
)
from appliance.config.model import ConfigError
from appliance.config.secrets import (
    KEY_VAR,
    BoxKey,
    Unopened,
    has_secrets,
    keep_own,
    open_secret,
    seal_secrets,
)
from appliance.config.store import Backup, vars_key
from appliance.config.types import FACTORY_PASSWORD, check_password
from appliance.config.varlines import create_line, under
from appliance.errors import BoxError, PartialRestoreError
from appliance.events import (
    AddressChanged,
    ConfigActivated,
    ConfigChanged,
    ConfigWritten,
    Events,
    RestartRequested,
    actor,
)
from appliance.flash.limits import FlashError
from appliance.hal.block import BlockDevice
from appliance.hal.types import DiskRole, RestartKind
from appliance.modcmd import CommandTable
from appliance.owner import BoxOwner, BoxRestarting
from appliance.trace import TraceBuffer
from appliance.version import PRODUCT, read_stamp

if TYPE_CHECKING:
    from appliance.flash import Flash, Vars
    from appliance.hal.platform import Platform
    from appliance.service import Service

# VARS keys besides the config that a factory reset erases (the HTTPS key pair,
# appliance/services/http/cert.py): the next boot makes a new one
FACTORY_RESET_DROPS = ("X509:",)
# … and the key the config's secrets are sealed with (config/secrets.py): a reset box is a
# new box, so backups made before it restore without their passwords (box.restore_text)
SECRETS_RESET_DROPS = (KEY_VAR,)


def check_flashdir_line(line: str) -> str | None:
    """What is wrong with a backup's `mod cmd FLASHDIR0 add-item <id> <attrs>` line."""
    words = line.split(" ", 5)
    if len(words) < 6 or [w.lower() for w in words[2:4]] != ["flashdir0", "add-item"]:
        return "only mod cmd FLASHDIR0 add-item <id> <attrs> lines belong in a backup"
    if not words[4].isdigit() or int(words[4]) > 0xFFFFFFFF:
        return f"bad FLASHDIR item id {words[4]!r}: a number 0..4294967295"
    return None


S = TypeVar("S")


class Box:
    def __init__(
        self,
        platform: Platform,
        disks: Mapping[DiskRole, BlockDevice],
        flash: Flash | None,
        trace: TraceBuffer,
        *,
        saved: Config | None = None,
        flash_device: BlockDevice | None = None,
        ram_bytes: int | None = None,
        services: Sequence[Service] = (),
        owner: BoxOwner | None = None,
    ) -> None:
        # made without one (a unit test): the thread that makes the box owns it
        self.owner = owner if owner is not None else BoxOwner()
        self.platform = platform
        self.disks: dict[DiskRole, BlockDevice] = dict(disks)
        self.flash = flash  # appliance.flash.Flash, or None if the flash disk is unusable
        # kept even when the mount failed: `mod cmd FLASHMAN0 reset all` formats it and
        # sets self.flash (appliance/services/flash.py), so a junk disk can be repaired
        self.flash_device = flash_device if flash_device is not None else disks.get(DiskRole.FLASH)
        # the usable RAM the flash is sized from (FLASHDIR's share), as at mount time
        self.ram_bytes = ram_bytes if ram_bytes is not None else platform.memory_info().usable
        self.trace = trace
        self.events: Events = trace.events
        # a subscriber that fails is said on the trace (once per subscriber), not swallowed
        self.events.on_error = trace
        self.services: tuple[Service, ...] = tuple(services)
        self.commands = CommandTable(c for s in self.services for c in s.commands())
        stamp = read_stamp()  # the running image's own version (after an update: the new one)
        self.version = stamp.version
        self.build = stamp.build
        self.bootcode_build: int = platform.bootcode_build
        self.booted_at = time.monotonic()
        self.saved = saved if saved is not None else Config.factory()
        self.running = self.saved
        self.active = self.saved
        self.reset_required: list[str] = []
        self.addresses: dict[str, str] = {}
        self.restart_request: RestartKind | None = None
        # the exclusive work under way ("firmware update from …"): one at a time; once
        # it is `protected` (a slot write and its record) a reset waits for its end
        # (boot.Runtime), before that a restart abandons it
        self.exclusive: str | None = None
        self.protected = False
        # the key the config's secrets are sealed with (config/secrets.py): read or made
        # at first need (box_key), kept after a factory reset until the restart (the
        # running config's secrets still need it)
        self._key: BoxKey | None = None

    # identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return str(self.active.value("SYS0", "name")) or PRODUCT

    @property
    def hw(self) -> str:
        return self.platform.hw_id

    def version_line(self) -> str:
        return (
            f"{self.version} {PRODUCT}[{self.build}], Bootcode[{self.bootcode_build}], "
            f"HW[{self.hw}]"
        )

    def uptime_ms(self) -> int:
        return int((time.monotonic() - self.booted_at) * 1000)

    def check_admin(self, user: str, password: str) -> bool:
        """The active ADMIN0 account: /user and /pwd (its hash; empty: FACTORY_PASSWORD)."""
        if user != str(self.active.value("ADMIN0", "user")):
            return False
        stored = self.secret(self.active, "ADMIN0", "pwd")
        return stored is not None and check_password(stored, password, user)

    # secrets (config/secrets.py) -----------------------------------------------------------
    def box_key(self) -> BoxKey:
        """The box's sealing key; made at first need and committed to VARS on its own at
        once, before anything sealed with it is shown or written (without a flash it stays
        in memory, and `_store` commits it with the first config that needs it)."""
        self.owner.check("sealing key")
        if self._key is None:
            self._key = BoxKey.from_var(self.get_var(KEY_VAR))
        if self._key is None:
            key = BoxKey.make()
            if self.flash is not None:
                self.commit_vars({KEY_VAR: key.raw})  # BoxError: no key, nothing changed
            self._key = key
        return self._key

    def secret(self, config: Config, module: str, arg: str) -> str | None:
        """A secret argument opened (`digest$…`, `clear$…`): "" when not set, None when
        it does not open with this box's key. Needs no owner (the services' threads and
        each web request ask): the key is read, never made, here."""
        key = self._key or BoxKey.from_var(self.get_var(KEY_VAR))
        return open_secret(key, config.value(module, arg), (module, ""), arg)

    def _known_key(self) -> BoxKey | None:
        """The key if the box has one: opening a value never makes one."""
        if self._key is None:
            self._key = BoxKey.from_var(self.get_var(KEY_VAR))
        return self._key

    def _seal(
        self, config: Config, before: Config | None, check: bool = True
    ) -> tuple[Config, list[Unopened]]:
        return seal_secrets(config, self.box_key, before, check=check, known_key=self._known_key)

    # config --------------------------------------------------------------------------
    def change(self, op: Op) -> str:
        """`config change|add|rem`: edits the running config only."""
        self.owner.check("config change")
        changed, message = apply_op(self.running, op)
        changed, unopened = self._seal(changed, self.running)
        for u in unopened:
            raise ConfigError(
                f"{u.label}: {u.error}: give the password in clear instead "
                f"(config add {u.key[0]} /{u.arg} <password>)"
            )
        self.running = changed
        self.events.emit(ConfigChanged(message, describe_op(op), actor()))
        return message

    def activate(self) -> Activation:
        """Move the live-applicable changes to the active config and let every service
        apply its part; `pending` (also kept in reset_required) is what needs a reset."""
        self.owner.check("config activate")
        result = activate(self.running, self.active)
        self.active = result.active
        pending = list(result.pending)
        for service in self.services:
            pending += [p for p in service.apply(self, result) if p not in pending]
        result = dataclasses.replace(result, pending=pending)
        self.reset_required += [p for p in pending if p not in self.reset_required]
        self.events.emit(ConfigActivated(tuple(result.applied), tuple(pending), actor()))
        return result

    def unwritten(self) -> int:
        return diff_count(self.running, self.saved)

    def _vars(self) -> Vars:
        if self.flash is None:
            raise BoxError(
                "no flash: the flash disk (IDE 1:0) is not mounted, see the boot trace; "
                "format it with mod cmd FLASHMAN0 reset all (erases the disk)"
            )
        return self.flash.vars

    def _store(
        self,
        config: Config,
        how: str,
        drop: tuple[str, ...] = (),
        variables: Mapping[str, bytes] | None = None,
    ) -> None:
        """`config` becomes the saved config; VARS keys starting with `drop` go with it,
        `variables` (a backup's `vars create` lines) are set in the same commit."""
        self.owner.check(f"config {how}")
        vars = self._vars()
        changes = commit_changes(list(vars.keys()), config)
        changes |= {k: None for k in vars.keys() if drop and k.startswith(drop)}
        changes |= dict(variables or {})
        if has_secrets(config) and vars.get(KEY_VAR) is None:
            # sealed with a key not on this flash (made while it was not mounted, or
            # dropped by a factory reset): the key goes with the config, atomically
            changes[KEY_VAR] = self.box_key().raw
        try:
            vars.commit(changes)  # one atomic commit
        except (FlashError, OSError) as e:  # the old saved config is still intact
            raise BoxError(f"config write failed, saved config unchanged: {e}") from e
        self.saved = config
        self.events.emit(ConfigWritten(len(config.objects), how, actor()))

    def write(self) -> str:
        """`config write`: the running config becomes the saved one, in one VARS commit."""
        self._store(self.running, "write")
        n = len(self.saved.objects)
        return f"config written to flash ({n} object{'s' if n != 1 else ''})"

    def factory_reset(self) -> None:
        """Forget the saved config and the box's own keys (the HTTPS certificate), in one
        commit; running/active follow at the next reset."""
        self._store(
            Config.factory(), "factory-reset", drop=FACTORY_RESET_DROPS + SECRETS_RESET_DROPS
        )

    def backup_header(self) -> BackupHeader:
        return BackupHeader(self.version, self.build, self.bootcode_build, self.hw)

    def backup_text(self) -> str:
        """The saved config as the box's backup file (what a download gives), followed by
        the variables as `vars create` lines and the FLASHDIR items as
        `mod cmd FLASHDIR0 add-item` lines."""
        lines: list[str] = []
        if self.flash is not None:
            store = self.flash.vars
            lines = [create_line(k, store.get(k) or b"") for k in under(store.keys(), "")]
            lines += self.flash.flashdir.backup_lines()
        return make_backup(self.saved, self.backup_header(), lines)

    def restore_text(self, text: str) -> Backup:
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
        config, unopened = self._seal(backup.config, None)
        if unopened:
            # another box's secrets (or this box's before a factory reset): this box's own
            # stay, the rest of the backup is restored
            config = keep_own(config, self.saved, unopened)
            backup = dataclasses.replace(backup, notes=[_kept_own_note(u) for u in unopened])
        backup = dataclasses.replace(backup, config=config)
        # BoxError: saved config (and variables) unchanged
        self._store(config, "restore", variables=backup.variables)
        for at, item_id, attrs in items:
            try:
                assert self.flash is not None  # checked above: items need the flash
                self.flash.flashdir.put(item_id, attrs)
            except (FlashError, OSError) as e:  # flash full …: say what is stored
                raise PartialRestoreError(at, e) from e
        return backup

    def load_saved(self) -> None:
        """Read the saved config from VARS (boot); damaged entries are traced and skipped."""
        self.owner.check("load saved config")
        if self.flash is not None:
            self.saved = load_from_vars(self.flash.vars, self.trace)
            loaded = self.saved
            try:
                self.saved, unopened = self._seal(loaded, None, check=False)
            except BoxError as e:  # older values to seal, and the new key not stored
                self.trace(f"config: sealing key kept in memory until config write: {e}")
                self._key = BoxKey.make()
                self.saved, unopened = self._seal(loaded, None, check=False)
            else:
                try:
                    self._reseal_older(loaded)
                except BoxError as e:  # the key is stored: they are sealed at config write
                    self.trace(f"config: older secrets stay as they are on the flash: {e}")
            for u in unopened:
                # kept as they are: the web admin has no login with them, the console
                # sets a new one (no factory password comes back by itself)
                self.trace(
                    f"config: {u.label} does not open ({u.error}): set it again on the "
                    f"console with config add {u.key[0]} /{u.arg} <password>, config write"
                )
        self.running = self.active = self.saved

    def _reseal_older(self, loaded: Config) -> None:
        """A flash written before secrets were sealed holds them open (digest$…, an SMTP
        password): its objects are stored again as sealed, after the key (box_key), so
        the flash holds them open no longer and a backup's digest stays the same across
        boots (UP0 scfg sends it once). BoxError: they stay open until config write."""
        changes: dict[str, bytes | None] = {
            vars_key(k): line.encode("ascii")
            for k, line in self.saved.object_lines()
            if loaded.objects.get(k) != self.saved.objects.get(k)
        }
        if changes:
            self.commit_vars(changes)
            self.trace(
                f"config: secrets now kept encrypted with the box's key: {', '.join(changes)}"
            )

    # the services' own state on the flash and the network ----------------------------
    def get_var(self, key: str) -> bytes | None:
        """A VARS value (None: not set, or no flash). Reading needs no owner: VARS values
        are replaced whole by commits, never changed in place."""
        return self.flash.vars.get(key) if self.flash is not None else None

    def commit_vars(self, changes: Mapping[str, bytes | None]) -> None:
        """A service's own VARS keys (the update state, the certificate …), in one commit;
        BoxError with nothing changed when there is no flash or the commit fails."""
        self.owner.check("VARS commit")
        vars = self._vars()
        try:
            vars.commit(changes)
        except (FlashError, OSError) as e:
            raise BoxError(f"{', '.join(changes)} not stored: {e}") from e

    def set_address(self, port: str, text: str | None) -> None:
        """The address a port has now ("10.0.2.15/24 (dhcp)"; None: none), as shown."""
        self.owner.check("address change")
        if text is None:
            self.addresses.pop(port, None)
        else:
            self.addresses[port] = text
        self.events.emit(AddressChanged(port, text))

    def begin_exclusive(self, what: str) -> None:
        """Start work only one of may run (a firmware install, from any path); BoxError
        names the one under way, or says the box is restarting."""
        self.owner.check(what)
        if self.exclusive is not None:
            raise BoxError(f"a {self.exclusive} is under way; try again when it has finished")
        if self.restart_request is not None:
            raise BoxError(f"the box is about to {self.restart_request}; try again after it")
        self.exclusive = what

    def protect_exclusive(self) -> None:
        """The exclusive work enters the part a reset must not cut (the slot write, the
        boot-control record, the update state): a reset waits for end_exclusive() from
        now on. BoxRestarting if a restart was asked for first: then nothing is written."""
        self.owner.check("protect exclusive work")
        if self.restart_request is not None:
            raise BoxRestarting(f"the box is about to {self.restart_request}")
        self.protected = True

    def end_exclusive(self) -> None:
        self.owner.check("end of exclusive work")
        self.exclusive = None
        self.protected = False

    # restarts ------------------------------------------------------------------------
    def request_reset(self) -> None:
        self.owner.check("reset")
        self.restart_request = RestartKind.RESET
        self.events.emit(RestartRequested(RestartKind.RESET, actor()))

    def request_reboot(self) -> None:
        """Forced watchdog trap: the crash-dump service writes a dump (on the event), as an
        unsolicited trap would, before the box restarts."""
        self.owner.check("reboot")
        self.restart_request = RestartKind.REBOOT
        self.events.emit(RestartRequested(RestartKind.REBOOT, actor()))

    def service(self, kind: type[S]) -> S | None:
        """The running service of this class (the shell's `version` asks the update service)."""
        return next((s for s in self.services if isinstance(s, kind)), None)

    def start_services(self, services: Sequence[Service]) -> None:
        """Probe and start more services, in order, after those the box was made with (the
        runtime: the ones that start after the prompt). Each is in `services` (its
        commands declared, stopped by close()) from just before its probe on."""
        self.owner.check("start services")
        for service in services:
            self.services = (*self.services, service)
            self.commands.add(service.commands())
            service.probe(self.platform, self.trace)
            service.start(self)

    def close(self) -> None:
        """Close the owner (the services' threads get BoxRestarting from now on, so their
        stops can join them), stop the services (reverse boot order), close the disks."""
        self.owner.close()
        for service in reversed(self.services):
            try:
                service.stop()
            except Exception as e:  # stopping must go on: the disks must be closed
                self.trace(f"{service.name}: stop failed: {type(e).__name__}: {e}")
        close_disks(self.disks)


def _kept_own_note(u: Unopened) -> str:
    return (
        f"{u.label} not restored: {u.error}; this box's own was kept. To use the other "
        f"password here: config add {u.key[0]} /{u.arg} <password>, then config write"
    )


def close_disks(disks: Mapping[DiskRole, BlockDevice]) -> None:
    for dev in disks.values():
        dev.close()


__all__ = [
    "FACTORY_PASSWORD",
    "Box",
    "BoxError",
    "PartialRestoreError",
    "RestoreError",
    "close_disks",
]
