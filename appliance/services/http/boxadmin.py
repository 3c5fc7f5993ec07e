"""`AdminBox` on the running box: what the HTTP admin may see and do, from the runtime.

One per boot (the HTTP service makes it in start(box)). The web server's threads never
touch the box: what reads several of its parts at once or changes it is a job on the box's
owner (`box.owner.call`, appliance/owner.py), as a console line is, and console lines run
through the runtime's own interpreter. What needs no owner is read directly: the active
config (an immutable value, replaced whole by `config activate`) for the login and the
login page, the trace buffer, the firmware slots (the update service's cache).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from appliance.config import Config, Op, RestoreError, activate, apply_op
from appliance.errors import BoxError, PartialRestoreError
from appliance.events import Event
from appliance.formats.crashdump import format_dump, read_dump
from appliance.hal.cf import CfVolume
from appliance.hal.memory import MiB
from appliance.hal.types import DiskRole
from appliance.modcmd import ModCmdError
from appliance.service import CommandRunner
from appliance.services.alarms.service import AlarmService
from appliance.services.http.host import (
    NO_LOGIN,
    Account,
    Address,
    Alarms,
    BoxStatus,
    Certificates,
    Firmware,
    FirmwareRefused,
    FirmwareSlot,
    RestoreRefused,
    Vars,
)
from appliance.services.update.install import UpdateError
from appliance.services.update.service import UpdateService
from appliance.trace import Tag

if TYPE_CHECKING:  # appliance.box imports the services package, which imports this
    from appliance.box import Box


class BoxAdmin:
    """`AdminBox` on one booted box; a restart makes a new box and a new BoxAdmin."""

    def __init__(
        self,
        box: Box,
        runner: CommandRunner,
        cf_volume: Callable[[], CfVolume | None] = lambda: None,
        certificates: Callable[[], Certificates | None] = lambda: None,
    ) -> None:
        self.box = box
        self.runner = runner
        self._cf_volume = cf_volume  # the CF service's (appliance.services.cf)
        self._certificates = certificates  # the HTTP service's X509 module

    # -- reading ------------------------------------------------------------------------
    def status(self) -> BoxStatus:
        # the slots first, off the owner: reading the boot disk must not hold up consoles
        firmware = _firmware(self.box)
        return self.box.owner.call(lambda: self._status(firmware))

    def _status(self, firmware: Firmware) -> BoxStatus:
        # on the owner thread: one consistent snapshot
        box = self.box
        # what waits for a reset: activated changes that need one, and saved settings
        # the running box does not have yet
        pending = list(box.reset_required)
        pending += [p for p in activate(box.saved, box.active).pending if p not in pending]
        flash = (
            box.flash.flashman.info()
            if box.flash is not None
            else "no flash: the flash disk (IDE 1:0) is not mounted, see the boot trace"
        )
        return BoxStatus(
            version=box.version_line(),
            name=box.name,
            hw=box.hw,
            uptime_s=box.uptime_ms() // 1000,
            dram_mb=box.ram_bytes // MiB,
            addresses=tuple(_addresses(box)),
            flash=flash,
            reset_required=tuple(pending),
            unwritten=box.unwritten(),
            factory_password=not box.active.value("ADMIN0", "pwd"),
            firmware=firmware,
            alarms=self._alarm_count(box),
        )

    @staticmethod
    def _alarm_count(box: Box) -> int:
        alarms = box.service(AlarmService)
        return alarms.active_count() if alarms is not None else 0

    def alarms(self) -> Alarms | None:
        return self.box.service(AlarmService)

    def certificates(self) -> Certificates | None:
        return self._certificates()

    def public_status(self) -> BoxStatus:
        """What the login page shows, read without the owner (a flood of unauthenticated
        requests never queues behind real work): name, version, the factory password."""
        box = self.box
        active = box.active
        return BoxStatus(
            version=box.version_line(),
            name=str(active.value("SYS0", "name")) or box.name,
            hw=box.hw,
            uptime_s=0,
            dram_mb=0,
            addresses=(),
            flash="",
            reset_required=(),
            unwritten=0,
            factory_password=not active.value("ADMIN0", "pwd"),
            firmware=Firmware((), ""),
        )

    def running(self) -> Config:
        return self.box.owner.call(lambda: self.box.running)

    def account(self) -> Account:
        active = self.box.active  # immutable: no owner needed, so a 401 costs no job
        stored = self.box.secret(active, "ADMIN0", "pwd")  # opened with the box's key
        # None: sealed with a key this box lacks (box.load_saved traced it): no login
        # matches NO_LOGIN, the console sets a new password
        user = str(active.value("ADMIN0", "user"))
        return Account(user, NO_LOGIN if stored is None else stored)

    def backup_text(self) -> str:
        return self.box.owner.call(self.box.backup_text)

    def trace_text(self) -> str:
        return self.box.trace.text()

    def crash_dump_text(self) -> str:
        """The post-mortem dump as support staff read it (`ipva dump show` prints the same)."""

        def read() -> str:
            dump = self.box.disks.get(DiskRole.DUMP)
            if dump is None:
                return "no crash dump: this box has no dump disk\n"
            return format_dump(read_dump(dump))

        return self.box.owner.call(read)

    def vars(self) -> Vars | None:
        return OwnedVars(self.box) if self.box.flash is not None else None

    def cf_volume(self) -> CfVolume | None:
        return self._cf_volume()

    # -- acting -------------------------------------------------------------------------
    def execute(self, line: str) -> str:
        return self.runner.execute(line)

    def apply_changes(self, ops: Sequence[Op]) -> list[str]:
        """One form's config requests as one job: tried together on a copy of the running
        config first (ConfigError: none is taken), then made and activated, with no other
        line in between; the answers as the console gives them."""

        def job() -> list[str]:
            box = self.box
            config = box.running
            for op in ops:
                config, _ = apply_op(config, op)  # raises before anything changed
            answers = [box.change(op) for op in ops]
            return [*answers, self.runner.execute("config activate")]  # on the owner: inline

        return self.box.owner.call(job)

    def restore_text(self, text: str) -> str:
        try:
            backup = self.box.owner.call(lambda: self.box.restore_text(text))
        except RestoreError as e:
            raise RestoreRefused(str(e), e.line) from e
        except PartialRestoreError as e:
            raise RestoreRefused(str(e), e.line, partial=True) from e
        except BoxError as e:
            raise RestoreRefused(str(e)) from e
        done = "config restored: it is the saved configuration now; reset to run it"
        # another box's passwords: this box's own were kept, and what to do is said
        done = "\n".join([done, *backup.notes])
        if not backup.skipped:
            return done
        # a real box's backup: what it has that the IPVA lacks is named, line by line
        lines = "; ".join(f"line {n} ({module})" for n, module in backup.skipped)
        return f"{done}\nskipped (modules this box does not have): {lines}"

    def trace(self, text: str) -> None:
        self.box.trace(text, Tag.HTTP)

    def emit(self, event: Event) -> None:
        self.box.owner.post(lambda: self.box.events.emit(event))

    def install_firmware(self, chunks: Iterable[bytes], source: str) -> str:
        # in this request's thread: an upload takes as long as the client does, and
        # consoles must not wait for it; the update service takes the box's one install
        # (refused while another runs) and hands its state changes to the owner
        update = self.box.service(UpdateService)
        if update is None:
            raise FirmwareRefused("this box has no update service; nothing was written")
        try:
            return update.install(chunks, source=source).describe()
        except (UpdateError, ModCmdError) as e:
            raise FirmwareRefused(str(e)) from e


class OwnedVars:
    """The box's VARS as the `Vars` the certificate code reads and commits, each call a job
    on the box's owner (the HTTP start thread keeps its certificate there)."""

    def __init__(self, box: Box) -> None:
        self.box = box

    def get(self, key: str) -> bytes | None:
        return self.box.owner.call(lambda: self.box.get_var(key))

    def keys(self) -> Iterable[str]:
        return self.box.owner.call(
            lambda: list(self.box.flash.vars.keys()) if self.box.flash is not None else []
        )

    def commit(self, updates: Mapping[str, bytes | None]) -> None:
        self.box.owner.call(lambda: self.box.commit_vars(updates))


def _firmware(box: Box) -> Firmware:
    update = box.service(UpdateService)
    if update is None:
        return Firmware((), "", "no update service")
    try:
        slots = update.slot_status()
    except (ModCmdError, OSError, ValueError) as e:  # ValueError: disks closed by a restart
        return Firmware((), update.last_result(box), str(e))
    return Firmware(
        tuple(
            FirmwareSlot(
                s.letter, s.file, s.version, s.build, s.state, s.running, s.detail, s.signed
            )
            for s in slots
        ),
        update.last_result(box),
    )


def _addresses(box: Box) -> list[Address]:
    """ETH0/ETH1 with the address the network service shows, and the MAC; hosted: none."""
    from appliance.hal.nics import read_link_state

    out = []
    for port in box.platform.ports():
        text = box.addresses.get(port.name, "")  # "10.0.2.15/24 (dhcp)"
        addr, _, mode = text.partition(" ")
        try:
            mac = read_link_state(port.ifname).mac
        except OSError:
            mac = ""
        out.append(Address(port.name, addr, mode.strip("()") or "off", mac))
    return out
