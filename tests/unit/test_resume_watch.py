"""hal.resume: the clock steps to the RTC's (the host's) time after a pause, and only then."""

from __future__ import annotations

import pytest

from appliance.hal.resume import STEP_THRESHOLD_S, ResumeWatch


class Clocks:
    """A box clock `box` and an RTC `rtc` (whole seconds) that turns on the next edge."""

    def __init__(self, box: float, rtc: int, edge: bool = True) -> None:
        self.box, self.rtc, self.edge = box, rtc, edge
        self.steps: list[float] = []
        self.reported: list[float] = []

    def watch(self) -> ResumeWatch:
        def next_edge() -> bool:
            if self.edge:
                self.rtc += 1
                self.box += 0.3  # the part of the second that was left when we looked
            return self.edge

        def step(offset: float) -> None:
            self.steps.append(offset)
            self.box += offset

        return ResumeWatch(self.reported.append, rtc=lambda: self.rtc, now=lambda: self.box,
                           next_edge=next_edge, step=step)  # fmt: skip


def test_clocks_that_agree_are_left_alone() -> None:
    c = Clocks(box=1000.4, rtc=1000)
    assert c.watch().check() is None
    assert c.steps == [] and c.reported == []


def test_a_paused_box_steps_to_the_rtc_at_its_turn_and_reports_it() -> None:
    c = Clocks(box=1000.7, rtc=1042)  # the VM stood still ~41.5 s
    offset = c.watch().check()
    assert offset == pytest.approx(1043 - 1001.0)
    assert c.steps == c.reported == [offset]
    assert c.box == pytest.approx(c.rtc)  # now at the host's time exactly


def test_without_a_turn_of_the_rtc_the_middle_of_its_second_is_taken() -> None:
    c = Clocks(box=1000.0, rtc=990, edge=False)  # a box ahead of the host also steps
    assert c.watch().check() == pytest.approx(-9.5)


def test_no_rtc_no_step() -> None:
    watch = ResumeWatch(lambda _o: None, rtc=lambda: None, now=lambda: 5.0)
    assert watch.check() is None


def test_the_threshold_keeps_the_rtcs_whole_seconds_from_stepping() -> None:
    c = Clocks(box=1000.0 - STEP_THRESHOLD_S + 1.6, rtc=1000)
    assert c.watch().check() is None
