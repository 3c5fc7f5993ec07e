"""Resume watch: notice that the VM was paused and step the clock to the host's time.

A hypervisor's suspend/resume, a live migration or a saved state loaded later all stop the
VM's virtual clocks for a while; the box's wall clock then lags the world by that long.
The CMOS RTC (rtc0) does not lag: QEMU, VMware and Hyper-V all derive it from the host's
clock. So once a second the watch compares the wall clock with the RTC; when they are more
than STEP_THRESHOLD_S apart, it waits for the RTC's next second to turn (then the host's
time is exactly that second), steps CLOCK_REALTIME by the difference and calls
`on_resume(offset)`: the trace says by how much, the DHCP lease is renewed (events.Resumed).
Monotonic clocks are not stepped: uptimes and timeouts do not jump.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from appliance.hal.timekeeping import NextEdge, polled_edges, read_rtc_seconds

STEP_THRESHOLD_S = 3.0  # the RTC counts whole seconds; TCG under load wobbles a little
CHECK_INTERVAL_S = 1.0


def step_realtime(offset: float) -> None:
    time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + offset)


class ResumeWatch:
    """check() compares, steps and reports; start() runs it every CHECK_INTERVAL_S on a
    daemon thread until stop()."""

    def __init__(
        self,
        on_resume: Callable[[float], None],
        *,
        rtc: Callable[[], int | None] = read_rtc_seconds,
        now: Callable[[], float] = time.time,
        next_edge: NextEdge | None = None,
        step: Callable[[float], None] = step_realtime,
    ) -> None:
        self.on_resume = on_resume
        self._rtc, self._now, self._step = rtc, now, step
        self._next_edge = next_edge or polled_edges(rtc)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> float | None:
        """The step made (seconds, host minus box), or None when the clocks agree."""
        seconds = self._rtc()
        if seconds is None or abs(seconds + 0.5 - self._now()) < STEP_THRESHOLD_S:
            return None
        # at the turn of the RTC's second the host's time is that second exactly
        if self._next_edge():
            seconds = self._rtc()
            if seconds is None:
                return None
            offset = seconds - self._now()
        else:  # no turn seen: the middle of the second is off by half a second at most
            offset = seconds + 0.5 - self._now()
        self._step(offset)
        self.on_resume(offset)
        return offset

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="resume-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """End the watch (within one RTC edge wait); False if its thread did not end."""
        self._stop.set()
        if self._thread is None or self._thread is threading.current_thread():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL_S):
            self.check()
