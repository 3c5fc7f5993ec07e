"""The timekeeping service (TIME0): the box's clock from the platform (`Platform.start_clock`:
the VM's perf counter, hal.timekeeping), `mod cmd TIME0 info` (its rate against the RTC
reads `calibrating` until the calibration, which the boot does not wait for, is in).

TIME0 /perfcounter is the policy for a missing counter; under `strict` the boot stops
(TimekeepingHalt). Hosted runs on the host's clock: there is nothing to start. In a VM the
resume watch (hal.resume) steps the clock after a pause and says so (events.Resumed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance import xmltext
from appliance.events import Resumed
from appliance.hal.resume import ResumeWatch
from appliance.hal.timekeeping import Policy, Timekeeping
from appliance.modcmd import Command
from appliance.owner import BoxRestarting
from appliance.service import BaseService

if TYPE_CHECKING:
    from appliance.box import Box
    from appliance.hal.platform import Platform
    from appliance.trace import TraceFn


class TimekeepingService(BaseService):
    name = "timekeeping"
    config_modules: tuple[str, ...] = ("TIME0",)

    def __init__(self) -> None:
        self.clock: Timekeeping | None = None
        self.watch: ResumeWatch | None = None

    def probe(self, platform: Platform, trace: TraceFn) -> None:
        # begun already before the runtime's imports (appliance/__main__.py); start()
        # takes the result
        platform.begin_clock()

    def start(self, box: Box) -> None:
        policy = Policy(str(box.active.value("TIME0", "perfcounter")))
        self.clock = box.platform.start_clock(policy, box.trace)
        if self.clock is not None:

            def resumed(offset: float) -> None:
                box.trace(f"time: resumed after a pause: clock stepped by {offset:+.1f} s "
                          "to the host's time (RTC)")  # fmt: skip
                try:  # the box's events come from its owner
                    box.owner.call(lambda: box.events.emit(Resumed(offset)))
                except BoxRestarting:
                    pass

            self.watch = ResumeWatch(resumed)
            self.watch.start()

    def stop(self) -> None:
        if self.watch is not None:
            self.watch.stop()

    def commands(self) -> list[Command]:
        return [
            Command(
                "TIME0",
                "info",
                "the timekeeping counter, its calibration and the policy",
                self.info,
            )
        ]

    def info(self, box: Box, args: list[str]) -> str:
        tk = self.clock
        if tk is None:
            return "timekeeping: not started on this platform"
        cal = tk.calibration
        if cal is not None:
            rate, rtc = f"{cal.rate * 100:.1f}%", cal.edges
        elif tk.calibrating:
            rate = rtc = "calibrating"
        else:
            rate, rtc = "not calibrated", "none"
        return xmltext.info(
            "time",
            {
                "hypervisor": str(tk.hypervisor),
                "counter": tk.counter.name,
                "kind": "primary" if tk.primary else "fallback",
                "policy": str(tk.policy),
                "rate": rate,
                "rtc": rtc,
                "uptime-ms": str(tk.now_ns() // 1_000_000),
            },
        )
