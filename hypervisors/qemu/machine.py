"""Machine: the test-facing view of one virtual appliance (NixOS test-driver style).

    with Machine(get_profile("vmware"), dist_disks(dist), workdir) as box:
        box.start()
        box.wait_for_prompt()
        print(box.command("version"))

Console matching works on the text since the last match (expect-style): each wait consumes
output up to the end of what it matched. `power_cut()` followed by `start()` boots the same
(overlay) disks again, for power-loss tests. Leaving the `with` block always stops QEMU.

`save_state(dir)` keeps the running box (at its prompt) as a saved state (savedstate.py);
`Machine(…, saved_state=SavedState(dir))` starts from it instead of booting — on its own
overlays, the state stays as it is — if the state fits this QEMU, hardware and disks, and
boots cold otherwise (the log says why). After a resume the box is at its prompt:
`wait_for_prompt()` returns at once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from firmware.run import run
from hypervisors.qemu.accel import QEMU, choose_accel
from hypervisors.qemu.errors import GuestHalted, LaunchError, MachineDied, QemuError, WaitTimeout
from hypervisors.qemu.launcher import QemuLauncher
from hypervisors.qemu.profiles import Profile, disk_format_of
from hypervisors.qemu.savedstate import SavedState, fingerprint
from hypervisors.qemu.timeouts import (
    BOOT_TIMEOUT,
    COMMAND_TIMEOUT,
    CONSOLE_TIMEOUT,
    SHUTDOWN_TIMEOUT,
    retry,
)

log = logging.getLogger(__name__)

# The shell prompt (a parameter): the box's name and "> " at the start of a line, with
# nothing after it (yet). Not any line ending in "> ": a read that stopped after
# "prot <url> " in `help mod` output would take that for the prompt.
DEFAULT_PROMPT = r"\n(?:[^\s<>][^\n<>]*)?> $"
# Messages after which the appliance stops for good; waiting for the prompt fails fast on them.
LINE_END_WAIT_S = 5.0  # a fatal boot message's line: the rest of it may still be on its way
DEFAULT_FATAL = (
    r"checksum wrong!|Loading failed for image|NIC unavailable!|Kernel panic|"
    r"Missing operating system|the box stops here|disk missing: "
)
# The web admin comes up after the prompt, in the background; its last boot-trace line
# says it is up (or why not): appliance/services/http/__init__.py. After a boot's first
# prompt wait_for_prompt() waits for it too, so http_url answers once it returns. The DHCP
# lease comes after the prompt too, but before that line (the web admin listens once the
# first lease or fallback is in): hostfwd reaches the guest's address by then.
WEB_ADMIN_LINE = (
    r"HTTP0: (?:web admin on |/port and /https-port are 0|no listener could be opened"
    r"|the web admin did not start)[^\n]*\n"
)
BOOT_BANNER = "IPVA bootcode"  # the bootcode's first line: where a boot's output starts
QUIET_S = 2.0  # no console output this long after the prompt: nothing is pending to save
# After a resume the box finds its clock behind the RTC (within ~2 s), steps it and renews
# its lease, each with a trace line (appliance/hal/resume.py: more than 3 s apart). A
# state older than RESUMED_STEP_S gets those lines: wait_for_prompt() waits for them.
RESUME_LINE = r"time: resumed after a pause[^\n]*\n"
RESUMED_STEP_S = 5.0
# the lease's renewal follows on the box's DHCP watcher (a line of each DHCP port), seconds
# later on a loaded host; a box without DHCP prints none: the wait ends quiet after this
RENEW_LINE = r"ETH\d DHCP lease (?:renewed|not renewed yet)[^\n]*\n"
RENEW_WAIT_S = 20.0
RESUME_QUIET_S = 1.0  # after the resume's lines: nothing more is pending
TAIL_LINES = 15
Pattern = str | re.Pattern[str]


class Machine:
    """One appliance: owns a QemuLauncher per power-on, and the console transcript."""

    def __init__(
        self,
        profile: Profile,
        disks: Sequence[Path],
        workdir: Path | None = None,
        *,
        prompt: str = DEFAULT_PROMPT,
        fatal: str | None = DEFAULT_FATAL,
        disk_mode: Literal["overlay", "direct"] = "overlay",
        accel: str | None = None,
        http_port: int | None = None,
        https_port: int | None = None,
        on_console: Sequence[Callable[[bytes], None]] = (),
        saved_state: SavedState | None = None,
    ) -> None:
        """`on_console` callbacks get the raw console bytes as they arrive (a terminal, a
        transcript). `disk_mode="overlay"` boots qcow2 overlays in `workdir`, so the given
        disks stay untouched (the overlays persist across power cycles of this Machine);
        "direct" writes the disks themselves. `saved_state`: the first start() resumes
        from it where it fits (overlay mode only)."""
        self.profile = profile
        self.source_disks = [Path(d) for d in disks]
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir:
            self.workdir = Path(workdir)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="ipva-vm-")
            self.workdir = Path(self._tmp.name)
        self.prompt = re.compile(prompt)
        self.fatal = re.compile(fatal) if fatal else None
        self.disk_mode = disk_mode
        self.accel = accel
        self.http_port = http_port  # host ports forwarded to the guest's 80 and 443;
        self.https_port = https_port  # None: a free one is picked at each power-on
        self.on_console = list(on_console)
        self.console_log_path = self.workdir / "console.log"
        self.launcher: QemuLauncher | None = None
        self._past = ""  # console text of earlier power-ons
        self._cursor = 0  # index into console_log where the next wait starts
        self._disks: list[Path] | None = None
        self.saved_state = saved_state
        self.resumed = False  # the last start() resumed from saved_state (no boot)
        self.cold_boot_reason: str | None = None  # why saved_state was not used
        self.started_at = 0.0  # time.monotonic() when QEMU was launched
        self._resume_lines = False  # a resume's lines are still to come (wait_for_prompt)

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> Machine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def _prepare_disks(self, state: SavedState | None = None) -> tuple[Profile, list[Path]]:
        """The disks to start on; overlays (made at the first start) over the source disks,
        or over `state`'s disks when resuming from it."""
        if self.disk_mode == "direct":
            return self.profile, self.source_disks
        if self._disks is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._disks = []
            for index, src in enumerate(self.source_disks[: self.profile.disks]):
                overlay = self.workdir / f"disk{index}-{src.stem}.qcow2"
                fmt = "qcow2" if state else disk_format_of(src, self.profile)
                base = state.disk(index).resolve() if state else src.resolve()
                overlay.unlink(missing_ok=True)
                run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt,
                     "-b", base, overlay])  # fmt: skip
                self._disks.append(overlay)
        return self.profile.replace(disk_format="qcow2"), self._disks

    def fingerprint(self) -> dict[str, Any]:
        """What a saved state of this machine depends on (savedstate.fingerprint): the
        QEMU argv of its hardware with placeholders for disk paths, ports and sockets."""
        accel = self.accel or choose_accel()
        profile = self.profile.replace(disk_format="qcow2")
        placeholders = [Path(f"disk{i}.qcow2") for i in range(profile.disks)]
        probe = QemuLauncher(profile, placeholders, Path("."), http_port=0, https_port=0)
        argv = probe.make_argv(accel, 0, Path("qmp.sock"))[1:]
        return fingerprint(QEMU, accel, argv, self.source_disks[: profile.disks])

    def _usable_state(self) -> SavedState | None:
        """saved_state if this (first) start can resume from it; else None, and why not is
        logged and kept in cold_boot_reason."""
        state = self.saved_state
        if state is None or self._disks is not None:
            return None
        why = (
            "disk_mode is direct (a resume needs overlays)"
            if self.disk_mode == "direct"
            else state.unusable(self.fingerprint())
        )
        if why is None:
            return state
        self.cold_boot_reason = why
        log.warning("saved state %s not used, booting cold: %s", state.path, why)
        return None

    def start(self) -> None:
        """Power on (again). Console waits start from this boot's output."""
        if self.is_running():
            return
        missing = [str(d) for d in self.source_disks[: self.profile.disks] if not d.exists()]
        if missing:
            raise QemuError(f"disk image(s) not found: {', '.join(missing)}")
        state = self._usable_state()
        if state is not None:
            try:
                age = time.time() - state.stream.stat().st_mtime
                self._launch(state)
                self.resumed = True
                self._resume_lines = age > RESUMED_STEP_S
                self.send_bytes(b"\r")  # the box sits at its prompt: have it drawn again
                return
            except LaunchError as exc:
                self.cold_boot_reason = f"the saved state did not load: {exc}"
                log.warning("saved state %s not used, booting cold: %s", state.path, exc)
                for disk in self._disks or ():
                    disk.unlink(missing_ok=True)
                self._disks = None
        self.resumed = False
        self._launch(None)

    def _launch(self, state: SavedState | None) -> None:
        profile, disks = self._prepare_disks(state)
        self._retire_launcher()
        self.started_at = time.monotonic()
        self.launcher = QemuLauncher(
            profile,
            disks,
            self.workdir,
            accel=self.accel,
            http_port=self.http_port,
            https_port=self.https_port,
            console_log=self.console_log_path,
            on_console=self.on_console,
            incoming=state,
        )
        self.launcher.launch()
        self.http_port = self.launcher.http_port
        self.https_port = self.launcher.https_port
        self._cursor = len(self._past)

    def save_state(self, path: Path) -> SavedState:
        """Keep the running box as a saved state in directory `path` (made or replaced),
        then stop QEMU. Call it at the prompt, once the console is quiet (wait_quiet):
        whatever the box prints later comes out after each resume. The next start() of
        this machine resumes from it."""
        if self.disk_mode != "overlay" or self._disks is None:
            raise QemuError("save_state needs a started machine on overlays (disk_mode overlay)")
        if self.launcher is None or not self.launcher.is_running():
            raise QemuError("save_state: the machine is not running")
        want = self.fingerprint()
        state = SavedState(Path(path))
        state.path.mkdir(parents=True, exist_ok=True)
        for old in state.path.iterdir():
            old.unlink()
        boot_s = time.monotonic() - self.started_at
        self.launcher.save(state)
        self.shutdown()
        for index, overlay in enumerate(self._disks):
            overlay.rename(state.disk(index))
            state.disk(index).chmod(0o444)  # resumed machines write their own overlays
        self._disks = None
        state.write_meta(want, boot_s)
        self.saved_state = state
        return state

    def wait_quiet(self, quiet: float = QUIET_S, timeout: float = CONSOLE_TIMEOUT) -> None:
        """Wait until the console has printed nothing for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.console_log), time.monotonic()
        while time.monotonic() - since < quiet:
            if time.monotonic() > deadline:
                raise WaitTimeout(f"a quiet console ({quiet:g} s)", timeout, self.last_lines())
            self._check_alive("a quiet console")
            time.sleep(0.1)
            now = len(self.console_log)
            if now != seen:
                seen, since = now, time.monotonic()

    @property
    def http_url(self) -> str:
        """The box's admin over HTTP, forwarded from 127.0.0.1 (e.g. http://127.0.0.1:40123)."""
        if self.http_port is None:
            raise QemuError("the machine has not been started: no HTTP port forwarded yet")
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        if self.https_port is None:
            raise QemuError("the machine has not been started: no HTTPS port forwarded yet")
        return f"https://127.0.0.1:{self.https_port}"

    def _retire_launcher(self) -> None:
        if self.launcher is not None:
            if self.launcher.console is not None:
                self._past += self.launcher.console.text
            self.launcher = None

    def is_running(self) -> bool:
        return self.launcher is not None and self.launcher.is_running()

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Graceful QMP quit (then kill and AbnormalShutdown)."""
        if self.launcher is not None:
            self.launcher.shutdown(timeout)
            self._retire_launcher()

    def power_cut(self) -> None:
        """SIGKILL QEMU: the disks keep exactly what was written, nothing more."""
        if self.launcher is not None:
            self.launcher.kill()
            self._retire_launcher()

    def reset(self) -> None:
        """Hardware reset (QMP system_reset); waits then see only the new boot's output."""
        self.qmp("system_reset")
        self._cursor = len(self.console_log)

    def cleanup(self) -> None:
        """Stop QEMU whatever state it is in; never raises for a dead QEMU."""
        try:
            if self.is_running():
                try:
                    self.shutdown()
                except QemuError as exc:
                    log.warning("%s", exc)
            elif self.launcher is not None:
                self.launcher.kill()
        finally:
            self._retire_launcher()
            if self._tmp is not None:  # our own work dir: overlays and logs go with it
                self._tmp.cleanup()
                self._tmp = None

    # -- QMP ----------------------------------------------------------------------------
    def qmp(self, command: str, **arguments: Any) -> Any:
        if self.launcher is None or self.launcher.qmp is None:
            raise QemuError(f"machine not running (QMP {command})")
        return self.launcher.qmp.execute(command, arguments or None)

    def wait_for_event(self, name: str, timeout: float = CONSOLE_TIMEOUT) -> dict[str, Any]:
        """The next QMP event `name` (e.g. "RESET", "SHUTDOWN"); earlier others are dropped."""
        if self.launcher is None or self.launcher.qmp is None:
            raise QemuError(f"machine not running (waiting for event {name})")
        return self.launcher.qmp.wait_event(name, timeout)

    def screenshot(self, path: Path) -> Path:
        """The VGA screen (tty1) as a PPM file, via QMP screendump."""
        self.qmp("screendump", filename=str(Path(path).resolve()))
        return Path(path)

    # -- console ------------------------------------------------------------------------
    @property
    def console_log(self) -> str:
        """Everything the serial console printed since the first start ("\\r" removed)."""
        current = self.launcher.console.text if self.launcher and self.launcher.console else ""
        return self._past + current

    def last_lines(self, count: int = TAIL_LINES) -> list[str]:
        return self.console_log.splitlines()[-count:]

    def _check_alive(self, what: str) -> None:
        if self.launcher is None:
            raise QemuError(f"machine not started (waiting for {what})")
        console = self.launcher.console
        if not self.launcher.is_running() or (console is not None and console.closed):
            raise MachineDied(what, self.launcher.returncode, self.last_lines())

    def wait_for_console(
        self, pattern: Pattern, timeout: float = CONSOLE_TIMEOUT, *, what: str | None = None
    ) -> re.Match[str]:
        """Wait until `pattern` appears in the output after the last match; return the match.

        Match positions index `console_log`; the cursor moves past the match.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        match = self._wait_for_text(
            lambda text: regex.search(text, self._cursor),
            timeout,
            what or f"console /{regex.pattern}/",
        )
        self._cursor = match.end()
        return match

    def _wait_for_text(
        self, find: Callable[[str], re.Match[str] | None], timeout: float, what: str
    ) -> re.Match[str]:
        """Until `find(console_log)` finds something (the one wait loop of the console)."""

        def attempt(last_try: bool) -> re.Match[str] | None:
            text = self.console_log
            match = find(text)
            if match:
                return match
            if last_try:
                raise WaitTimeout(what, timeout, self.last_lines())
            self._check_alive(what)
            assert self.launcher is not None and self.launcher.console is not None
            self.launcher.console.wait_for_more(len(text) - len(self._past), 0.5)
            return None

        return retry(attempt, timeout, what, interval=0)

    def wait_for_prompt(
        self, timeout: float = BOOT_TIMEOUT, *, web_admin: bool = True
    ) -> re.Match[str]:
        """Wait for the shell prompt; a fatal boot message (checksum…) fails at once. At a
        boot's prompt (`web_admin`) also for the web admin's line (it comes after the
        prompt), then for the prompt drawn again under it: the box is up, http_url
        answers, and no boot line can land in the next command's answer. After a resume
        the same for the lines of the clock's step and the lease's renewal."""
        match = self._wait_for_prompt(timeout)
        if not web_admin:
            return match
        if self._resume_lines:
            what = "the box's resume line (time: resumed after a pause …)"
            step = self._wait_for_text(lambda text: re.search(RESUME_LINE, text), timeout, what)
            renew = re.compile(RENEW_LINE)
            with contextlib.suppress(WaitTimeout):  # no DHCP port: no renewal line
                self._wait_for_text(
                    lambda text: renew.search(text, step.end()), RENEW_WAIT_S, "a lease renewal"
                )
            self.wait_quiet(RESUME_QUIET_S, timeout)
            self._resume_lines = False
            self._cursor = len(self.console_log)
            self.send_bytes(b"\r")  # a prompt under the lines
            return self._wait_for_prompt(timeout)
        text = self.console_log
        boot = text.rfind(BOOT_BANNER, 0, match.start())
        if boot < 0 or re.search(WEB_ADMIN_LINE, text[boot:]):
            return match  # not a boot's output, or the web admin is up already
        up = self.wait_for_web_admin(timeout)
        self._cursor = max(self._cursor, up.end() - 1)  # the prompt pattern starts at "\n"
        return self._wait_for_prompt(timeout)  # drawn again under the web admin's lines

    def wait_for_web_admin(self, timeout: float = BOOT_TIMEOUT) -> re.Match[str]:
        """Wait for the web admin's line of the latest boot the console has shown
        (`HTTP0: web admin on …`, or why it is off), before or after its prompt. Does not
        move the cursor: the line comes whenever the web admin is up."""
        regex = re.compile(WEB_ADMIN_LINE)
        return self._wait_for_text(
            lambda text: regex.search(text, max(text.rfind(BOOT_BANNER), 0)),
            timeout,
            "the web admin's line (HTTP0: web admin on …)",
        )

    def _wait_for_prompt(self, timeout: float) -> re.Match[str]:
        if self.fatal is None:
            return self.wait_for_console(self.prompt, timeout, what="the shell prompt")
        either = re.compile(f"(?P<prompt>{self.prompt.pattern})|(?P<fatal>{self.fatal.pattern})")
        match = self.wait_for_console(either, timeout, what="the shell prompt")
        if match.group("fatal") is not None:
            # report the whole line, not just the matched words: its end may still be on
            # the way (a loaded host delivers the serial line in pieces)
            end = match.end("fatal")
            try:
                self._wait_for_text(
                    lambda text: re.compile("\n").search(text, end), LINE_END_WAIT_S,
                    "the end of the fatal message's line",
                )  # fmt: skip
            except (WaitTimeout, MachineDied):
                pass  # report what there is
            text = self.console_log
            line_start = text.rfind("\n", 0, match.start("fatal")) + 1
            line_end = text.find("\n", match.end("fatal"))
            line = text[line_start : line_end if line_end >= 0 else len(text)]
            raise GuestHalted(line.strip(), self.last_lines())
        return match

    def send_line(self, text: str) -> None:
        """Type `text` and Enter (a carriage return, as a terminal sends)."""
        self.send_bytes(text.encode() + b"\r")

    def send_bytes(self, data: bytes) -> None:
        self._check_alive("console write")
        assert self.launcher is not None and self.launcher.console is not None
        self.launcher.console.write(data)

    def command(
        self, line: str, prompt: Pattern | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> str:
        """Send `line` at the prompt; return what was printed between its echo and the next
        prompt (the machine must be at a prompt already)."""
        regex = re.compile(prompt) if isinstance(prompt, str) else (prompt or self.prompt)
        self._cursor = len(self.console_log)
        self.send_line(line)
        echo = self.wait_for_console(re.escape(line) + r"\n", timeout, what=f"the echo of {line!r}")
        # leave the echo's newline visible: the prompt pattern starts with one
        self._cursor = start = echo.end() - 1
        match = self.wait_for_console(regex, timeout, what=f"the prompt after {line!r}")
        return self.console_log[start : max(start, match.start())].strip("\n")


def boot_and_save(
    profile: Profile, disks: Sequence[Path], path: Path, accel: str | None = None
) -> SavedState:
    """Boot `disks` once, wait for the prompt and a quiet console, save the box to `path`."""
    workdir = Path(path).with_name(Path(path).name + ".boot")
    try:
        with Machine(profile, disks, workdir, accel=accel) as box:
            box.start()
            box.wait_for_prompt()
            box.wait_quiet()
            return box.save_state(path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
