"""The QEMU harness's exception family (modelled on qemu's python/qemu/qmp/error.py).

Every error says what was attempted; errors raised while waiting on the console carry the
last console lines, so a failed test explains itself without opening the full log.
"""

from __future__ import annotations

from collections.abc import Sequence


class QemuError(Exception):
    """Base of every error the harness raises."""


class LaunchError(QemuError):
    """QEMU did not start, or died before its sockets were connected."""

    def __init__(self, message: str, command: Sequence[str], log: str) -> None:
        self.command = list(command)
        self.log = log
        super().__init__(f"{message}\ncommand: {' '.join(self.command)}\nqemu log:\n{log}")


class QmpError(QemuError):
    """A QMP failure that is not a command's own error reply."""


class QmpConnectError(QmpError):
    """The QMP socket could not be connected or negotiated."""


class QmpExecuteError(QmpError):
    """QEMU answered a command with an error; `sent` is the message we sent."""

    def __init__(self, sent: dict[str, object], error_class: str, desc: str) -> None:
        self.sent = sent
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"QMP {error_class}: {desc} (sent {sent})")


class QmpTimeoutError(QmpError):
    """QEMU did not answer a command in time; `sent` is the message we sent."""

    def __init__(self, sent: dict[str, object], timeout: float) -> None:
        self.sent = sent
        super().__init__(f"QMP command got no answer within {timeout:g}s (sent {sent})")


class AbnormalShutdown(QemuError):
    """QEMU could not be shut down gracefully (it was killed, the cause is chained)."""


def _tail(lines: Sequence[str]) -> str:
    return "\n".join(f"  | {line}" for line in lines) or "  | (no console output)"


class WaitTimeout(QemuError):
    """Something awaited did not happen in time; names it and shows the last console lines."""

    def __init__(self, what: str, timeout: float, last_lines: Sequence[str] = ()) -> None:
        self.what = what
        self.timeout = timeout
        self.last_lines = list(last_lines)
        super().__init__(
            f"timed out after {timeout:g}s waiting for {what}; last console lines:\n"
            + _tail(self.last_lines)
        )


class MachineDied(QemuError):
    """QEMU exited while we were waiting for the guest."""

    def __init__(self, what: str, returncode: int | None, last_lines: Sequence[str] = ()) -> None:
        self.returncode = returncode
        self.last_lines = list(last_lines)
        super().__init__(
            f"QEMU exited (code {returncode}) while waiting for {what}; last console lines:\n"
            + _tail(self.last_lines)
        )


class GuestHalted(QemuError):
    """The guest printed a message after which it stops (e.g. `checksum wrong!`)."""

    def __init__(self, message: str, last_lines: Sequence[str] = ()) -> None:
        self.message = message
        self.last_lines = list(last_lines)
        super().__init__(
            f"the guest stopped with {message!r}; last console lines:\n" + _tail(self.last_lines)
        )
