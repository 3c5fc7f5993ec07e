"""QemuLauncher: builds the argv, sockets and logs, and owns the QEMU process.

QEMU starts paused (`-S`); the QMP socket (unix) and the serial console (tcp, read with
pyserial's socket://) are connected first, then `cont` — so no console byte is lost.
Shutdown is graceful first (QMP `quit`), then `kill`, then `AbnormalShutdown` from the cause,
as qemu's python/qemu/machine does. Test-facing behaviour lives in machine.Machine.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from hypervisors.qemu.accel import QEMU, choose_accel
from hypervisors.qemu.console import ConsoleReader
from hypervisors.qemu.errors import (
    AbnormalShutdown,
    LaunchError,
    QemuError,
    QmpConnectError,
    QmpError,
)
from hypervisors.qemu.profiles import Profile, make_hardware_args
from hypervisors.qemu.qmp import QmpConnection
from hypervisors.qemu.savedstate import SavedState
from hypervisors.qemu.timeouts import MIGRATION_TIMEOUT, SHUTDOWN_TIMEOUT, SOCKET_TIMEOUT, retry

log = logging.getLogger(__name__)

BIND_RETRIES = 3  # a port we picked can be taken by someone else before QEMU binds it
_BIND_ERRORS = ("Address already in use", "Could not set up host forwarding", "Failed to bind")
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes; keep a margin


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_parent_death(argv: Sequence[str]) -> list[str]:
    """`argv` run so that the kernel kills it when the thread that started it ends
    (util-linux's setpriv sets PR_SET_PDEATHSIG, kept across its exec): a harness killed
    from outside (a CI job's timeout, SIGKILL) leaves no QEMU running. The pid is the
    command's own (setpriv execs it), so terminate/kill/wait work as on the bare command."""
    return ["setpriv", "--pdeathsig", "KILL", "--", *argv]


class QemuLauncher:
    """One QEMU process for `profile` booting `disks` (role order), logging into `workdir`."""

    def __init__(
        self,
        profile: Profile,
        disks: Sequence[Path],
        workdir: Path,
        *,
        qemu: str = QEMU,
        accel: str | None = None,
        http_port: int | None = None,
        https_port: int | None = None,
        console_log: Path | None = None,
        on_console: Sequence[Callable[[bytes], None]] = (),
        incoming: SavedState | None = None,
    ) -> None:
        """`incoming`: start from that saved state instead of booting (the caller has
        checked that it fits: SavedState.unusable)."""
        self.profile = profile
        self.disks = [Path(d) for d in disks]
        self.workdir = Path(workdir)
        self.qemu = qemu
        self.accel = accel
        self.http_port = http_port
        self.https_port = https_port
        self.qemu_log = self.workdir / "qemu.log"
        self.console_log = console_log or self.workdir / "console.log"
        self.on_console = list(on_console)
        self.incoming = incoming
        self.argv: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.qmp: QmpConnection | None = None
        self.console: ConsoleReader | None = None
        self._sockdir: tempfile.TemporaryDirectory[str] | None = None

    # -- argv ---------------------------------------------------------------------------
    def _qmp_path(self) -> Path:
        path = self.workdir / "qmp.sock"
        if len(str(path)) > _UNIX_PATH_MAX:  # deep pytest tmp dirs overflow sun_path
            self._sockdir = self._sockdir or tempfile.TemporaryDirectory(prefix="ipva-")
            path = Path(self._sockdir.name) / "qmp.sock"
        return path

    def make_argv(self, accel: str, serial_port: int, qmp_path: Path) -> list[str]:
        head = [
            self.qemu,
            "-name", f"ipva-{self.profile.name},debug-threads=on",
            "-accel", accel,
            "-nodefaults",  # no default NIC, CD-ROM (it would take IDE 1:0), floppy, monitor
            "-display", "none",
            "-vga", "std",  # the guest also shows its console on tty1
            "-chardev", f"socket,id=con0,host=127.0.0.1,port={serial_port},server=on,wait=off",
            "-serial", "chardev:con0",
            "-qmp", f"unix:{qmp_path},server=on,wait=off",
            "-S",  # paused until both sockets are connected
        ]  # fmt: skip
        if self.incoming is not None:
            head += ["-incoming", "defer"]  # loaded through QMP once the sockets are up
        return head + make_hardware_args(self.profile, self.disks, self.http_port, self.https_port)

    # -- lifecycle ----------------------------------------------------------------------
    def launch(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        accel = self.accel or choose_accel(self.qemu)
        log.info("starting QEMU (%s, profile %s)", accel, self.profile.name)
        pick_http, pick_https = self.http_port is None, self.https_port is None
        for attempt in range(BIND_RETRIES):
            if pick_http:
                self.http_port = free_tcp_port()
            if pick_https:
                self.https_port = free_tcp_port()
            try:
                self._launch_once(accel, free_tcp_port())
                return
            except LaunchError as exc:
                if attempt + 1 < BIND_RETRIES and any(e in exc.log for e in _BIND_ERRORS):
                    log.info("port clash, retrying: %s", exc.log.strip().splitlines()[-1:])
                    continue
                raise

    def _launch_once(self, accel: str, serial_port: int) -> None:
        qmp_path = self._qmp_path()
        qmp_path.unlink(missing_ok=True)
        self.argv = self.make_argv(accel, serial_port, qmp_path)
        log.debug("+ %s", " ".join(self.argv))
        with self.qemu_log.open("wb") as logf:
            logf.write(f"# accel={accel}\n# {' '.join(self.argv)}\n".encode())
            logf.flush()
            try:
                self.process = subprocess.Popen(
                    with_parent_death(self.argv), stdin=subprocess.DEVNULL, stdout=logf,
                    stderr=logf,
                    start_new_session=True,  # a Ctrl-C in the terminal is ours to handle
                )  # fmt: skip
            except OSError as exc:
                raise LaunchError(f"cannot run {self.qemu}: {exc}", self.argv, "") from exc
        try:
            self.qmp = QmpConnection(self.profile.name)
            self._connect_qmp(qmp_path)
            self.console = ConsoleReader(f"socket://127.0.0.1:{serial_port}", self.console_log)
            self.console.on_data.extend(self.on_console)
            self.console.connect(SOCKET_TIMEOUT)
            if self.incoming is not None:
                self._load(self.incoming)
            self.qmp.execute("cont")
        except (QemuError, OSError) as exc:
            self._teardown()
            raise LaunchError(f"QEMU did not come up: {exc}", self.argv, self.read_log()) from exc

    def _load(self, state: SavedState) -> None:
        """Load the saved state's stream into the paused QEMU (-incoming defer). A stream
        that does not load makes QEMU exit: that is a QemuError like any failed start."""
        assert self.qmp is not None
        self.qmp.execute("migrate-incoming", {"uri": state.load_uri()})
        self._wait_migration("loading " + str(state.stream))

    def _wait_migration(self, what: str) -> None:
        assert self.qmp is not None and self.process is not None
        qmp, process = self.qmp, self.process

        def done(last_try: bool) -> bool:
            if process.poll() is not None:
                raise QemuError(f"QEMU exited with code {process.returncode} {what}")
            status = qmp.execute("query-migrate").get("status")
            if status in ("failed", "cancelled"):
                raise QemuError(f"migration {status} {what}")
            return status == "completed"

        retry(done, MIGRATION_TIMEOUT, what, interval=0.02)

    def save(self, state: SavedState) -> None:
        """Migrate the running machine into `state`'s stream file; QEMU is left paused
        (its disks are flushed and no longer written) for the caller to quit."""
        if self.qmp is None:
            raise QemuError("no QMP connection to save the machine through")
        self.qmp.execute("migrate", {"uri": state.save_uri()})
        self._wait_migration("saving to " + str(state.stream))

    def _connect_qmp(self, path: Path) -> None:
        # the socket file appears at bind(), a moment before QEMU listens: retry refusals
        assert self.process is not None and self.qmp is not None
        deadline = time.monotonic() + SOCKET_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise QemuError(f"QEMU exited with code {self.process.returncode}")
            if path.exists():
                try:
                    self.qmp.connect(str(path))
                    return
                except QmpConnectError:
                    if time.monotonic() > deadline:
                        raise
            elif time.monotonic() > deadline:
                raise QemuError(f"no QMP socket at {path} after {SOCKET_TIMEOUT:g}s")
            time.sleep(0.02)

    def read_log(self) -> str:
        try:
            return self.qemu_log.read_text(errors="replace")
        except OSError:
            return ""

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL, like pulling the power cord; then release sockets and threads."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._teardown()

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """QMP quit and wait; on failure kill and raise AbnormalShutdown from the cause."""
        if self.process is None:
            return
        try:
            if self.process.poll() is None:
                if self.qmp is None:
                    raise QemuError("no QMP connection to quit through")
                try:
                    self.qmp.execute("quit", timeout=timeout)
                except QmpError:
                    if self.process.poll() is None and not self._exited_within(timeout):
                        raise
                self.process.wait(timeout=timeout)
        except (QemuError, subprocess.TimeoutExpired) as exc:
            self.kill()
            raise AbnormalShutdown(f"QEMU did not quit gracefully: {exc}") from exc
        self._teardown()

    def _exited_within(self, timeout: float) -> bool:
        # QEMU may close the QMP socket before answering `quit`; that is success
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _teardown(self) -> None:
        if self.console is not None:
            self.console.close()
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._sockdir is not None:
            self._sockdir.cleanup()
            self._sockdir = None
