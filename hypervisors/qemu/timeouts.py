"""Named timeouts and the one retry primitive (NixOS test-driver's `retry`).

Every wait in the harness is a closure handed to `retry`; the figures live here, not in
the call sites. They are sized for TCG on a 2-CPU CI runner (a boot takes ~17 s there), with
head-room for parallel test workers. `IPVA_TIMEOUT_SCALE` multiplies them for slow hosts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from hypervisors.qemu.errors import WaitTimeout

_SCALE = float(os.environ.get("IPVA_TIMEOUT_SCALE", "1"))

BOOT_TIMEOUT = 240.0 * _SCALE  # QEMU start → shell prompt (TCG ~17 s measured)
COMMAND_TIMEOUT = 60.0 * _SCALE  # one console command → its next prompt
CONSOLE_TIMEOUT = 60.0 * _SCALE  # default for wait_for_console
SOCKET_TIMEOUT = 15.0 * _SCALE  # QEMU start → QMP and serial sockets accept
QMP_TIMEOUT = 30.0 * _SCALE  # one QMP command → its answer
SHUTDOWN_TIMEOUT = 10.0 * _SCALE  # QMP quit → process gone, before we kill it
MIGRATION_TIMEOUT = 120.0 * _SCALE  # a saved state written to / loaded from its file
KVM_PROBE_TIMEOUT = 10.0 * _SCALE  # probe boot sector → its marker

T = TypeVar("T")


def retry(
    fn: Callable[[bool], T | None],
    timeout: float,
    what: str = "a condition",
    interval: float = 0.5,
) -> T:
    """Call `fn(False)` until it returns something truthy or `timeout` passes.

    Then `fn(True)` is called once more, so it can report (or raise with) what it actually
    saw; if that is still falsy, `WaitTimeout` names `what`. `fn` may itself block for a
    while (e.g. waiting for console data); `interval` is the sleep between calls.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = fn(False)
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining > 0 and interval > 0:
            time.sleep(min(interval, remaining))
    result = fn(True)
    if result:
        return result
    raise WaitTimeout(what, timeout)
