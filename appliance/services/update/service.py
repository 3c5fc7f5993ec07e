"""The update service: UP0 (firmware into the other slot) and UP1 (the update-server client).

    mod cmd UP0 info                          both slots, which runs, the last update's result
    mod cmd UP0 prot <url-or-dir/> [<final>] [<serial>|ser <serial>]
                                              fetch ipva.bin over HTTP(S) (a directory URL gets
                                              ipva.bin) and install it, once per <serial> (kept
                                              in UPDATE/PROT; unset: the running build)
    mod cmd UP0 scfg <url> [ser <serial>] [/always <command>]
                                              PUT the backup (or the command's output) there,
                                              once per <serial> (UPDATE/SCFG; without one: the
                                              saved configuration's digest)
    mod cmd UP1 provision <min>               provisioning on (UP1 /provision <min>; 0: off)
    mod cmd UP1 check <final> <serial>        in a script: the rest runs once per <serial>
                                              (UPDATE/CHECK); typed on the console it only says
                                              whether the serial is done
    mod cmd UP1 times /allow <hours> [/initial <min>]   when UP1 may poll (UPDATE/TIMES)
    mod cmd UP1 poll                          poll the script now, whatever the hours
    mod cmd UP1 info                          URL, schedule, the last poll
    config change UP1 /url <url> /poll <min>  the script URL and the poll interval
    ireset, resetn, iresetn                   console lines (the shell): a reset when idle /
                                              now if asked / when idle if asked (reset_final)

URLs take `#t` (ipva), `#m` (MAC), `#h` (hardware id) and `#i` (the box's address); every
poll appends the box's state, `PROT=<running build>&BOOT=<bootcode build>` and, once set,
`CHECK=<UPDATE/CHECK>&SCFG=<UPDATE/SCFG>`, as innovaphone's update server expects. One poll
runs its script once: nothing the script does (a `config activate` of a new /url or /poll)
polls again before the interval; the next poll comes /poll minutes after this one.

At start — the last service of the boot, so the flash is mounted, the config loaded and the
network configured — a firmware on trial confirms itself (install.py). Uploads over HTTP call
`install()` directly.

Threads, and who owns what: a download and the slot write run in the `up0-worker` thread (one
per install), a poll and its script in the `up1-poll` thread, so a console never waits for a
server. Neither touches the box itself: the update state in VARS (UPDATE/PROT, /CHECK, /LAST),
a final's reset and every script line go to the box's owner as jobs (appliance/owner.py).
One firmware install runs at a time, from any path (console, web, UP1 script, upload):
`box.begin_exclusive` refuses a second with the one under way. A `reset` abandons a
download under way (nothing is written) but waits for an install that is writing its slot,
record and UPDATE/ state (`box.protect_exclusive`), so what the box restarts with is
complete. stop() lets a slot write finish (a `reboot` does not wait for it: the record
flips only after a complete slot either way), then joins both threads.

"Idle", for the `ireset`/`iresetn` finals, means that no console line, web command or script
line ran for `IDLE_S` seconds: the IPVA carries no calls, so the admin's own activity (or the
script's) is what a reset would interrupt. A reset is "asked for" (`resetn`, `iresetn`) when a
new firmware waits in the other slot for its first start, or when `config activate` left
changes that only a reset applies (box_info.xml's reset-required).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from appliance.config import parse_op, split_words
from appliance.errors import BoxError
from appliance.formats.ipvabin import FirmwareInfo
from appliance.formats.signify import SignifyError
from appliance.hal.bootctl import NO_SLOT, SLOT_LETTERS, SLOT_NAMES, BootControl, SlotState
from appliance.hal.nics import read_link_state
from appliance.hal.types import DiskRole, Unavailable
from appliance.modcmd import Command, ModCmdError
from appliance.owner import BoxRestarting, join_checked
from appliance.service import BaseService, CommandRunner
from appliance.services.update.install import Installed, Installer, UpdateError, slot_name
from appliance.services.update.script import (
    Final,
    Identity,
    Scfg,
    ScriptError,
    fill_url,
    firmware_url,
    may_poll,
    parse_final,
    parse_hours,
    parse_prot,
    parse_scfg,
    run_script,
    script_url,
)
from appliance.trace import Tag
from appliance.version import PRODUCT
from appliance.xmltext import element

if TYPE_CHECKING:
    from appliance.box import Box
    from appliance.config import Activation

IDLE_S = 30.0  # no command for this long: the box is idle (ireset, iresetn)
WRITE_WAIT_S = 60.0  # a restart waits this long for a slot write under way (seconds, ~7 MB)
FETCH_TIMEOUT_S = 30.0
JOIN_S = 5.0  # a stop waits this long for a thread (one stuck in a fetch is traced)
SCRIPT_MAX = 256 << 10  # an update script is a page of console lines
MINUTE_S = 60.0  # one minute of /poll and /initial, in seconds (tests shorten it)
VAR_PROT, VAR_CHECK, VAR_TIMES, VAR_LAST, VAR_SCFG = (
    "UPDATE/PROT", "UPDATE/CHECK", "UPDATE/TIMES", "UPDATE/LAST", "UPDATE/SCFG",
)  # fmt: skip


@dataclass(frozen=True)
class SlotStatus:
    """One firmware slot as the box shows it (version, box_info.xml, General/Info).

    state: `confirmed` (known to start), `trial` (new: starts at the next reset, or runs and
    is not confirmed yet), `failed` (its trial did not start), `previous` (held the firmware
    before the running one: the fallback if the running one fails its check), `empty`."""

    slot: int
    version: str  # "" when empty
    build: int  # 0 when empty
    state: str
    running: bool
    detail: str  # the sentence `version` and UP0 info show
    signed: str = ""  # FirmwareInfo.signed_text(): "signed (release)", "… DEVELOPMENT key …"

    @property
    def letter(self) -> str:
        return SLOT_LETTERS[self.slot]

    @property
    def file(self) -> str:
        return SLOT_NAMES[self.slot]

    @property
    def firmware(self) -> str:
        return f"{self.version} build {self.build}" if self.version else "empty"


class UpdateService(BaseService):
    name = "update"
    config_modules: tuple[str, ...] = ("UP1",)

    def __init__(
        self,
        runner: CommandRunner | None = None,
        *,
        clock: Callable[[], datetime.datetime] = datetime.datetime.now,
    ) -> None:
        self.runner = runner
        self.clock = clock
        self._box: Box | None = None
        self._installer: Installer | None = None
        self._why_not = "the update service has not started"
        # set while a verified image is written to the boot disk: a restart waits for it
        self._writing = threading.Condition()
        self._write_active = False
        # the slots' headers, read once (replaced whole, so any thread may read it): within
        # a boot only _install changes a slot, and it drops this
        self._slot_cache: dict[int, FirmwareInfo | None] | None = None
        self._stop = threading.Event()
        self._poll_now = threading.Event()
        self._poll_forced = False  # mod cmd UP1 poll: the next poll whatever the hours
        self._fetches: list[Fetch] = []  # the fetches under way: stop() aborts them
        self._poller: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._resetter: threading.Thread | None = None  # an ireset/iresetn waiting for idle
        self._in_script = False  # the poller runs a script: its activations do not re-poll
        self.last_poll = ""

    # --- life cycle ---------------------------------------------------------------------
    def start(self, box: Box) -> None:
        self._box = box
        try:
            files = box.platform.boot_files()
            keyring = box.platform.keyring()
        except (Unavailable, SignifyError) as e:
            self._why_not = str(e)
            return
        self._installer = Installer(
            files,
            box.disks[DiskRole.BOOT],
            box.platform.running_slot(),
            keyring,
            None,
            memory_free=box.platform.memory_free,
        )
        self._report_boot(box, self._installer)
        self._start_poller(box)

    def _report_boot(self, box: Box, inst: Installer) -> None:
        record = inst.record()
        # the bootcode checked the running slot's signature: its key number names the key
        # here (no Ed25519 on the boot's path)
        running = inst.slot_info(inst.running_slot, verify=False)
        if running is not None and (running.development or not running.signer):
            # a development build (or one from before signatures) says so at every start
            box.trace(
                f"UP0: firmware in slot {slot_name(inst.running_slot)} is {running.signed_text()}",
                Tag.UPDATE,
            )
        note = box.platform.boot_note()
        if note:
            # the bootcode left the slot the record chose (it failed its check or used up
            # its tries): that is the last update's outcome, shown by version and UP0 info
            box.trace(f"UP0: {note}", Tag.UPDATE)
            self._remember(box, note)
        elif record.state is SlotState.TRIAL and record.active == inst.running_slot:
            try:
                inst.confirm()
            except OSError as e:
                box.trace(f"UP0: could not confirm the new firmware: {e}", Tag.UPDATE)
                return
            # the slot's own header (hosted, the code that runs is the host's)
            info = inst.slot_info(inst.running_slot)
            fw = f"{info.version} build {info.build}" if info else box.version
            box.trace(
                f"UP0: firmware {fw} in slot {slot_name(inst.running_slot)} started "
                "and is confirmed: it is the known-good firmware now",
                Tag.UPDATE,
            )
            self._remember(box, f"{fw} started and confirmed")
        elif record.failed != NO_SLOT and record.failed != inst.running_slot:
            other = inst.slot_info(record.failed)
            what = f"{other.version} build {other.build}" if other else "its firmware"
            box.trace(
                f"UP0: slot {slot_name(record.failed)} ({what}) did not start; running "
                f"slot {slot_name(inst.running_slot)} ({box.version})",
                Tag.UPDATE,
            )

    def apply(self, box: Box, activation: Activation) -> list[str]:
        # a new /url or /poll takes effect at once: wake the poller; but not one the running
        # script activated (update servers end every answer with config activate): its
        # next poll comes after the (new) interval
        if self._in_script:
            return []
        if any(a.startswith("UP1") for a in activation.applied):
            self._poll_now.set()
            if self._poller is None:
                self._start_poller(box)
        return []

    def stop(self) -> None:
        self._stop.set()
        self._poll_now.set()
        for fetch in list(self._fetches):  # a server holding a body back: wake the reader
            fetch.abort()
        # an image still arriving is abandoned (the guard in _install); one being written
        # is finished first: the record flips only after a complete slot either way
        with self._writing:
            self._writing.wait_for(lambda: not self._write_active, timeout=WRITE_WAIT_S)
        for t in (self._poller, self._worker, self._resetter):
            late = join_checked(t, JOIN_S)
            if late and self._box is not None:
                self._box.trace(f"UP0: {late}", Tag.UPDATE)

    # --- firmware ------------------------------------------------------------------------
    def installer(self) -> Installer:
        if self._installer is None:
            raise ModCmdError(f"UP0: no firmware update here: {self._why_not}")
        return self._installer

    def install(self, chunks: Iterable[bytes], *, source: str) -> Installed:
        """Install an image (an upload, in the caller's thread): verified, into the other
        slot, tried at the next reset. UpdateError (nothing changed) with the reason
        otherwise, also when another install is under way."""
        inst = self.installer()
        box = self._need_box()
        try:
            box.owner.call(lambda: box.begin_exclusive(f"firmware update from {source}"))
        except BoxError as e:
            raise UpdateError(str(e)) from e
        try:
            return self._install(inst, chunks, source)
        finally:
            box.owner.post(box.end_exclusive)  # a reset that waited for it follows

    def _install(self, inst: Installer, chunks: Iterable[bytes], source: str) -> Installed:
        box = self._need_box()
        box.trace(f"UP0: receiving firmware from {source}", Tag.UPDATE)
        try:
            done = inst.install(
                self._until_stopped(chunks),
                source=source,
                before_write=self._enter_write,
                step=lambda what: box.trace(f"UP0: {what}", Tag.UPDATE),
            )
        except UpdateError as e:
            box.trace(f"UP0: update from {source} failed: {e}", Tag.UPDATE)
            self._remember(box, f"update from {source} failed: {e}")
            raise
        except BoxRestarting:
            box.trace(
                f"UP0: update from {source} stopped: the box is restarting; nothing was written",
                Tag.UPDATE,
            )
            raise
        finally:
            self._slot_cache = None
            with self._writing:
                self._write_active = False
                self._writing.notify_all()
        box.trace(f"UP0: {done.describe()}", Tag.UPDATE)
        self._remember(
            box,
            f"{done.info.version} build {done.info.build} from {source} into slot "
            f"{SLOT_LETTERS[done.slot]}: waiting for a reset",
        )
        return done

    def _until_stopped(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The chunks, until the box goes down: then BoxRestarting, before a byte is written."""
        for chunk in chunks:
            if self._stop.is_set():
                raise BoxRestarting("the box is restarting")
            yield chunk

    def _enter_write(self) -> None:
        """The image is verified: from here to its end a reset waits for the install
        (box.protect_exclusive); a restart asked for before this abandons it."""
        box = self._need_box()
        box.owner.call(box.protect_exclusive)
        with self._writing:
            if self._stop.is_set():
                raise BoxRestarting("the box is restarting")
            self._write_active = True

    def prot(self, url: str, final: Final, serial: str | None) -> str:
        """`mod cmd UP0 prot` (on the owner thread): the install starts in the worker, the
        answer says so; refused while another install runs. Without UPDATE/PROT the serial
        is compared with the running build (a new box already on the firmware asked for)."""
        box = self._need_box()
        self.installer()
        done = self._get(box, VAR_PROT) or str(self._running_build(box))
        if serial is not None and serial == done:
            return f"UP0: serial {serial} is installed already (UPDATE/PROT), nothing to do"
        url = fill_url(firmware_url(url, PRODUCT), self._identity(box))
        if not url.lower().startswith(("http://", "https://")):
            raise ModCmdError(f"UP0 prot: {url!r} is not an http:// or https:// URL")
        try:
            box.begin_exclusive(f"firmware update from {url}")
        except BoxError as e:
            raise ModCmdError(f"UP0 prot: {e}") from e
        self._worker = threading.Thread(
            target=self._prot, args=(box, url, final, serial), name="up0-worker", daemon=True
        )
        self._worker.start()
        return f"UP0: fetching {url} (serial {serial or 'none'}, then {final.value}); see the trace"

    def _prot(self, box: Box, url: str, final: Final, serial: str | None) -> None:
        """The worker: download and install, store the serial, then the final."""
        try:
            with self._fetching(url) as chunks:
                self._install(self.installer(), chunks, url)
            if serial is not None:
                self._set(box, VAR_PROT, serial)
        except (UpdateError, BoxRestarting):
            return  # traced (and remembered)
        except ModCmdError as e:  # UPDATE/PROT not stored: the next poll may order it again
            box.trace(f"UP0: {e}", Tag.UPDATE)
            return
        except (OSError, ValueError) as e:  # urllib's URLError is an OSError
            box.trace(f"UP0: {url}: {describe_fetch_error(e)}; nothing was written", Tag.UPDATE)
            self._remember(box, f"update from {url} failed: {describe_fetch_error(e)}")
            return
        finally:
            box.owner.post(box.end_exclusive)  # a reset that waited for it follows
        self._finish(box, final, changed=True)

    # --- finals ---------------------------------------------------------------------------
    def _finish(self, box: Box, final: Final, *, changed: bool) -> None:
        if not final.restarts(changed):
            return
        try:
            if final.only_if_changed and box.owner.call(lambda: self.reset_asked(box)) is None:
                return  # resetn/iresetn: nothing asks for a reset
        except BoxRestarting:
            return
        if final.when_idle:
            box.trace(f"UP0: {final.value}: resetting once the box is idle", Tag.UPDATE)
            while not self._stop.is_set() and self._idle_for() < IDLE_S:
                self._stop.wait(1.0)
            if self._stop.is_set():
                return
        box.trace(f"UP0: {final.value}: resetting", Tag.UPDATE)
        try:
            box.owner.call(box.request_reset)
        except BoxRestarting:
            pass  # going down already

    def reset_asked(self, box: Box) -> str | None:
        """What asks for a reset (a new firmware waiting, changes only a reset applies)."""
        if self._installer is not None:
            record = self._installer.record()
            if record.state is SlotState.TRIAL and record.active != self._installer.running_slot:
                return f"a new firmware waits in slot {SLOT_LETTERS[record.active]}"
        if box.reset_required:
            return "changes need a reset: " + ", ".join(box.reset_required)
        return None

    def reset_final(self, box: Box, final: Final) -> str:
        """The console's `ireset`, `resetn`, `iresetn` (on the owner thread)."""
        asked = self.reset_asked(box)
        if final.only_if_changed and asked is None:
            return (
                f"{final.value}: nothing asks for a reset (no new firmware waiting, no change "
                "that needs one)"
            )
        why = f" ({asked})" if asked else ""
        if not final.when_idle:
            box.request_reset()
            return f"{final.value}: resetting{why}"
        if self._resetter is not None and self._resetter.is_alive():
            return f"{final.value}: a reset waits for the box to be idle already"
        self._resetter = threading.Thread(
            target=self._finish, args=(box, final), kwargs={"changed": True},
            name="up0-reset", daemon=True,
        )  # fmt: skip
        self._resetter.start()
        return (
            f"{final.value}: resetting once the box is idle (no console, web or script line "
            f"for {IDLE_S:.0f} s){why}"
        )

    # --- scfg: the backup to the update server ----------------------------------------------
    def scfg(self, box: Box, spec: Scfg) -> str:
        """`mod cmd UP0 scfg` (on the owner thread): what to send is taken now, the PUT runs
        in the worker (a script's next line waits for it)."""
        url = fill_url(spec.url, self._identity(box))
        if not url.lower().startswith(("http://", "https://")):
            raise ModCmdError(f"UP0 scfg: {url!r} is not an http:// or https:// URL")
        if self._worker is not None and self._worker.is_alive():
            raise ModCmdError("UP0 scfg: an update or upload is under way; try again after it")
        if spec.always is not None:
            if self.runner is None:
                raise ModCmdError("UP0 scfg: no console interpreter for /always")
            body, serial = self.runner.execute(spec.always) + "\n", None
        else:
            body = box.backup_text()
            # the saved configuration's own lines: not the variables the client itself
            # keeps (UPDATE/…), which change with every update and would send it again
            serial = (
                spec.serial
                or hashlib.sha256("\n".join(box.saved.lines()).encode()).hexdigest()[:32]
            )
            if self._get(box, VAR_SCFG) == serial:
                return f"UP0: backup {serial} sent already (UPDATE/SCFG), nothing to do"
        self._worker = threading.Thread(
            target=self._scfg, args=(box, url, body.encode(), serial), name="up0-worker",
            daemon=True,
        )  # fmt: skip
        self._worker.start()
        return f"UP0: sending the {'output' if spec.always else 'backup'} to {url}"

    def _scfg(self, box: Box, url: str, body: bytes, serial: str | None) -> None:
        try:
            put(url, body)
            if serial is not None:
                self._set(box, VAR_SCFG, serial)
        except (OSError, ValueError) as e:
            box.trace(f"UP0: {url}: {describe_fetch_error(e)}; not sent", Tag.UPDATE)
            return
        except (ModCmdError, BoxRestarting):
            return
        box.trace(f"UP0: sent {len(body)} bytes to {url}", Tag.UPDATE)

    def _idle_for(self) -> float:
        return self.runner.idle_for() if self.runner is not None else IDLE_S

    # --- UP1: the update-server client -----------------------------------------------------
    def _start_poller(self, box: Box) -> None:
        if not str(box.active.value("UP1", "url")) or self._installer is None:
            return
        self._poller = threading.Thread(target=self._poll_loop, name="up1-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        box = self._need_box()
        _allowed, initial = self._times(box)
        if initial and self._stop.wait(initial * MINUTE_S):
            return
        while not self._stop.is_set():
            self._poll_now.clear()
            allowed, _ = self._times(box)
            forced, self._poll_forced = self._poll_forced, False
            if forced or may_poll(self.clock().hour, allowed):
                try:
                    self.poll(box)
                except BoxRestarting:
                    return  # the box goes down; the next boot polls again
            minutes = int(box.active.value("UP1", "poll"))
            if minutes == 0:
                self._poll_now.wait()  # once per boot, unless the config changes
            else:
                self._poll_now.wait(minutes * MINUTE_S)

    def poll(self, box: Box) -> None:
        """Fetch the UP1 script and run it (in the poller's thread: its lines are jobs)."""
        url = str(box.active.value("UP1", "url"))  # an immutable config: any thread reads it
        if url:
            self._poll(box, url)

    def _identity(self, box: Box) -> Identity:
        ports = box.platform.ports()
        mac = read_link_state(ports[0].ifname).mac if ports else ""
        shown = box.owner.call(lambda: box.addresses.get("ETH0", ""))  # "10.0.2.15/24 (dhcp)"
        # #h names this box to update servers (they keep backups per hwid): the hardware
        # id with the MAC, as every VM has the same HW[IPVA-vm]
        hw_id = f"{box.hw}-{mac.replace(':', '').lower()}" if mac else box.hw
        return Identity(PRODUCT, mac, hw_id, shown.split("/")[0].split(" ")[0])

    def _state(self, box: Box) -> dict[str, str]:
        """The state args of every poll (update servers compare PROT with the firmware they
        want, CHECK with their scripts' signature)."""
        state = {"PROT": str(self._running_build(box)), "BOOT": str(box.bootcode_build)}
        for arg, key in (("CHECK", VAR_CHECK), ("SCFG", VAR_SCFG)):
            value = self._get(box, key)
            if value:
                state[arg] = value
        return state

    def _running_build(self, box: Box) -> int:
        """The build of the firmware that runs: its slot's header (hosted, where the code is
        the host's, the image the box "started"), else the runtime's own stamp."""
        try:
            running = next((s for s in self.slot_status() if s.running), None)
        except (ModCmdError, OSError):
            running = None
        return running.build if running is not None and running.build else box.build

    def _poll(self, box: Box, base: str) -> None:
        url = script_url(base, self._identity(box), self._state(box))
        try:
            text = fetch_text(self._fetching(url), SCRIPT_MAX)
        except (OSError, ValueError) as e:  # urllib's URLError is an OSError
            self.last_poll = f"{self.clock():%Y-%m-%d %H:%M} {url}: {describe_fetch_error(e)}"
            box.trace(f"UP1: {url}: {describe_fetch_error(e)}", Tag.UPDATE)
            return
        self._in_script = True
        try:
            run = run_script(text.splitlines(), self._script_line, self._get(box, VAR_CHECK))
            self._wait_worker()
        finally:
            self._in_script = False
        if run.skipped_at is not None:
            self.last_poll = f"{self.clock():%Y-%m-%d %H:%M} {url}: up to date"
            return
        for line, answer in run.errors:
            box.trace(f"UP1: {line}: {answer}", Tag.UPDATE)
        self.last_poll = (
            f"{self.clock():%Y-%m-%d %H:%M} {url}: ran {len(run.lines)} lines, "
            f"{len(run.errors)} errors"
        )
        box.trace(f"UP1: {url}: ran {len(run.lines)} lines", Tag.UPDATE)
        if run.check is not None:
            final, serial = run.check
            self._set(box, VAR_CHECK, serial)
            self._finish(box, final, changed=True)

    def _script_line(self, line: str) -> str:
        """One script line, as typed (a job on the owner); an install it started is waited
        for before the next line. BoxRestarting ends the script: the box goes down."""
        if self.runner is None:
            return "error: no console interpreter to run update scripts"
        self._wait_worker()
        return self.runner.execute(line)

    def _times(self, box: Box) -> tuple[frozenset[int] | None, int]:
        raw = self._get(box, VAR_TIMES)
        if not raw:
            return None, 0
        hours, _, initial = raw.partition(";")
        return (parse_hours(hours) if hours else None), int(initial or 0)

    # --- the worker -------------------------------------------------------------------------
    def _fetching(self, url: str) -> Fetch:
        """A fetch stop() can abort (the worker's download, the poller's script)."""
        fetch = Fetch(url)
        self._fetches = [f for f in self._fetches if not f.done] + [fetch]
        if self._stop.is_set():
            fetch.abort()
        return fetch

    def _wait_worker(self) -> None:
        """Until the install under way (if any) is done, or the box goes down."""
        w = self._worker
        while w is not None and w is not threading.current_thread() and w.is_alive():
            if self._stop.is_set():
                raise BoxRestarting("the box is restarting")
            w.join(0.1)

    # --- variables ----------------------------------------------------------------------------
    def _need_box(self) -> Box:
        if self._box is None:
            raise ModCmdError(f"UP0: {self._why_not}")
        return self._box

    @staticmethod
    def _get(box: Box, key: str) -> str | None:
        """An UPDATE/ variable, read on the owner (from any thread)."""
        raw = box.owner.call(lambda: box.get_var(key))
        return raw.decode("ascii", "replace") if raw is not None else None

    @staticmethod
    def _set(box: Box, key: str, value: str) -> None:
        """An UPDATE/ variable, written as a job on the owner (from any thread);
        BoxRestarting when the box goes down first."""
        if box.flash is None:
            raise ModCmdError(f"{key}: no flash to keep it on (see the boot trace)")
        try:
            box.owner.call(lambda: box.commit_vars({key: value.encode("ascii", "replace")}))
        except BoxError as e:
            raise ModCmdError(str(e)) from e

    def _remember(self, box: Box, what: str) -> None:
        try:
            self._set(box, VAR_LAST, f"{self.clock():%Y-%m-%d %H:%M} {what}")
        except ModCmdError as e:
            box.trace(f"UP0: {e}", Tag.UPDATE)
        except BoxRestarting:
            box.trace(f"UP0: not kept, the box went down first: {what}", Tag.UPDATE)

    def last_result(self, box: Box) -> str:
        return self._get(box, VAR_LAST) or "no update yet"

    # --- what the box shows ------------------------------------------------------------------
    def slot_status(self) -> list[SlotStatus]:
        """Both slots: what each holds, its state (SlotStatus), which one runs."""
        inst = self.installer()
        record: BootControl = inst.record()
        slots = self._slot_cache
        if slots is None:
            slots = self._slot_cache = {slot: inst.slot_info(slot) for slot in (0, 1)}
        out = []
        for slot in (0, 1):
            info = slots[slot]
            trial = record.active == slot and record.state is SlotState.TRIAL
            if slot == inst.running_slot:
                state = "trial" if trial else "confirmed"
                detail = "running" + (", on trial" if trial else "")
            elif info is None:
                state, detail = "empty", "empty"
            elif trial:
                state, detail = "trial", f"starts at the next reset ({record.tries} tries)"
            elif record.failed == slot:
                state, detail = "failed", "did not start"
            elif record.good == slot:
                state, detail = "confirmed", "fallback (known good)"
            else:
                state = "previous"
                detail = "previous firmware (the fallback if the running one fails its check)"
            out.append(
                SlotStatus(
                    slot,
                    info.version if info else "",
                    info.build if info else 0,
                    state,
                    slot == inst.running_slot,
                    detail,
                    info.signed_text() if info else "",
                )
            )
        return out

    def slot_states(self) -> list[tuple[int, str, str, str]]:
        """(slot, firmware "16r1sr2 build 1601002" or "empty", state, signature) for both
        slots."""
        return [(s.slot, s.firmware, s.detail, s.signed) for s in self.slot_status()]

    def summary(self, box: Box) -> list[str]:
        """Lines for `version`: both slots and the last update."""
        try:
            states = self.slot_states()
        except (ModCmdError, OSError) as e:
            return [f"firmware slots: {e}"]
        lines = [
            f"slot {slot_name(s)}: {fw}"
            + (f", {state}" if state != fw else "")
            + (f", {signed}" if signed else "")
            for s, fw, state, signed in states
        ]
        return [*lines, f"last update: {self.last_result(box)}"]

    # --- commands ------------------------------------------------------------------------------
    def commands(self) -> list[Command]:
        return [
            Command("UP0", "info", "both firmware slots, which runs, the last update (XML)",
                    self._cmd_info),
            Command("UP0", "prot", "prot <url-or-dir/> [<final>] [<serial>|ser <serial>]: "
                    "fetch and install ipva.bin", self._cmd_prot),
            Command("UP0", "scfg", "scfg <url> [ser <serial>] [/always <command>]: PUT the "
                    "backup (or the command's output) to the update server", self._cmd_scfg),
            Command("UP1", "provision", "provision <min>: provisioning on (0: off)",
                    self._cmd_provision),
            Command("UP1", "check", "check <final> <serial>: in a script, run the rest once",
                    self._cmd_check),
            Command("UP1", "times", "times /allow <hours,…> [/initial <min>]: when to poll",
                    self._cmd_times),
            Command("UP1", "poll", "poll the update script now", self._cmd_poll),
            Command("UP1", "info", "script URL, schedule, the last poll (XML)", self._cmd_up1_info),
        ]  # fmt: skip

    def _cmd_info(self, box: Box, args: list[str]) -> str:
        slots = "".join(
            element(
                "slot",
                {
                    "id": SLOT_LETTERS[s],
                    "file": SLOT_NAMES[s],
                    "firmware": fw,
                    "state": state,
                    "signed": signed,
                },
            )  # fmt: skip
            for s, fw, state, signed in self.slot_states()
        )
        slot = SLOT_LETTERS[self.installer().running_slot]
        running = element("running", {"version": box.version, "build": str(box.build),
                                      "slot": slot})  # fmt: skip
        last = element("last", {"result": self.last_result(box),
                                "serial": self._get(box, VAR_PROT) or ""})  # fmt: skip
        return f"<info>{running}{slots}{last}</info>"

    def _cmd_prot(self, box: Box, args: list[str]) -> str:
        try:
            spec = parse_prot(args)
        except ScriptError as e:
            raise ModCmdError(f"UP0 prot: {e}") from e
        return self.prot(spec.url, spec.final, spec.serial)

    def _cmd_scfg(self, box: Box, args: list[str]) -> str:
        try:
            spec = parse_scfg(args)
        except ScriptError as e:
            raise ModCmdError(f"UP0 scfg: {e}") from e
        return self.scfg(box, spec)

    def _cmd_provision(self, box: Box, args: list[str]) -> str:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) > 10080:
            raise ModCmdError("usage: mod cmd UP1 provision <minutes 0..10080> (0: off)")
        minutes = int(args[0])
        words = split_words(f"UP1 /provision {minutes}" if minutes else "UP1 /provision")
        box.change(parse_op("add" if minutes else "rem", words))
        if not minutes:
            return "UP1: provisioning off (config write keeps it)"
        return f"UP1: provisioning on ({minutes} min; config write keeps it)"

    def _cmd_check(self, box: Box, args: list[str]) -> str:
        if len(args) != 2:
            raise ModCmdError("usage: mod cmd UP1 check <final> <serial>")
        try:
            parse_final(args[0])
        except ScriptError as e:
            raise ModCmdError(f"UP1 check: {e}") from e
        done = self._get(box, VAR_CHECK)
        if done == args[1]:
            return f"UP1: serial {args[1]} is done (UPDATE/CHECK): a script stops here"
        return f"UP1: serial {args[1]} is not done (UPDATE/CHECK is {done or 'unset'})"

    def _cmd_times(self, box: Box, args: list[str]) -> str:
        opts = dict(zip(args[::2], args[1::2], strict=False))
        if len(args) % 2 or not set(opts) <= {"/allow", "/initial"} or not opts:
            raise ModCmdError("usage: mod cmd UP1 times /allow <hours,…> [/initial <min>]")
        try:
            hours = parse_hours(opts["/allow"]) if "/allow" in opts else None
        except ScriptError as e:
            raise ModCmdError(f"UP1 times: {e}") from e
        initial = opts.get("/initial", "0")
        if not initial.isdigit() or int(initial) > 1440:
            raise ModCmdError("UP1 times: /initial is minutes after boot, 0..1440")
        text = ",".join(str(h) for h in sorted(hours)) if hours else ""
        self._set(box, VAR_TIMES, f"{text};{int(initial)}")
        when = f"at hours {text}" if text else "at any hour"
        return f"UP1: polls {when}, the first time {initial} min after boot"

    def _cmd_poll(self, box: Box, args: list[str]) -> str:
        if not str(box.active.value("UP1", "url")):
            raise ModCmdError("UP1: no script URL: config change UP1 /url <url>, then activate")
        self.installer()
        self._poll_forced = True
        self._poll_now.set()
        if self._poller is None or not self._poller.is_alive():
            self._start_poller(box)
        return "UP1: polling now; see the trace"

    def _cmd_up1_info(self, box: Box, args: list[str]) -> str:
        allowed, initial = self._times(box)
        return "<info>" + element("up1", {
            "url": str(box.active.value("UP1", "url")),
            "poll": str(box.active.value("UP1", "poll")),
            "provision": str(box.active.value("UP1", "provision")),
            "allow": ",".join(str(h) for h in sorted(allowed)) if allowed else "any",
            "initial": str(initial),
            "check": self._get(box, VAR_CHECK) or "",
            "last": self.last_poll,
        }) + "</info>"  # fmt: skip


# --- HTTP(S) fetches --------------------------------------------------------------------------
# urllib.request is imported where a fetch starts, not with the service: it brings
# http.client, email and ssl, a fifth of a second of the boot under emulation, for the
# UP0/UP1 fetches only.


class Fetch:
    """`with Fetch(url) as chunks:` — the body in chunks, the connection closed after.
    `abort()`, from another thread (the box's stop), wakes a read blocked on a server that
    holds the body back: the reading thread then gets an OSError and ends."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._resp: IO[bytes] | None = None
        self._aborted = False
        self.done = False

    def __enter__(self) -> Iterator[bytes]:
        import urllib.request

        resp: IO[bytes] = urllib.request.urlopen(self.url, timeout=FETCH_TIMEOUT_S)
        self._resp = resp
        if self._aborted:
            self.abort()
        return iter(lambda: resp.read(1 << 16), b"")

    def __exit__(self, *exc: object) -> None:
        self.done = True
        if self._resp is not None:
            self._resp.close()

    def abort(self) -> None:
        self._aborted = True
        # http.client keeps the connection's socket behind its buffered reader (SocketIO
        # ._sock, there since Python 3.0); shutting it down ends a blocked recv at once
        raw = getattr(getattr(self._resp, "fp", None), "raw", None)
        sock = getattr(raw, "_sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def put(url: str, body: bytes) -> None:
    """HTTP PUT of a backup (update servers keep it: update.php?mode=backup)."""
    import urllib.request

    request = urllib.request.Request(url, data=body, method="PUT")
    request.add_header("Content-Type", "text/plain")
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as resp:
        resp.read(1 << 16)


def fetch_text(fetch: Fetch, limit: int) -> str:
    with fetch as chunks:
        data = b""
        for chunk in chunks:
            data += chunk
            if len(data) > limit:
                raise ValueError(f"the script is longer than {limit} bytes")
    return data.decode("utf-8", "replace")


def describe_fetch_error(e: BaseException) -> str:
    import urllib.error

    if isinstance(e, urllib.error.HTTPError):
        return f"the server answered {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot reach the server ({e.reason})"
    if isinstance(e, TimeoutError):
        return f"no answer within {FETCH_TIMEOUT_S:.0f} s"
    return str(e) or type(e).__name__


__all__ = ["IDLE_S", "Fetch", "SlotStatus", "UpdateService", "fetch_text"]
