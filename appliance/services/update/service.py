"""The update service: UP0 (firmware into the other slot) and UP1 (the update-server client).

    mod cmd UP0 info                          both slots, which runs, the last update's result
    mod cmd UP0 prot <url> <final> <serial>   fetch ipva.bin over HTTP(S) and install it, once
                                              per <serial> (kept in the UPDATE/PROT variable)
    mod cmd UP1 check <final> <serial>        in a script: the rest runs once per <serial>
                                              (UPDATE/CHECK); typed on the console it only says
                                              whether the serial is done
    mod cmd UP1 times /allow <hours> [/initial <min>]   when UP1 may poll (UPDATE/TIMES)
    mod cmd UP1 poll                          poll the script now, whatever the hours
    mod cmd UP1 info                          URL, schedule, the last poll
    config change UP1 /url <url> /poll <min>  the script URL and the poll interval

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

"Idle", for the `ireset`/`iresetn` finals, means that no console line or web command ran for
`IDLE_S` seconds: the IPVA carries no calls, so the admin's own activity is what a reset would
interrupt.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from appliance.errors import BoxError
from appliance.hal.bootctl import NO_SLOT, SLOT_LETTERS, SLOT_NAMES, BootControl, SlotState
from appliance.hal.nics import read_link_state
from appliance.hal.types import DiskRole, Unavailable
from appliance.modcmd import Command, ModCmdError
from appliance.owner import BoxRestarting, join_checked
from appliance.service import BaseService, CommandRunner
from appliance.services.update.image import FirmwareInfo
from appliance.services.update.install import Installed, Installer, UpdateError, slot_name
from appliance.services.update.script import (
    Final,
    ScriptError,
    may_poll,
    parse_final,
    parse_hours,
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
VAR_PROT, VAR_CHECK, VAR_TIMES, VAR_LAST = (
    "UPDATE/PROT", "UPDATE/CHECK", "UPDATE/TIMES", "UPDATE/LAST",
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
        self._poller: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self.last_poll = ""

    # --- life cycle ---------------------------------------------------------------------
    def start(self, box: Box) -> None:
        self._box = box
        try:
            files = box.platform.boot_files()
        except Unavailable as e:
            self._why_not = str(e)
            return
        self._installer = Installer(
            files,
            box.disks[DiskRole.BOOT],
            box.platform.running_slot(),
            None,
            memory_free=box.platform.memory_free,
        )
        self._report_boot(box, self._installer)
        self._start_poller(box)

    def _report_boot(self, box: Box, inst: Installer) -> None:
        record = inst.record()
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
        # a new /url or /poll takes effect at once: wake the poller
        if any(a.startswith("UP1") for a in activation.applied):
            self._poll_now.set()
            if self._poller is None:
                self._start_poller(box)
        return []

    def stop(self) -> None:
        self._stop.set()
        self._poll_now.set()
        # an image still arriving is abandoned (the guard in _install); one being written
        # is finished first: the record flips only after a complete slot either way
        with self._writing:
            self._writing.wait_for(lambda: not self._write_active, timeout=WRITE_WAIT_S)
        for t in (self._poller, self._worker):
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

    def prot(self, url: str, final: Final, serial: str) -> str:
        """`mod cmd UP0 prot` (on the owner thread): the install starts in the worker, the
        answer says so; refused while another install runs."""
        box = self._need_box()
        self.installer()
        if self._get(box, VAR_PROT) == serial:
            return f"UP0: serial {serial} is installed already (UPDATE/PROT), nothing to do"
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
        return f"UP0: fetching {url} (serial {serial}, then {final.value}); see the trace"

    def _prot(self, box: Box, url: str, final: Final, serial: str) -> None:
        """The worker: download and install, store the serial, then the final."""
        try:
            with fetch(url) as chunks:
                self._install(self.installer(), chunks, url)
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
        if initial and self._stop.wait(initial * 60):
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
                self._poll_now.wait(minutes * 60)

    def poll(self, box: Box) -> None:
        """Fetch the UP1 script and run it (in the poller's thread: its lines are jobs)."""
        url = str(box.active.value("UP1", "url"))  # an immutable config: any thread reads it
        if url:
            self._poll(box, url)

    def _poll(self, box: Box, base: str) -> None:
        ports = box.platform.ports()
        mac = read_link_state(ports[0].ifname).mac if ports else ""
        url = script_url(base, box_type=PRODUCT, mac=mac, hw_id=box.hw)
        try:
            text = fetch_text(url, SCRIPT_MAX)
        except (OSError, ValueError) as e:  # urllib's URLError is an OSError
            self.last_poll = f"{self.clock():%Y-%m-%d %H:%M} {url}: {describe_fetch_error(e)}"
            box.trace(f"UP1: {url}: {describe_fetch_error(e)}", Tag.UPDATE)
            return
        run = run_script(text.splitlines(), self._script_line, self._get(box, VAR_CHECK))
        self._wait_worker()
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
                )
            )
        return out

    def slot_states(self) -> list[tuple[int, str, str]]:
        """(slot, firmware "16r1sr2 build 1601002" or "empty", state) for both slots."""
        return [(s.slot, s.firmware, s.detail) for s in self.slot_status()]

    def summary(self, box: Box) -> list[str]:
        """Lines for `version`: both slots and the last update."""
        try:
            states = self.slot_states()
        except (ModCmdError, OSError) as e:
            return [f"firmware slots: {e}"]
        lines = [
            f"slot {slot_name(s)}: {fw}" + (f", {state}" if state != fw else "")
            for s, fw, state in states
        ]
        return [*lines, f"last update: {self.last_result(box)}"]

    # --- commands ------------------------------------------------------------------------------
    def commands(self) -> list[Command]:
        return [
            Command("UP0", "info", "both firmware slots, which runs, the last update (XML)",
                    self._cmd_info),
            Command("UP0", "prot", "prot <url> <final> <serial>: fetch and install ipva.bin",
                    self._cmd_prot),
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
                {"id": SLOT_LETTERS[s], "file": SLOT_NAMES[s], "firmware": fw, "state": state},
            )  # fmt: skip
            for s, fw, state in self.slot_states()
        )
        slot = SLOT_LETTERS[self.installer().running_slot]
        running = element("running", {"version": box.version, "build": str(box.build),
                                      "slot": slot})  # fmt: skip
        last = element("last", {"result": self.last_result(box),
                                "serial": self._get(box, VAR_PROT) or ""})  # fmt: skip
        return f"<info>{running}{slots}{last}</info>"

    def _cmd_prot(self, box: Box, args: list[str]) -> str:
        if len(args) != 3:
            raise ModCmdError("usage: mod cmd UP0 prot <url> <final> <serial>")
        try:
            final = parse_final(args[1])
        except ScriptError as e:
            raise ModCmdError(f"UP0 prot: {e}") from e
        return self.prot(args[0], final, args[2])

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
            "allow": ",".join(str(h) for h in sorted(allowed)) if allowed else "any",
            "initial": str(initial),
            "check": self._get(box, VAR_CHECK) or "",
            "last": self.last_poll,
        }) + "</info>"  # fmt: skip


# --- HTTP(S) fetches --------------------------------------------------------------------------
# urllib.request is imported where a fetch starts, not with the service: it brings
# http.client, email and ssl, a fifth of a second of the boot under emulation, for the
# UP0/UP1 fetches only.


class _Fetch:
    """`with fetch(url) as chunks:` — the body in chunks, the connection closed after."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._resp: IO[bytes] | None = None

    def __enter__(self) -> Iterator[bytes]:
        import urllib.request

        resp: IO[bytes] = urllib.request.urlopen(self.url, timeout=FETCH_TIMEOUT_S)
        self._resp = resp
        return iter(lambda: resp.read(1 << 16), b"")

    def __exit__(self, *exc: object) -> None:
        if self._resp is not None:
            self._resp.close()


def fetch(url: str) -> _Fetch:
    return _Fetch(url)


def fetch_text(url: str, limit: int) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as resp:
        data = resp.read(limit + 1)
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


__all__ = ["IDLE_S", "SlotStatus", "UpdateService", "fetch", "fetch_text"]
