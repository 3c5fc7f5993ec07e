"""The box's one owner (appliance/owner.py): jobs in order on one thread, a box that goes
down fails its queued and later calls, errors nobody waits for reach the crash hook."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from appliance.box import Box
from appliance.config import parse_op
from appliance.config.grammar import split_words
from appliance.hal.block import MemoryBlockDevice
from appliance.hal.hosted import HostedPlatform
from appliance.hal.types import DiskRole
from appliance.owner import BoxOwner, BoxRestarting, LoopExecutor, NotOwner, join_checked
from appliance.trace import TraceBuffer


@pytest.fixture
def loop() -> Iterator[LoopExecutor]:
    executor = LoopExecutor(name="test-owner")
    executor.start()
    yield executor
    assert executor.stop()


def test_jobs_run_one_at_a_time_in_order_on_the_owner_thread(loop: LoopExecutor) -> None:
    seen: list[tuple[int, str]] = []
    running = [0]
    overlap = []

    def job(i: int) -> int:
        running[0] += 1
        overlap.append(running[0])
        seen.append((i, threading.current_thread().name))
        time.sleep(0.001)
        running[0] -= 1
        return i * i

    futures = [loop.submit(lambda i=i: job(i)) for i in range(50)]
    assert [f.result() for f in futures] == [i * i for i in range(50)]
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"test-owner"}
    assert max(overlap) == 1


def test_a_call_made_on_the_owner_thread_runs_at_once(loop: LoopExecutor) -> None:
    owner = BoxOwner(loop)
    # a job that calls again would wait for itself for ever if it were queued
    assert owner.call(lambda: owner.call(lambda: 42) + 1) == 43


def test_closing_fails_the_queued_jobs_and_later_calls(loop: LoopExecutor) -> None:
    owner = BoxOwner(loop)
    release = threading.Event()
    blocker = loop.submit(release.wait)  # the owner thread is busy
    ran: list[str] = []
    results: list[object] = []

    def service_thread() -> None:
        try:
            results.append(owner.call(lambda: ran.append("late") or "done"))
        except BoxRestarting as e:
            results.append(e)

    t = threading.Thread(target=service_thread)
    t.start()
    deadline = time.monotonic() + 10
    while not owner._queued and time.monotonic() < deadline:  # the call is queued
        time.sleep(0.01)
    assert owner._queued
    owner.close()  # the box goes down: the waiting service thread wakes up at once
    t.join(5)
    assert not t.is_alive(), "the service thread still waits for its job"
    assert isinstance(results[0], BoxRestarting)
    release.set()
    blocker.result()
    loop.call(lambda: None)  # everything queued before is done by now
    assert ran == [], "a job of a box that went down ran"
    with pytest.raises(BoxRestarting):
        owner.call(lambda: "after")


def test_a_posted_job_that_fails_reaches_the_crash_hook(
    loop: LoopExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    caught: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: caught.append(args.exc_value))
    owner = BoxOwner(loop)
    owner.post(lambda: 1 / 0)
    loop.call(lambda: None)
    deadline = time.monotonic() + 5
    while not caught and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(caught) == 1 and isinstance(caught[0], ZeroDivisionError)


def test_a_box_refuses_changes_from_a_thread_that_does_not_own_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    loop = LoopExecutor()
    loop.start()
    try:
        owner = BoxOwner(loop)
        platform = HostedPlatform(tmp_path)
        box = loop.call(
            lambda: Box(
                platform,
                {DiskRole.FLASH: MemoryBlockDevice(1 << 20)},
                None,
                TraceBuffer(),
                owner=owner,
            )  # fmt: skip
        )
        op = parse_op("change", split_words("SYS0 /name other"))
        with pytest.raises(NotOwner, match="does not own the box"):
            box.change(op)
        with pytest.raises(NotOwner):
            box.request_reset()
        with pytest.raises(NotOwner):
            box.set_address("ETH0", "10.0.0.1/24 (static)")
        owner.call(lambda: box.change(op))  # as a job it is fine
        assert box.name == "IPVA" and str(box.running.value("SYS0", "name")) == "other"
    finally:
        assert loop.stop()


def test_stop_ends_the_thread_and_later_submits_fail() -> None:
    loop = LoopExecutor()
    loop.start()
    assert loop.call(lambda: threading.current_thread().name) == "box-owner"
    assert loop.stop()
    with pytest.raises(BoxRestarting):
        loop.call(lambda: None)


def test_join_checked_says_which_thread_did_not_stop() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="stuck-one", daemon=True)
    t.start()
    assert join_checked(t, 0.05) == "thread stuck-one did not stop within 0.05 s"
    stop.set()
    assert join_checked(t, 5) is None
    assert join_checked(None, 1) is None
